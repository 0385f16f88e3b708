"""What senet promises about files and runs (docs/reliability.md): nothing written outside the output folder, no
output over an input, one writer per run folder, and a diverging run that stops on a checkpoint it can resume."""

import json
import os
import subprocess
import time

import pytest
import torch
from conftest import slow
from test_cli_train import TINY, _fails, _ok, run_dir_args, senet_cmd
from test_data import needs_fmnist

from senet.cli import main
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
    checkpoint before the divergence, and a resume with a sane gamma and another learning rate must finish."""
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
    text = _ok(capsys, "train", "--resume", str(run), "--gamma", "0.1", "--lr", "0.05", "--progress", "none")
    assert "after 2 epochs" in text
    config = load_state(run).extra["config"]
    assert load_state(run).extra["step"] == 8 and config["gamma"] == 0.1 and config["lr"] == 0.05


@slow
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


# -- a full disk, a kill inside any save ------------------------------------------------------------------------------

SYN = ["--dataset", "synthetic", "--model", "resnet20", "--image-size", "8", "--train-subset", "64", "--test-subset",
       "16", "--batch-size", "16", "--epochs", "2", "--deterministic", "--checkpoint-every", "1", "--progress", "none",
       "--tensorboard", "false"]  # fmt: skip


@slow
def test_a_full_disk_while_saving_is_one_line_and_the_resume_after_it_is_bit_identical(tmp_path, capsys, monkeypatch):
    """The device fills up half-way through the fifth checkpoint (ENOSPC from the write itself): one line that names
    the file and the fix, the previous checkpoint intact and no temporary file left; once there is space again,
    --resume ends with the weights of a run that never stopped."""
    import errno
    import pathlib

    from test_cli_train import same_weights

    _ok(capsys, "train", *SYN, *run_dir_args(tmp_path, "ref"))
    real, calls = pathlib.Path.write_bytes, []

    def full(path, data):
        if path.name.startswith(f".{STATE_FILE}."):
            calls.append(path)
            if len(calls) == 5:
                real(path, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    err = _fails(capsys, "train", *SYN, *run_dir_args(tmp_path, "full"))
    monkeypatch.undo()
    run = tmp_path / "full"
    assert f"no space left on the device to write {str(run / STATE_FILE)!r} (its previous version is kept)" in err
    assert "free space and run the command again" in err and "--resume" in err
    assert load_state(run).extra["step"] == 3 and not list(run.glob(".*.tmp"))  # steps 0..3 saved, the 4th torn
    _ok(capsys, "train", "--resume", str(run))
    assert same_weights(run / LAST_FILE, tmp_path / "ref" / LAST_FILE)


_KILLER = """
import os, signal, sys
calls = {{"n": 0}}
def killing(real):
    def call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == {k}:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
