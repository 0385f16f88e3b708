"""senet ablate (resumable studies), senet excitation and senet report on real runs (small synthetic data)."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import slow

from senet.analysis.ablate import StudyResult, study_variants
from senet.analysis.html_report import build_report
from senet.cli import main

TINY = ["--dataset", "synthetic", "--in-chans", "1", "--image-size", "16", "--train-subset", "192",
        "--test-subset", "64", "--epochs", "1", "--batch-size", "32", "--amp", "none", "--channels-last", "false",
        "--progress", "none", "--tensorboard", "false", "--threads", "1"]  # fmt: skip


def ablate(folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "senet", "ablate", "gate", "--values", "relu", "sigmoid", "--seeds", "1",
            "--out", str(folder), *TINY, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A gate study interrupted by SIGKILL after its first run, then resumed; returns (folder, first run stamp)."""
    folder = tmp_path_factory.mktemp("study")
    first = folder / "runs" / "resnet20-s0" / "summary.json"
    proc = subprocess.Popen(ablate(folder), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (folder / "study.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), proc.stderr.read().decode()[-2000:]
    before = StudyResult.load(folder)
    stamp = {p: p.stat().st_mtime_ns for p in first.parent.iterdir()}
    done = subprocess.run(ablate(folder), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder, before, stamp, done.stdout


@slow
def test_interrupted_study_resumes_without_redoing_runs(study):
    folder, before, stamp, _ = study
    assert [len(r["errors"]) for r in before.rows] == [1, 0, 0]  # killed after the baseline's run
    for path, mtime in stamp.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was rewritten: the finished run was redone"
    after = StudyResult.load(folder)
    assert [r["label"] for r in after.rows] == ["plain (resnet20)", "relu", "sigmoid"]
    assert all(len(r["errors"]) == 1 and 0 <= r["errors"][0] <= 100 for r in after.rows)
    assert after.rows[0]["errors"] == before.rows[0]["errors"]
    assert after.rows[1]["params"] > after.rows[0]["params"]


@slow
def test_study_outputs_table_and_plot(study):
    folder, *_, stdout = study
    assert "| relu |" in stdout and "paper top-1 err %" in stdout
    assert (folder / "study.png").read_bytes()[:4] == b"\x89PNG"
    assert "| sigmoid |" in (folder / "study.md").read_text()


@slow
def test_another_study_reuses_the_runs_of_the_same_networks(study, tmp_path):
    """r=16 of the reduction study is the gate study's sigmoid model: sharing --runs-dir, it is not trained again."""
    folder, *_ = study
    runs = folder / "runs"
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    args = ["ablate", "reduction", "--values", "16", "--seeds", "1", "--runs-dir", str(runs), "--out", str(tmp_path)]
    assert main([*args, *TINY]) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()} == stamps
    assert [len(r["errors"]) for r in StudyResult.load(tmp_path).rows] == [1, 1]


def test_one_network_has_one_configuration_however_its_options_are_spelled():
    """{"r": 16}, {"se_gate": "sigmoid"} and {} are the default SE-ResNet-20: a run saved with one resumes with any."""
    from senet.analysis.ablate import Variant
    from senet.training import TrainConfig
    from senet.training.trainer import config_changes

    names = {Variant("x", "se_resnet20", o).run_name(0) for o in ({"r": 16}, {"se_gate": "sigmoid"}, {})}
    assert names == {"se_resnet20-s0"}
    assert Variant("x", "se_resnet20", {"r": 8}).run_name(0) == "se_resnet20-r=8-s0"
    saved = TrainConfig(model="se_resnet20", model_options={"r": 16}).to_dict()
    assert config_changes(saved, TrainConfig(model="se_resnet20", model_options={"se_gate": "sigmoid"})) == {}
    changed = config_changes(saved, TrainConfig(model="se_resnet20", model_options={"r": 8}))
    assert changed == {"model_options": ({"r": 16}, {"r": 8})}


@slow
def test_excitation_and_reports_of_a_run(study, capsys):
    folder, *_ = study
    run = folder / "runs" / "se_resnet20-s0"
    assert main(["excitation", str(run), "--classes", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "SE_4_3" in out and "class spread" in out and "η² (class)" in out
    assert {p.name for p in (run / "excitation").iterdir()} >= {"excitations.npz", "excitations.csv",
                                                                 "class_means.png", "spread.png"}  # fmt: skip
    page = build_report(run).read_text()
    assert "Excitations" in page and page.count("<table>") >= 3 and page.count("data:image/png") == 3
    study_page = build_report(folder).read_text()
    assert "Ablation: excitation non-linearity" in study_page and "data:image/png" in study_page


@slow
def test_report_of_something_else_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "senet", "report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "is not a finished training run" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_variants_fail_early_when_they_do_not_fit():
    with pytest.raises(ValueError, match="r=32 exceeds the 16 channels"):
        study_variants("reduction", "se_resnet20")
    with pytest.raises(ValueError, match="has no SE"):
        study_variants("gate", "resnet20")
    with pytest.raises(ValueError, match="unknown study"):
        study_variants("depth", "se_resnet20")
    assert [v.label for v in study_variants("reduction", "se_resnet20", ["2", "16"], baseline=False)] == ["r=2", "r=16"]


@slow
def test_attention_study_measures_its_cost_once_and_reports_it(tmp_path):
    args = ["ablate", "attention", "--values", "eca", "--seeds", "1", "--out", str(tmp_path), *TINY]
    assert main(args) == 0
    cost = tmp_path / "cost.json"
    stamp = cost.stat().st_mtime_ns
    study = StudyResult.load(tmp_path)
    assert [r["label"] for r in study.rows] == ["plain (resnet20)", "ECA"]
    assert all(set(r["latency_ms"]) == {"1", "8"} and r["train_step_ms"] > 0 for r in study.rows)
    text = (tmp_path / "study.md").read_text()
    assert "| latency b=1 (ms) |" in text and "22.52 (ECA-Net" in text and "Cost columns: cpu" in text
    assert main(args) == 0  # everything cached: no run trained again, the cost not measured again
    assert cost.stat().st_mtime_ns == stamp
    page = build_report(tmp_path).read_text()
    assert "Ablation: attention unit in SE&#x27;s place" in page and "train step b=8 (ms)" in page


@slow
def test_attention_cost_is_measured_on_the_trained_model_and_again_when_it_changes(tmp_path):
    """The cost columns come from the model the runs trained (the recipe's model options too), at the recipe's
    threads; a study with other model options measures again instead of reusing the first one's figures."""
    out = tmp_path / "study"
    for stages, runs in (("[3]", "a"), ("[2, 3]", "b")):
        args = ["ablate", "attention", "--values", "eca", "--no-baseline", "--seeds", "1", "--out", str(out),
                "--runs-dir", str(tmp_path / runs), "--model-options", f"{{se_stages: {stages}}}", *TINY]  # fmt: skip
        assert main(args) == 0
        study = json.loads((out / "study.json").read_text())
        cost = json.loads((out / "cost.json").read_text())
        assert [r["params"] for r in cost["rows"]] == [r["params"] for r in study["rows"]]
        assert cost["env"]["threads"] == study["env"]["threads"] == 1  # TINY's --threads 1
        assert cost["rows"][0]["options"]["se_stages"] == json.loads(stages)
    assert "1 thread," in (out / "study.md").read_text()


def _attention_study_json(**row_changes) -> dict:
    env = {"device": "cpu", "threads": 2, "torch": "2.14.1", "input_size": [1, 28, 28], "repeats": 15,
           "train_batch": 8, "cpu": "Intel Xeon", "cores": 2, "python": "3.11.2", "gpu": None}  # fmt: skip
    row = {"label": "ECA", "model": "se_resnet20", "options": {"attention": "eca"}, "paper_err": 22.52,
           "paper_note": "ECA-Net", "seeds": 3, "errors": [8.1, 8.3], "runs": [], "images_per_s": [812.5, 790.0],
           "params": 270_000, "macs": 41_000_000, "latency_ms": {"1": 1.9, "8": 6.2},
           "train_step_ms": 21.0}  # fmt: skip
    return {"study": "attention", "model": "se_resnet20", "rows": [row | row_changes], "env": env}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"images_per_s": [-1.0]}, r"rows\[0\]\.images_per_s\[0\]"),
        ({"latency_ms": {"1": "fast"}}, r"rows\[0\]\.latency_ms\.1"),
        ({"train_step_ms": True}, r"rows\[0\]\.train_step_ms"),
        ({"paper_note": 7}, r"rows\[0\]\.paper_note"),
    ],
)
def test_study_json_with_cost_columns_is_checked_field_by_field(tmp_path, change, field):
    (tmp_path / "study.json").write_text(json.dumps(_attention_study_json()))
    study = StudyResult.load(tmp_path)
    assert study.env["train_batch"] == 8 and "| latency b=8 (ms) |" in study.markdown()
    (tmp_path / "study.json").write_text(json.dumps(_attention_study_json(**change)))
    with pytest.raises(ValueError, match=field):
        StudyResult.load(tmp_path)
    bad_env = _attention_study_json()
    bad_env["env"]["threads"] = 0
    (tmp_path / "study.json").write_text(json.dumps(bad_env))
    with pytest.raises(ValueError, match=r"env\.threads.*run the study again"):
        StudyResult.load(tmp_path)


