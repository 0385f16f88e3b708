"""Two processes on CPU with gloo, launched by torchrun as a user would: they train, stay identical, write one
checkpoint, evaluate every test image exactly once, and resume."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import slow
from test_data import needs_fmnist

from senet.data import load_datasets
from senet.factory import load_model
from senet.files import read_weights
from senet.training import Inputs, evaluate
from senet.training.checkpoint import LAST_FILE

pytestmark = needs_fmnist

TORCHRUN = Path(sys.executable).parent / "torchrun"


def torchrun(*args) -> subprocess.CompletedProcess:
    launcher = [str(TORCHRUN)] if TORCHRUN.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node=2", "-m", "senet", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def fingerprint(path) -> str:
    """SHA-256 of a weights file's tensors, computed as the trainer does for each process's model."""
    tensors, _ = read_weights(path)
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        h.update(name.encode())
        h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@slow
def test_two_process_gloo_run_trains_syncs_checkpoints_and_resumes(tmp_path):
    args = ["--model", "se_resnet20", "--model-options", "{r: 4}", "--train-subset", "512", "--test-subset", "301",
            "--batch-size", "32", "--lr", "0.4", "--epochs", "1", "--checkpoint-every", "4", "--out-dir", str(tmp_path),
            "--name", "ddp"]  # fmt: skip
    first = torchrun(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("run folder:") == 1 and first.stdout.count("test top-1") == 1  # rank 0 alone prints
    run = tmp_path / "ddp"
    summary = json.loads((run / "summary.json").read_text())
    # both processes hold the same weights, and they are the ones written
    assert len(summary["fingerprints"]) == 2 and summary["fingerprints"][0] == summary["fingerprints"][1]
    assert summary["fingerprints"][0] == fingerprint(run / LAST_FILE)
    # one process wrote one set of files
    files = ".senet.lock best.safetensors config.yaml curves.png last.safetensors metrics.csv state.good.safetensors "
    files += "state.safetensors summary.json"
    assert sorted(p.name for p in run.iterdir()) == files.split()
    assert summary["history"][0]["step"] == 512 // (2 * 32)  # each process reads its half of every epoch
    # the whole test set, each image once (301 is odd: no padding duplicates), agreeing with one process
    assert summary["history"][0]["test_images"] == 301
    model, meta = load_model(run / LAST_FILE)
    _, test, _ = load_datasets("fashion-mnist", test_subset=301)
    alone = evaluate(model, test, Inputs(torch.device("cpu"), tuple(meta["mean"]), tuple(meta["std"])))
    assert alone.acc == pytest.approx(summary["test_acc"], abs=1e-12)

    resumed = torchrun("--resume", str(run), "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert [r["epoch"] for r in summary["history"]] == [1, 2] and summary["history"][1]["step"] == 16
    assert summary["fingerprints"][0] == summary["fingerprints"][1] == fingerprint(run / LAST_FILE)


@slow
def test_two_process_fine_tuning_with_init_freezing_and_lr_factors(tmp_path):
    from test_transfer import FIRST_FIVE, weights_file

    import senet

    plain = senet.create_model("resnet20", num_classes=5, in_chans=1)
    init = weights_file(tmp_path / "pre.safetensors", plain, FIRST_FIVE)
    args = ["--model", "se_resnet20", "--model-options", "{r: 4, se_gate: sigmoid_x2, se_init: identity}", "--init",
            str(init), "--classes", "[5,6,7,8,9]", "--train-per-class", "64", "--test-subset", "101", "--batch-size",
            "16", "--epochs", "1", "--freeze", "layer1", "--backbone-lr", "0.5", "--layer-decay", "0.5",
            "--out-dir", str(tmp_path), "--name", "ft"]  # fmt: skip
    first = torchrun(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.count("init: weights file") == 1  # one report, from rank 0
    run = tmp_path / "ft"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fingerprints"][0] == summary["fingerprints"][1] == fingerprint(run / LAST_FILE)
    assert summary["history"][0]["step"] == 320 // (2 * 16)
    after, _ = read_weights(run / LAST_FILE)
    before = plain.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith(("stem.", "layer1.")))
    assert not torch.equal(after["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])
    resumed = torchrun("--resume", str(run), "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fingerprints"][0] == summary["fingerprints"][1] == fingerprint(run / LAST_FILE)
    assert "init:" not in resumed.stderr  # a resumed run's weights come from its checkpoint
