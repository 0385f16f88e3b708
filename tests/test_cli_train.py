"""`senet train / eval / predict / compare` end to end on real Fashion-MNIST, crash safety with real SIGKILLs,
and every bad input answered with one line and exit status 2."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import slow
from test_data import needs_fmnist, write_fake_fmnist

import senet
from senet.cli import main
from senet.files import read_weights, save_weights
from senet.training.checkpoint import LAST_FILE, STATE_FILE, load_state

pytestmark = needs_fmnist

# ResNet-20 on a fixed subset of the real data: 12 batches an epoch, a checkpoint every 3 optimizer steps.
RUN = ["--model", "resnet20", "--train-subset", "768", "--test-subset", "128", "--batch-size", "64", "--lr", "0.4"]
RUN += ["--epochs", "2", "--deterministic", "--checkpoint-every", "3", "--progress", "none"]


def senet_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "senet", *args]


def run_dir_args(tmp, name):
    return ["--out-dir", str(tmp), "--name", name]


def same_weights(a, b) -> bool:
    ta, _ = read_weights(a)
    tb, _ = read_weights(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def metrics_without_times(run):
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    timed = {rows[0].index(c) for c in ("images_per_s", "epoch_s", "elapsed_s")}
    return [[v for i, v in enumerate(r) if i not in timed] for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run the interrupted ones must reproduce bit for bit."""
    return train_run(tmp_path_factory.mktemp("ref"), "ref")


def train_run(tmp, name, *extra) -> Path:
    """`senet train` of RUN (and ``extra`` flags) to its end, in tmp/name."""
    subprocess.run(senet_cmd("train", *RUN, *extra, *run_dir_args(tmp, name)), check=True, capture_output=True)
    return tmp / name


def kill_mid_epoch_and_resume(run, *extra) -> dict:
    """`senet train` of RUN (and ``extra`` flags) in ``run``, SIGKILLed once a mid-epoch checkpoint exists, then
    resumed to its end; the checkpoint's counters where it was killed."""
    victim = subprocess.Popen(
        senet_cmd("train", *RUN, *extra, *run_dir_args(run.parent, run.name)), stderr=subprocess.PIPE
    )
    state_file = run / STATE_FILE
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if state_file.is_file() and load_state(state_file).extra["batch"] > 0:  # a mid-epoch checkpoint exists
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = load_state(state_file).extra
    assert 0 < killed_at["batch"] < 12 and not (run / "summary.json").exists()
    resumed = subprocess.run(senet_cmd("train", "--resume", str(run)), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    return killed_at


@slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, reference):
    kill_mid_epoch_and_resume(tmp_path / "v")
    assert same_weights(tmp_path / "v" / LAST_FILE, reference / LAST_FILE)
    assert metrics_without_times(tmp_path / "v") == metrics_without_times(reference)