def test_ablate_help_lists_the_attention_presets_it_accepts(capsys):
    """`senet ablate --help` names each study's source plainly and lists exactly the attention presets, from
    PRESETS (a unit added there appears in the help without another edit)."""
    from senet.analysis.presets import PRESETS

    for argv in (["ablate", "--help"], ["ablate", "attention", "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        listed = re.search(r"any of: ((?:\w+, )*\w+)", text)
        assert listed and listed.group(1).split(", ") == list(PRESETS)
        assert "reduction (reduction ratio r; SE paper Table 10)" in text
        assert "the SE family; each unit's own paper)" in text and "paper its own paper" not in text
        assert "or a YAML file; default: fmnist-fast" in text and "built-in defaults" not in text


def test_study_table_gives_exact_parameter_counts(tmp_path):
    """ECA adds 27 weights to ResNet-20: the params column tells it from the plain network (not 0.269M twice)."""
    data = _attention_study_json(params=269_461)
    plain = data["rows"][0] | {"label": "plain (resnet20)", "params": 269_434, "paper_err": None, "paper_note": ""}
    data["rows"].insert(0, plain)
    (tmp_path / "study.json").write_text(json.dumps(data))
    study = StudyResult.load(tmp_path)
    assert [row["params"] for row in study.table()] == ["269,434", "269,461"]
    assert "| 269,461 |" in study.markdown()
