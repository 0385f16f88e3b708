"""benchmarks/reproduce_cifar_family.py, the device script of docs/reproduction.md: its summary arithmetic on known
numbers, and dry runs of the real script on the CPU at tiny scale (real Fashion-MNIST, real worker processes): what
it writes, and a clean stop at its time budget."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import slow
from test_data import needs_fmnist

from senet.data import FASHION_MNIST_DIR
from senet.training import RunResult

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_cifar_family.py"


def _module():
    spec = importlib.util.spec_from_file_location("reproduce_cifar_family", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_the_summary_pairs_runs_by_seed_and_gives_mean_and_standard_error_of_the_differences():
    m = _module()
    accs = {("se_resnet20", 0): 0.91, ("se_resnet20", 1): 0.92, ("se_resnet20", 2): 0.93, ("se_resnet20", 3): 0.99}
    accs |= {("resnet20", 0): 0.90, ("resnet20", 1): 0.92, ("resnet20", 2): 0.90}  # seed 3 has no plain twin
    jobs = [m.Job(f"{k}-s{s}", k, {}, s, [("main", "20")], "done", a) for (k, s), a in accs.items()]
    jobs.append(m.Job("resnet20-s3", "resnet20", {}, 3, [("main", "20")], "stopped"))  # cut short: not a result
    s = m.depth_summary(jobs, "20")
    assert s["seeds"] == [0, 1, 2]
    assert s["per_seed"] == pytest.approx([1.0, 0.0, 3.0])  # points
    assert s["mean"] == pytest.approx(4 / 3)
    assert s["stderr"] == pytest.approx((7 / 3) ** 0.5 / 3**0.5)  # sample sd of (1, 0, 3) is sqrt(7/3)
    assert m.summary_row(s) == "| se_resnet20 − resnet20 | 3 | 92.00 | 90.67 | +1.33 | 0.88 | +1.00, +0.00, +3.00 |"
    assert m.depth_summary(jobs, "56") is None
    one = m.depth_summary([j for j in jobs if j.seed == 0], "20")
    assert one["stderr"] is None and "one pair" in m.summary_row(one)


def _script(*args, timeout=900):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1] / "src")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


TINY = ["--data", str(FASHION_MNIST_DIR), "--device", "cpu", "--epochs", "1", "--depths", "20", "--batch-size", "64"]
TINY += ["--test-subset", "64", "--threads", "1"]


@slow
@needs_fmnist
def test_a_dry_run_writes_every_run_and_a_summary_that_agrees_with_them(tmp_path):
    out = tmp_path / "out"
    argv = [*TINY, "--train-subset", "128", "--seeds", "2", "--studies", "nosqueeze", "--study-seeds", "1"]
    proc = _script(*argv, "--concurrency", "2", "--out", str(out), "--budget-minutes", "10")
    assert proc.returncode == 0, proc.stderr
    assert "se_resnet20-s0: epoch 1/1 in " in proc.stdout  # the time per epoch, as it comes
    data = json.loads((out / "results.json").read_text())
    assert data["final"] and data["protocol"]["data_on_device"] is True and data["protocol"]["weight_decay"] == 1e-4
    # seeds 0, 1 of each depth's pair, and the study's NoSqueeze run (its baseline and SE are the main runs of seed 0)
    names = {j["name"]: j for j in data["jobs"]}
    assert set(names) == {
        "se_resnet20-s0",
        "resnet20-s0",
        "se_resnet20-s1",
        "resnet20-s1",
        "se_resnet20-squeeze=none-s0",
    }
    assert all(j["state"] == "done" for j in names.values())
    runs = {n: RunResult.load(out / "runs" / n) for n in names}
    assert all(r.config.epochs == 1 and r.config.data_on_device for r in runs.values())
    s = data["summaries"]["20"]
    want = [100 * (runs[f"se_resnet20-s{k}"].test_acc - runs[f"resnet20-s{k}"].test_acc) for k in (0, 1)]
    assert s["seeds"] == [0, 1] and s["per_seed"] == pytest.approx(want)
    assert s["mean"] == pytest.approx(sum(want) / 2) and s["stderr"] == pytest.approx(abs(want[0] - want[1]) / 2)
    study = {r["label"]: r for r in data["studies"]["nosqueeze"]}
    assert study["NoSqueeze"]["errors"] == pytest.approx([100 * (1 - runs["se_resnet20-squeeze=none-s0"].test_acc)])
    assert study["SE"]["errors"] == pytest.approx([100 * (1 - runs["se_resnet20-s0"].test_acc)])
    report = (out / "results.md").read_text()
    assert "| se_resnet20 − resnet20 | 2 |" in report and "| NoSqueeze |" in report and "(final)" in report
    epochs = list(csv.DictReader((out / "epochs.csv").open()))
    assert sorted(r["run"] for r in epochs) == sorted(names) and all(float(r["epoch_s"]) > 0 for r in epochs)


@slow
@needs_fmnist
def test_the_budget_stops_the_run_cleanly_and_reports_what_did_not_finish(tmp_path):
    out = tmp_path / "out"
    # Runs of 2 epochs of 32 steps take longer than the budget of 3 s: the first one starts and is stopped.
    argv = [*TINY, "--train-subset", "2048", "--epochs", "2", "--seeds", "2", "--studies", "--out", str(out)]
    proc = _script(*argv, "--budget-minutes", "0.05")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "results.json").read_text())
    states = [j["state"] for j in data["jobs"]]
    assert data["final"] and states[0] == "stopped" and set(states[1:]) == {"skipped"}, states
    assert data["summaries"]["20"] is None
    report = (out / "results.md").read_text()
    assert "depth 20: no pair finished" in report and "se_resnet20-s0: stopped" in report