os.fsync, os.replace = killing(os.fsync), killing(os.replace)  # inside every atomic write and link
from senet.cli import main
sys.exit(main({argv!r}))
"""


@slow
@pytest.mark.parametrize("k", [2, 5, 9, 14, 20, 27, 33, 40])
def test_a_kill_inside_any_save_leaves_only_temporary_files_the_clean_up_removes(tmp_path, k):
    """SIGKILL at the k-th fsync or rename of a run (config.yaml, state, its good link, weights, metrics.csv,
    curves.png, summary.json): whatever is left that is not one of the run's files has the temporary name that
    clean_partial_writes removes, and the resume removes it and finishes the run."""
    import fnmatch
    import sys

    argv = ["train", *SYN, *run_dir_args(tmp_path, "k")]
    proc = subprocess.run([sys.executable, "-c", _KILLER.format(k=k, argv=argv)], capture_output=True, text=True)
    run = tmp_path / "k"
    if proc.returncode == 0:
        pytest.skip(f"the run makes fewer than {k} fsync and rename calls")
    assert proc.returncode == -9, proc.stderr
    final = {"config.yaml", STATE_FILE, GOOD_STATE_FILE, LAST_FILE, "best.safetensors", "metrics.csv", "curves.png",
             "summary.json", LOCK_FILE}  # fmt: skip
    others = [p.name for p in run.iterdir() if p.name not in final]
    assert all(fnmatch.fnmatch(n, ".*.tmp") for n in others), others
    if not (run / STATE_FILE).is_file():
        return  # killed before the first checkpoint: there is nothing to resume, and a new run starts clean
    resumed = subprocess.run(senet_cmd("train", "--resume", str(run)), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not [p.name for p in run.iterdir() if p.name not in final]


# -- malformed metadata, hostile recipes, silent acceptance -----------------------------------------------------------


@pytest.fixture(scope="module")
def syn_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("syn")
    assert main(["train", *SYN, "--epochs", "1", *run_dir_args(tmp, "r")]) == 0
    return tmp / "r"


def _with_metadata(src, dst, text):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118
    save_file(tensors, str(dst), metadata={**meta, "senet": text})
    return dst


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda m: [m], "a JSON list, not an object"),
        (lambda m: "resnet20", "a JSON str, not an object"),
        (lambda m: {**m, "num_classes": 10**12}, "num_classes is 1000000000000, expected a whole number"),
        (lambda m: {**m, "in_chans": 10**9}, "in_chans is 1000000000"),
        (lambda m: {**m, "image_size": 10**9}, "image_size is 1000000000"),
        (lambda m: {**m, "std": [0.0]}, "std[0] is 0.0"),
        (lambda m: {**m, "options": {"r": [[[[1]]]]}}, "options.r"),
    ],
    ids=["list", "string", "classes", "channels", "size", "std", "nested"],
)
def test_malformed_metadata_in_weights_is_one_line_naming_the_field(syn_run, tmp_path, capsys, change, needle):
    meta = read_weights(syn_run / LAST_FILE)[1]
    w = _with_metadata(syn_run / LAST_FILE, tmp_path / "w.safetensors", json.dumps(change(meta)))
    for command in (["eval", str(w)], ["predict", str(w), str(syn_run / "curves.png")], ["export", str(w)]):
        err = _fails(capsys, *command)
        assert "has malformed senet metadata" in err and needle in err and str(w) in err
    assert not (tmp_path / "w.onnx").exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda m: [m], "a JSON list, not an object"),
        (lambda m: {**m, "extra": 5}, "extra is 5, expected an object"),
        (lambda m: {**m, "model": {**m["model"], "num_classes": 10**12}}, "model.num_classes is 1000000000000"),
        (lambda m: {**m, "extra": {**m["extra"], "epoch": 10**18}}, "extra.epoch is 1000000000000000000"),
        (lambda m: {**m, "extra": {**m["extra"], "history": []}}, "0 history rows for epoch=1"),
        (
            lambda m: {
                **m,
                "extra": {**m["extra"], "optimizer": {"state": {"$tensor": "nowhere"}, "param_groups": []}},
            },
            "refers to a tensor 'nowhere' that it does not hold",
        ),
    ],
    ids=["list", "extra", "classes", "epoch", "history", "tensor"],
)
def test_malformed_metadata_in_a_training_state_is_one_line_for_resume(syn_run, tmp_path, capsys, change, needle):
    import shutil

    from safetensors import safe_open

    run = tmp_path / "r"
    shutil.copytree(syn_run, run)
    (run / "summary.json").unlink()
    with safe_open(str(run / STATE_FILE), "pt") as f:
        meta = json.loads(f.metadata()["senet"])
    (run / STATE_FILE).unlink()
    _with_metadata(run / GOOD_STATE_FILE, run / STATE_FILE, json.dumps(change(meta)))
    before = (run / STATE_FILE).read_bytes()
    err = _fails(capsys, "train", "--resume", str(run))
    assert needle in err and str(run / STATE_FILE) in err and (run / STATE_FILE).read_bytes() == before
    assert f"restore it from {GOOD_STATE_FILE}" in err or "malformed senet metadata" in err


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", ".nan"), ("lr", ".inf"), ("weight_decay", ".nan"), ("weight_decay", "-.inf"), ("gamma", ".inf"),
     ("warmup_epochs", ".nan"), ("momentum", ".nan"), ("min_lr", ".inf")],
)  # fmt: skip
def test_non_finite_recipe_values_are_refused_before_training(tmp_path, capsys, field, value):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: resnet20\ndataset: synthetic\n{field}: {value}\n")
    err = _fails(capsys, "train", "--recipe", str(recipe), "--out-dir", str(tmp_path))
    assert f"{field}=" in err and "expected a finite number" in err
    flag = "--" + field.replace("_", "-")
    assert "expected a finite number" in _fails(capsys, "train", *SYN, f"{flag}={value}", "--out-dir", str(tmp_path))
    assert not [p for p in tmp_path.iterdir() if p.name != "r.yaml"]


def test_an_empty_class_folder_is_refused_not_made_a_class(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / "imgs" / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / split / c / "0.png")
    (tmp_path / "imgs" / "train" / "empty").mkdir()
    (tmp_path / "imgs" / "train" / "empty" / "notes.txt").write_text("no images here")
    err = _fails(capsys, "train", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "imgs"), "--model",
                 "resnet20", "--out-dir", str(tmp_path / "out"))  # fmt: skip
    assert "class folder(s) without images" in err and "['empty']" in err and "add images or remove the folder" in err


def test_convert_refuses_a_zero_or_non_finite_std(syn_run, tmp_path, capsys):
    w = str(syn_run / LAST_FILE)
    base = ["convert", w, "--model", "resnet20", "--num-classes", "10", "--out", str(tmp_path / "c.safetensors")]
    assert "std[1] is 0.0" in _fails(capsys, *base, "--std", "0.2", "0", "0.2")
    assert "not a finite number" in _fails(capsys, *base, "--std", "nan", "0.2", "0.2")
    assert "one value per input channel (3)" in _fails(capsys, *base, "--std", "0.2")
    assert not (tmp_path / "c.safetensors").exists()
    _ok(capsys, *base, "--std", "0.2", "0.2", "0.2")  # and a valid one converts


def test_a_negative_subset_is_refused(syn_run, capsys):
    from senet.data import load_datasets

    assert "--test-subset: -5 is not a whole number" in _fails(capsys, "eval", str(syn_run), "--test-subset", "-5")
    with pytest.raises(ValueError, match=r"test_subset=-5 must be a whole number of images, at least 0"):
        load_datasets("synthetic", test_subset=-5)
    assert "test_subset=-5: expected a whole number" in _fails(capsys, "train", *SYN, "--test-subset", "-5")


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_nan_loss_is_written_as_null_in_valid_json(syn_run, tmp_path, capsys):
    """Weights that compute NaN: eval's JSON (printed and --json) says "loss": null, which any parser reads, where
    Python's json would write NaN; the same writer serves summary.json, compare.json, study.json and cost.json."""
    from senet.analysis.ablate import StudyResult
    from senet.files import save_weights
    from senet.validate import json_text

    tensors, meta = read_weights(syn_run / LAST_FILE)
    tensors["fc.weight"] = torch.full_like(tensors["fc.weight"], float("nan"))
    save_weights(tmp_path / "nan.safetensors", tensors, meta)
    argv = ["eval", str(tmp_path / "nan.safetensors"), "--test-subset", "16", "--json", str(tmp_path / "e.json")]
    printed = _strict_json(_ok(capsys, *argv))
    saved = _strict_json((tmp_path / "e.json").read_text())
    assert printed["loss"] is None and saved == printed and printed["images"] == 16
    study = StudyResult("reduction", "se_resnet20", tmp_path / "study", [
        {"label": "r=4", "model": "se_resnet20", "options": {"r": 4}, "paper_err": float("nan"), "seeds": 1,
         "errors": [7.5], "runs": [], "params": None, "macs": None}])  # fmt: skip
    study.save()
    assert _strict_json((tmp_path / "study" / "study.json").read_text())["rows"][0]["paper_err"] is None
    assert json_text({"a": [float("inf"), 1.5, {"b": -float("inf")}]}, indent=None) == '{"a": [null, 1.5, {"b": null}]}'