@slow
def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, reference):
    # The third write of state.safetensors (steps 0, 3, 6) is torn half-way and the process SIGKILLed inside it.
    script = textwrap.dedent(f"""
        import os, pathlib, signal, sys
        from senet.cli import main
        real, calls = pathlib.Path.write_bytes, []
        def torn(path, data):
            if path.name.startswith(".state.safetensors."):
                calls.append(path)
                if len(calls) == 3:
                    real(path, data[: len(data) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(path, data)
        pathlib.Path.write_bytes = torn
        sys.exit(main({["train", *RUN, *run_dir_args(tmp_path, "t")]!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    run = tmp_path / "t"
    leftovers = list(run.glob(".state.safetensors.*.tmp"))
    assert len(leftovers) == 1  # the torn temporary file; the real one was never replaced
    state = load_state(run)
    assert state.extra["step"] == 3 and state.extra["batch"] == 3  # the first checkpoint, whole
    resumed = subprocess.run(senet_cmd("train", "--resume", str(run)), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(run.glob(".*.tmp"))
    assert same_weights(run / LAST_FILE, reference / LAST_FILE)


@slow
def test_train_eval_predict(tmp_path, capsys, reference):
    out = json.loads(_ok(capsys, "eval", str(reference), "--test-subset", "128"))
    summary = json.loads((reference / "summary.json").read_text())
    assert out["model"] == "resnet20" and out["images"] == 128 and out["top1"] == pytest.approx(summary["test_acc"])
    assert 0 <= out["top1"] <= out["top5"] <= 1 and out["tta"] == "none"
    flipped = json.loads(_ok(capsys, "eval", str(reference), "--test-subset", "128", "--tta", "flip"))
    assert flipped["tta"] == "flip" and flipped["images"] == 128 and flipped["loss"] != pytest.approx(out["loss"])
    from PIL import Image

    _, test, _ = senet.data.load_datasets("fashion-mnist", test_subset=16)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(test.images[i, 0].numpy()).save(paths[-1])
    text = _ok(capsys, "predict", str(reference / LAST_FILE), *map(str, paths), "--top-k", "2")
    lines = text.strip().splitlines()
    assert len(lines) == 3 and all("%" in line and line.count(",") == 1 for line in lines)
    assert any(c in text for c in ("T-shirt/top", "Trouser", "Pullover", "Bag", "Sneaker", "Ankle boot"))


def test_eval_takes_the_runs_own_tta_unless_told(tmp_path, capsys):
    _ok(capsys, "train", "--dataset", "synthetic", "--model", "resnet20", "--image-size", "8", "--train-subset", "32",
        "--test-subset", "16", "--batch-size", "16", "--epochs", "1", "--progress", "none", "--tta", "flip",
        "--out-dir", str(tmp_path), "--name", "r")  # fmt: skip
    run = str(tmp_path / "r")
    own = json.loads(_ok(capsys, "eval", run, "--test-subset", "16"))
    flip = json.loads(_ok(capsys, "eval", run, "--test-subset", "16", "--tta", "flip"))
    none = json.loads(_ok(capsys, "eval", run, "--test-subset", "16", "--tta", "none"))
    assert own == flip and own["tta"] == "flip" and none["tta"] == "none" and none["loss"] != pytest.approx(own["loss"])


@slow
def test_compare_table_and_outputs(tmp_path, capsys):
    text = _ok(capsys, "compare", "se_resnet20", "resnet20", "--seeds", "2", "--train-subset", "256",
               "--test-subset", "64", "--batch-size", "64", "--epochs", "1", "--progress", "none",
               "--model-options", "{r: 4}", "--out-dir", str(tmp_path), "--name", "cmp")  # fmt: skip
    assert "| se_resnet20 |" in text and "| resnet20 |" in text and "± " in text
    folder = tmp_path / "cmp"
    assert f"curves: {folder / 'compare.png'}" in text and (folder / "compare.png").stat().st_size > 10_000
    data = json.loads((folder / "compare.json").read_text())
    se, plain = data["models"]
    assert (
        len(se["test_acc"]) == 2
        and se["params"] > plain["params"]
        and se["mean"] == pytest.approx(np.mean(se["test_acc"]))
    )
    diff = data["differences"][0]  # SE less plain, seed by seed, as the printed line says
    per_seed = [a - b for a, b in zip(se["test_acc"], plain["test_acc"], strict=True)]
    assert diff["model"] == "se_resnet20" and diff["baseline"] == "resnet20" and diff["per_seed"] == per_seed
    assert diff["stderr"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2)  # stdev / √2 for two seeds
    shown = ", ".join(f"{100 * d:+.2f}" for d in per_seed)
    line = f"se_resnet20 - resnet20, seed by seed: {shown} points; mean {100 * np.mean(per_seed):+.2f}"
    report = (folder / "compare.md").read_text(encoding="utf-8")
    assert line in text and line in report and "after 1 epoch; seeds [0, 1]" in report
    assert (folder / "se_resnet20-s1" / "summary.json").is_file()
    meta = read_weights(folder / "se_resnet20-s0" / LAST_FILE)[1]
    assert meta["options"] == {"r": 4} and read_weights(folder / "resnet20-s0" / LAST_FILE)[1]["options"] == {}


def test_differences_of_one_seed_and_of_several():
    from types import SimpleNamespace

    from senet.training.compare import Comparison, ModelSummary

    def cmp(first, second):  # last-epoch accuracies per seed; only test_acc is read
        runs = [[SimpleNamespace(test_acc=a) for a in accs] for accs in (first, second)]
        return Comparison([ModelSummary("se", runs[0]), ModelSummary("plain", runs[1])], *[None] * 4)

    assert cmp([0.9], [0.89]).differences_text() == "se - plain: +1.00 points (one seed)"
    three = cmp([0.90, 0.92, 0.91], [0.89, 0.93, 0.90])
    assert three.differences()[0]["per_seed"] == pytest.approx([0.01, -0.01, 0.01])
    assert three.differences()[0]["stderr"] == pytest.approx(np.std([0.01, -0.01, 0.01], ddof=1) / np.sqrt(3))
    assert (
        three.differences_text()
        == "se - plain, seed by seed: +1.00, -1.00, +1.00 points; mean +0.33 ± 0.67 (standard error)"
    )


def _ok(capsys, *argv) -> str:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _fails(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


TINY = ["--model", "resnet20", "--train-subset", "128", "--test-subset", "64", "--batch-size", "32", "--epochs", "1"]


def _image_folder(root, broken: bool):
    from PIL import Image

    for split in ("train", "val"):
        for c, value in (("cat", 60), ("dog", 200)):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (40, 36), (value, i * 20, 0)).save(root / split / c / f"{i}.png")
    if broken:
        (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")


def test_bad_inputs_one_line_exit_2(tmp_path, capsys):
    out = run_dir_args(tmp_path, "x")
    err = _fails(capsys, "train", *TINY, "--model", "se_resnet21", *out)
    assert "unknown model 'se_resnet21'; close matches: " in err and "se_resnet20" in err
    assert "unknown dataset 'fmnist'" in _fails(capsys, "train", *TINY, "--dataset", "fmnist", *out)
    (tmp_path / "r.yaml").write_text("model: se_resnet20\nlrr: 0.1\n")
    assert "unknown field 'lrr'" in _fails(capsys, "train", "--recipe", str(tmp_path / "r.yaml"))
    assert "unrecognized arguments: --lrr" in _fails(capsys, "train", "--lrr", "0.1")
    assert "unknown recipe 'nope'" in _fails(capsys, "train", "--recipe", "nope")
    assert "epochs" in _fails(capsys, "train", "--epochs", "many")

    empty = tmp_path / "empty"
    empty.mkdir()
    err = _fails(capsys, "train", *TINY, "--data-dir", str(empty), *out)
    assert f"looked in {empty}" in err and "apt-get install dataset-fashion-mnist" in err and "--download" in err

    write_fake_fmnist(tmp_path / "trunc", gz=False)
    labels = tmp_path / "trunc" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-5])
    assert "t10k-labels-idx1-ubyte' is truncated" in _fails(
        capsys, "train", *TINY, "--data-dir", str(tmp_path / "trunc"), *out
    )

    err = _fails(capsys, "train", *TINY, "--lr", "1e38", "--checkpoint-every", "1", *run_dir_args(tmp_path, "nan"))
    assert "training loss is nan at step 2" in err or "training loss is inf at step 2" in err
    assert "is back at the start of the run (step 0" in err and load_state(tmp_path / "nan").extra["step"] == 0


@slow
def test_bad_images_named_or_skipped_and_counted(tmp_path, capsys):
    _image_folder(tmp_path / "imgs", broken=True)
    base = ["train", "--model", "resnet20", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "imgs"),
            "--image-size", "16", "--batch-size", "3", "--epochs", "1", "--progress", "none"]  # fmt: skip
    err = _fails(capsys, *base, *run_dir_args(tmp_path, "a"))
    assert "unreadable image" in err and "broken.jpg" in err and "--skip-bad-images" in err
    text = _ok(capsys, *base, "--skip-bad-images", *run_dir_args(tmp_path, "b"))
    assert "skipped 1 unreadable image(s)" in text


@slow
def test_checkpoints_of_another_model_and_malicious_pickles(tmp_path, capsys, reference):
    # resuming a resnet20 run as an SE-ResNet-20
    err = _fails(capsys, "train", "--resume", str(reference), "--model", "se_resnet20")
    assert "cannot resume from" in err and "holds resnet20" in err
    # a plain state dict of one model evaluated as another
    plain = senet.create_model("resnet20", num_classes=10, in_chans=1)
    torch.save(plain.state_dict(), tmp_path / "resnet20.pth")
    err = _fails(capsys, "eval", str(tmp_path / "resnet20.pth"), "--model", "se_resnet20", "--dataset", "fashion-mnist")
    assert "does not fit se_resnet20" in err
    assert _ok(capsys, "eval", str(tmp_path / "resnet20.pth"), "--model", "resnet20", "--dataset", "fashion-mnist",
               "--test-subset", "32")  # fmt: skip
    # weights whose metadata names another model than their tensors fit
    tensors, meta = read_weights(reference / LAST_FILE)
    save_weights(tmp_path / "lie.safetensors", tensors, {**meta, "name": "se_resnet20"})
    assert "does not fit se_resnet20" in _fails(capsys, "eval", str(tmp_path / "lie.safetensors"))

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/senet_eval_pwned",))

    torch.save({"state_dict": plain.state_dict(), "hook": Evil()}, tmp_path / "evil.pth")
    err = _fails(capsys, "eval", str(tmp_path / "evil.pth"), "--model", "resnet20", "--dataset", "fashion-mnist")
    assert "refusing to load" in err and not os.path.exists("/tmp/senet_eval_pwned")
    assert "not a valid safetensors file (a pickle?" in _fails(capsys, "predict", str(tmp_path / "evil.pth"), "x.png")


@slow
def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    for argv, needle in [
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (
            ["train", *TINY, "--dataset", "cifar10", "--data-dir", str(tmp_path), *run_dir_args(tmp_path, "c")],
            "cifar10",
        ),
    ]:
        proc = subprocess.run(senet_cmd(*argv), capture_output=True, text=True)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@slow
def test_train_prints_its_result_in_one_line(tmp_path, capsys):
    text = _ok(capsys, "train", *TINY, "--progress", "none", *run_dir_args(tmp_path, "one"))
    assert "resnet20 on fashion-mnist: test top-1 " in text and " after 1 epoch, " in text
