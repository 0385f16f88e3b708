"""What senet promises about files and runs (docs/reliability.md): nothing written outside the output folder, no
output over an input, one writer per run folder, and a diverging run that stops on a checkpoint it can resume."""

import os
import subprocess
import time

import pytest
import torch
from conftest import slow
from test_cli_train import TINY, _fails, _ok, run_dir_args, senet_cmd
from test_data import needs_fmnist

from senet.files import LOCK_FILE, folder_lock, read_weights
from senet.training.checkpoint import GOOD_STATE_FILE, LAST_FILE, STATE_FILE, load_state

pytestmark = needs_fmnist


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("name", ["../../escaped", "../escaped", "/tmp/senet-absolute-name", "a/b", ".."])
def test_compare_name_stays_inside_the_output_folder(tmp_path, capsys, name):
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    err = _fails(capsys, "compare", "resnet20", *TINY[2:], "--seeds", "1", "--out-dir", str(out), "--name", name)
    assert "--name" in err and "plain folder name" in err
    assert _tree(tmp_path) == ["deep", "deep/out"] and not os.path.exists("/tmp/senet-absolute-name")


@slow
def test_a_diverging_run_rolls_back_to_its_last_evaluated_state_and_resumes_with_another_schedule(tmp_path, capsys):
    """Epoch 1 trains at lr 0.1; the step schedule then multiplies it by 1e30, and the run diverges in epoch 2, with
    checkpoints every step. The run folder's state must be the end of epoch 1 (finite, evaluated), not the last
    checkpoint before the divergence, and a resume with a sane gamma must finish."""
    run = tmp_path / "div"
    args = [*TINY, "--epochs", "2", "--lr", "0.1", "--schedule", "step", "--milestones", "[1]", "--gamma", "1e30"]
    args += ["--checkpoint-every", "1", "--progress", "none", *run_dir_args(tmp_path, "div")]
    err = _fails(capsys, "train", *args)
    assert "stopped" in err and "is back at the end of epoch 1 (step 4" in err and "--resume" in err
    state = load_state(run)
    assert state.extra["epoch"] == 1 and state.extra["step"] == 4 and state.extra["batch"] == 0
    tensors = [*state.model.values(), *(t for s in state.extra["optimizer"]["state"].values() for t in s.values())]
    assert all(t.isfinite().all() for t in tensors if t.is_floating_point())
    assert os.path.samefile(run / STATE_FILE, run / GOOD_STATE_FILE)
    text = _ok(capsys, "train", "--resume", str(run), "--gamma", "0.1", "--progress", "none")
    assert "after 2 epochs" in text
    assert load_state(run).extra["step"] == 8 and load_state(run).extra["config"]["gamma"] == 0.1


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(tmp_path, capsys):
    run = tmp_path / "busy"
    with folder_lock(run):
        err = _fails(capsys, "train", *TINY, "--progress", "none", *run_dir_args(tmp_path, "busy"))
    assert "is in use by senet pid " + str(os.getpid()) in err
    assert [p.name for p in run.iterdir()] == [LOCK_FILE]  # the refused run wrote nothing
    _ok(capsys, "train", *TINY, "--progress", "none", *run_dir_args(tmp_path, "busy"))  # free again


@slow
def test_two_processes_started_together_one_trains_the_other_is_refused(tmp_path):
    """The issue's case: two `senet train --name same` a moment apart. One exits 0, the other 2 naming the
    holder; the folder holds one whole run."""
    argv = senet_cmd("train", *TINY, "--epochs", "2", "--progress", "none", *run_dir_args(tmp_path, "same"))
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "same" / LOCK_FILE
    deadline = time.monotonic() + 60
    while not (lock.is_file() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run(argv, capture_output=True, text=True)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and f"in use by senet pid {first.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert (tmp_path / "same" / "summary.json").is_file() and load_state(tmp_path / "same").extra["epoch"] == 2


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w")
    assert subprocess.run(senet_cmd("train", *TINY, "--progress", "none", *run_dir_args(tmp, "r"))).returncode == 0
    return tmp / "r" / LAST_FILE


@slow
def test_outputs_that_would_replace_an_input_are_refused(tmp_path, capsys, weights):
    w = tmp_path / "w.safetensors"
    w.write_bytes(weights.read_bytes())
    onnx_named = tmp_path / "model.onnx"  # a weights file whose default export path is itself
    onnx_named.write_bytes(weights.read_bytes())
    link = tmp_path / "link.safetensors"
    link.symlink_to(w)
    before = {p: p.read_bytes() for p in (w, onnx_named)}
    assert "is the input weights itself" in _fails(capsys, "export", str(w), "--out", str(w))
    assert "is the input weights itself" in _fails(capsys, "export", str(w), "--out", str(link))
    assert "is the input weights itself" in _fails(capsys, "export", str(onnx_named))
    assert "is the weights file itself" in _fails(capsys, "eval", str(w), "--json", str(w), "--test-subset", "8")
    run = weights.parent
    err = _fails(capsys, "eval", str(run), "--json", str(run / LAST_FILE), "--test-subset", "8")
    assert "is the weights file itself" in err
    out = ["--model", "resnet20", "--out", str(w)]
    assert "is the weights file to convert itself" in _fails(capsys, "convert", str(w), *out)
    assert {p: p.read_bytes() for p in (w, onnx_named)} == before


@slow
def test_weights_files_get_the_permissions_of_an_ordinary_file(weights):
    umask = os.umask(0)
    os.umask(umask)
    for name in (LAST_FILE, STATE_FILE, "best.safetensors", "metrics.csv"):
        assert (weights.parent / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert read_weights(weights)[0] and torch.is_tensor(next(iter(read_weights(weights)[0].values())))