def test_no_output_replaces_a_file_of_a_run_folder_or_lands_in_a_busy_one(syn_run, tmp_path, capsys):
    """eval's --json, export's and convert's --out and profile's --json may not replace a run's own files (a run
    given as the input, or any other), nor write into a folder a running senet process holds."""
    files = {p: p.read_bytes() for p in syn_run.iterdir() if p.is_file()}
    err = _fails(capsys, "eval", str(syn_run), "--json", str(syn_run / STATE_FILE), "--test-subset", "8")
    assert "is the state.safetensors of the run" in err
    assert "is the best.safetensors of the run" in _fails(capsys, "profile", "resnet20", "--json",
                                                          str(syn_run / "best.safetensors"))  # fmt: skip
    other = tmp_path / "other"
    with folder_lock(other):
        err = _fails(capsys, "profile", "resnet20", "--json", str(other / "p.json"))
        assert f"is in use by senet pid {os.getpid()}" in err
        assert "is in use" in _fails(capsys, "cost", "resnet20", "--no-train", "--repeats", "1", "--out", str(other))
    assert [p.name for p in other.iterdir()] == [LOCK_FILE]
    assert {p: p.read_bytes() for p in syn_run.iterdir() if p.is_file()} == files
    _ok(capsys, "eval", str(syn_run), "--json", str(syn_run / "eval.json"), "--test-subset", "8")  # a new file: fine


def test_a_huge_synthetic_subset_and_an_overlong_name_are_refused_before_anything_is_made(syn_run, tmp_path, capsys):
    err = _fails(capsys, "eval", str(syn_run), "--test-subset", "100000000")
    assert "would take" in err and "GiB; lower train_subset / test_subset or image_size" in err
    err = _fails(capsys, "train", *SYN, "--name", "x" * 300, "--out-dir", str(tmp_path / "o"))
    assert "is 300 bytes long; a folder name may have at most 255" in err and not (tmp_path / "o").exists()
