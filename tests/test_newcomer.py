"""A newcomer's path through the everyday commands (issue 18): image folders as people lay them out, small images,
one epoch and one seed, runs used from another folder, and weights of another layout given to eval."""

import functools
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import slow

import senet.cli
from senet.cli import main
from senet.data import FASHION_MNIST_DIR, load_datasets
from senet.data.sampling import EpochBatches
from senet.files import read_weights
from senet.training import TrainConfig
from senet.training.checkpoint import LAST_FILE
from senet.training.outputs import mean_std

CLASSES = ("ant", "bee", "cow")


def _image_folder(root: Path, held_out: str = "val", size: tuple[int, int] = (64, 64), n: int = 8) -> Path:
    """``root/train/CLASS/*.png`` and ``root/HELD_OUT/CLASS/*.png``: three classes of n images each, told apart by
    their colour."""
    from PIL import Image

    for split in ("train", held_out):
        for k, c in enumerate(CLASSES):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", size, (90 * k, 10 * i, 255 - 90 * k)).save(root / split / c / f"{i}.png")
    return root


def _ok(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _fails(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# -- image folders ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("held_out", ["val", "valid", "validation", "test"])
def test_the_held_out_folder_goes_by_its_common_names(tmp_path, held_out):
    root = _image_folder(tmp_path / "imgs", held_out, n=2)
    _, test, spec = load_datasets("imagefolder", data_dir=str(root))
    assert spec.classes == CLASSES and len(test) == 6
    assert {Path(p).parts[-3] for p, _ in test.samples} == {held_out}


def test_val_is_the_test_set_of_a_folder_split_three_ways(tmp_path):
    root = _image_folder(tmp_path / "imgs", "val", n=2)
    _image_folder(root, "test", n=1)
    _, test, _ = load_datasets("imagefolder", data_dir=str(root))
    assert len(test) == 6 and {Path(p).parts[-3] for p, _ in test.samples} == {"val"}


def test_a_folder_without_a_held_out_split_names_the_places_looked(tmp_path, capsys):
    root = tmp_path / "imgs"
    (root / "train" / "ant").mkdir(parents=True)
    err = _fails(capsys, "train", "--dataset", "imagefolder", "--data-dir", str(root), "--out-dir", str(tmp_path))
    assert all(str(root / name) in err for name in ("train", "val", "valid", "validation", "test"))
    assert "a held-out folder val/CLASS/*.jpg (or valid/, validation/, test/)" in err  # the fix names every name


@pytest.mark.parametrize(("size", "side"), [((64, 64), 64), ((40, 36), 36), ((300, 260), 224)])
def test_image_size_follows_small_images_and_is_224_for_large_ones(tmp_path, size, side):
    root = _image_folder(tmp_path / "imgs", size=size, n=2)
    train, test, spec = load_datasets("imagefolder", data_dir=str(root))
    assert spec.image_size == side
    assert train[0][0].shape == test[0][0].shape == (3, side, side)
    assert load_datasets("imagefolder", data_dir=str(root), image_size=48)[2].image_size == 48  # as asked


def test_a_batch_larger_than_the_training_set_names_the_largest_that_fits(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"do not fill one batch of 64; set batch_size \(--batch-size\) to at most 10"):
        EpochBatches(10, 64, shuffle=True)
    root = _image_folder(tmp_path / "imgs", size=(16, 16), n=2)
    err = _fails(capsys, "train", "--dataset", "imagefolder", "--data-dir", str(root), "--model", "resnet20",
                 "--out-dir", str(tmp_path / "out"))  # fmt: skip
    assert "6 training images" in err and "at most 6" in err


def test_a_relative_data_dir_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(dataset="imagefolder", data_dir="imgs")
    assert config.data_dir == str(tmp_path / "imgs")
    assert TrainConfig.from_dict(config.to_dict()).data_dir == str(tmp_path / "imgs")  # unchanged when read back
    assert TrainConfig(data_dir="~/data").data_dir == str(Path.home() / "data")


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """se_resnet20 trained one epoch on a three-class folder of 64-pixel images with a valid/ split, named by a
    relative --data-dir and evaluated on a test subset of 5 images."""
    tmp = tmp_path_factory.mktemp("newcomer")
    _image_folder(tmp / "imgs", "valid")
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        assert main(["train", "--dataset", "imagefolder", "--data-dir", "imgs", "--model", "se_resnet20",
                     "--model-options", "{r: 4}", "--batch-size", "8", "--epochs", "1", "--test-subset", "5",
                     "--progress", "none", "--threads", "1", "--out-dir", "runs", "--name", "r"]) == 0  # fmt: skip
    finally:
        os.chdir(cwd)
    return tmp / "runs" / "r"


@slow
def test_a_run_on_small_images_records_their_size_and_its_absolute_data_dir(folder_run):
    meta = read_weights(folder_run / LAST_FILE)[1]
    assert meta["image_size"] == 64 and meta["classes"] == list(CLASSES)
    assert meta["recipe"]["data_dir"] == str(folder_run.parent.parent / "imgs")


@slow
def test_eval_of_a_run_from_another_folder_scores_the_runs_own_test_subset(folder_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where imgs/ is not
    out = json.loads(_ok(capsys, "eval", str(folder_run)))
    assert out["images"] == out["test_subset"] == 5
    whole = json.loads(_ok(capsys, "eval", str(folder_run), "--test-subset", "0"))
    assert whole["images"] == 24 and whole["test_subset"] == 0
    err = _fails(capsys, "eval", str(folder_run), "--dataset", "synthetic")
    assert "has 3 classes, synthetic has 10; evaluate it on the data it was trained on (leave out --dataset" in err


@slow
def test_excitation_of_a_three_class_run_needs_no_classes_flag(folder_run, tmp_path, capsys):
    out = _ok(capsys, "excitation", str(folder_run), "--out", str(tmp_path / "exc"))
    assert "SE_4_3" in out and (tmp_path / "exc" / "class_means.png").is_file()
    assert "\n5 test images; wrote" in out  # the run's own test subset, as eval scores it
    err = _fails(capsys, "excitation", str(folder_run), "--classes", "1", "3", "--out", str(tmp_path / "exc2"))
    assert f"--classes [3]: {folder_run} has 3 classes, indices 0 to 2" in err
    assert not (tmp_path / "exc2").exists()  # refused before recording: nothing written


# -- weights of another layout -------------------------------------------------------------------------------------


@slow
def test_eval_of_a_torchvision_pth_names_senet_convert(tmp_path, capsys):
    import torchvision

    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    err = _fails(capsys, "eval", str(path), "--model", "resnet18", "--dataset", "synthetic", "--test-subset", "8")
    assert f"senet convert {path} --model resnet18 --num-classes 10 --out W.safetensors" in err
    assert "torchvision" in err and "Missing key" not in err
    # ImageNet weights (1000 outputs) evaluated on 10-class data: the command named converts the file's own head
    torch.save(torchvision.models.resnet18().state_dict(), path)
    err = _fails(capsys, "eval", str(path), "--model", "resnet18", "--dataset", "synthetic", "--test-subset", "8")
    assert f"senet convert {path} --model resnet18 --num-classes 1000 --out W.safetensors" in err
    _ok(capsys, "convert", str(path), "--model", "resnet18", "--num-classes", "1000", "--out", str(tmp_path / "w.st"))


# -- one epoch, one seed ---------------------------------------------------------------------------------------------


def test_one_seed_shows_no_spread():
    assert mean_std([91.0]) == mean_std([91.0], seeds=3) == "91.00 (n=1)"  # one result in a table of seeds
    assert mean_std([91.0], seeds=1) == "91.00"  # under a "(1 seed)" header, which says it
    assert mean_std([90.0, 92.0]) == "91.00 ± 1.41"
    assert mean_std([]) == "–"


def test_tables_of_one_seed_show_no_zero_spread(tmp_path):
    from types import SimpleNamespace

    from senet.analysis.ablate import StudyResult
    from senet.analysis.html_report import build_report
    from senet.training.compare import Comparison, ModelSummary

    run = SimpleNamespace(
        test_acc=0.9123,
        params=10,
        macs=20,
        images_per_s=5.0,
        wall_s=60.0,
        run_dir=tmp_path,
        config=SimpleNamespace(seed=0),
    )
    table = Comparison([ModelSummary("se", [run])], tmp_path, *(tmp_path / n for n in "rpd")).table()
    assert "| 91.23 |" in table and "(n=1)" not in table and "±" not in table.splitlines()[2]
    assert "| test top-1 % (1 seed) |" in table  # the header says what the cells are: no mean, no std
    two = Comparison([ModelSummary("se", [run, run])], tmp_path, *(tmp_path / n for n in "rpd")).table()
    assert "| test top-1 % (mean ± std, 2 seeds) |" in two
    mixed = Comparison([ModelSummary("se", [run, run]), ModelSummary("plain", [run])], tmp_path,
                       *(tmp_path / n for n in "rpd")).table()  # fmt: skip
    assert "| plain | " in mixed and "| 91.23 (n=1) |" in mixed  # one result among pairs: named

    row = {"label": "relu", "errors": [8.5], "seeds": 1, "params": 10, "macs": 20, "paper_err": None}
    study = StudyResult("gate", "se_resnet20", tmp_path, [row])
    assert "| relu | 8.50 | 1/1 |" in study.markdown()
    assert "| top-1 err % (1 seed) |" in study.markdown() and "mean ± std" not in study.markdown()

    model = {"model": "se", "seeds": [0], "test_acc": [0.9123], "mean": 0.9123, "std": 0.0, "params": 10, "macs": 20,
             "images_per_s": 5.0, "wall_s": 60.0}  # fmt: skip
    data = {"models": [model], "config": TrainConfig(epochs=1).to_dict(), "machine": {"cpu": "x"}}
    (tmp_path / "compare.json").write_text(json.dumps(data))
    page = build_report(tmp_path).read_text()
    assert "1 epoch on fashion-mnist" in page and "1 epochs" not in page
    assert "91.23" in page and "(n=1)" not in page and "± 0.00" not in page
    assert "test top-1 % (1 seed)" in page and "Training curves (1 seed)" in page
    assert "mean ± std" not in page and "mean over seeds" not in page


def test_curves_of_one_epoch_draw_their_points(tmp_path, monkeypatch):
    """One epoch is one point per curve: each is drawn with a marker (a line through one point draws nothing)."""
    from matplotlib.figure import Figure

    from senet.training.outputs import plot_curves

    figures = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), save(self, *a, **k))[1])
    row = {"epoch": 1, "train_loss": 2.0, "test_loss": 1.9, "test_acc": 0.3}
    plot_curves(tmp_path / "c.png", {"se": [row], "plain": [row]})
    lines = [line for ax in figures[0].axes for line in ax.get_lines()]
    assert len(lines) == 6 and all(len(line.get_xdata()) == 1 for line in lines)
    assert all(line.get_marker() not in (None, "", "None", " ") for line in lines)


# -- messages that name the fix ---------------------------------------------------------------------------------------


def test_image_folder_errors_say_how_to_lay_the_folder_out(tmp_path):
    root = _image_folder(tmp_path / "imgs", n=1)
    (root / "val" / "owl").mkdir()
    with pytest.raises(ValueError, match=r"lacks: \['owl'\]; add them, with images, to train/ or remove them here"):
        load_datasets("imagefolder", data_dir=str(root))
    bare = tmp_path / "bare"
    for split in ("train", "val"):
        (bare / split / "ant").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no images .* put them in one folder per class: CLASS/\*\.jpg"):
        load_datasets("imagefolder", data_dir=str(bare))


@slow
def test_training_errors_name_the_flag_that_fixes_them(tmp_path, capsys):
    syn = ["--dataset", "synthetic", "--train-subset", "64", "--test-subset", "16", "--progress", "none",
           "--out-dir", str(tmp_path)]  # fmt: skip
    err = _fails(capsys, "train", *syn, "--model", "resnet20", "--batch-size", "32", "--accum-steps", "4")
    assert "2 batches, fewer than accum_steps=4; lower accum_steps or batch_size" in err
    err = _fails(capsys, "train", *syn, "--model", "resnet18", "--image-size", "16", "--batch-size", "32")
    assert "resnet18 needs images of at least 32 px; the data has 16: pass --image-size 32 or more" in err


def test_excitation_of_a_plain_model_points_to_its_se_twin():
    from senet.analysis.excitation import default_units
    from senet.factory import create_model

    with pytest.raises(ValueError, match=r"resnet20 has no SE units to record; record an SE model \(its se_ twin\)"):
        default_units(create_model("resnet20"))


# -- a run folder wherever a weights file or model name goes; data of another dataset ------------------------------


@pytest.fixture(scope="module")
def fmnist_run(tmp_path_factory):
    """se_resnet20 (r=4) trained one short epoch on 128 real Fashion-MNIST images, at their own 28 px."""
    if not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make data)")
    tmp = tmp_path_factory.mktemp("fmnist")
    assert main(["train", "--dataset", "fashion-mnist", "--model", "se_resnet20", "--model-options", "{r: 4}",
                 "--train-subset", "128", "--test-subset", "32", "--batch-size", "32", "--epochs", "1",
                 "--progress", "none", "--threads", "1", "--out-dir", str(tmp), "--name", "r"]) == 0  # fmt: skip
    return tmp / "r"


def _fmnist_pngs(folder: Path, n: int, start: int = 0) -> list[Path]:
    """Real Fashion-MNIST test images ``start`` .. ``start + n - 1`` as grayscale PNGs in ``folder``."""
    from PIL import Image

    _, test, _ = load_datasets("fashion-mnist", test_subset=0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(test.images[i, 0].numpy()).save(paths[-1])
    return paths


@slow
def test_profile_and_cost_take_a_run_folder_as_trained(fmnist_run, capsys):
    """A run folder in place of a model name measures the run's model (its r=4, 10 classes, one channel) at the size
    it was trained at (28 px), beside its plain twin, as eval, predict and export take the run folder."""
    import senet

    params = sum(p.numel() for p in senet.load_model(fmnist_run)[0].parameters())
    out = _ok(capsys, "profile", str(fmnist_run))
    assert f"{fmnist_run}: se_resnet20, r=4, 10 classes, input 1×28×28" in out
    assert f"{'se_resnet20':<24} {params / 1e6:>8.3f}M" in out and "resnet20" in out
    default = _ok(capsys, "profile", "se_resnet20", "--input-size", "28", "--in-chans", "1", "--num-classes", "10")
    assert f"{params / 1e6:>8.3f}M" not in default  # r=16 by default: the run's own options made the difference

    out = _ok(capsys, "cost", str(fmnist_run), "--batch", "2", "--repeats", "1", "--no-train", "--device", "cpu")
    assert f"| `se_resnet20` | {params:,} |" in out and "| `resnet20` |" in out
    assert "| **SE / plain** |" in out and "input 28×28" in out

    err = _fails(capsys, "profile", str(fmnist_run), "--in-chans", "3")
    assert "--in-chans 3: the run's model takes 1 input channels; leave it out" in err
    err = _fails(capsys, "cost", str(fmnist_run), "--attention", "eca", "--repeats", "1")
    assert "--attention puts units into registered models: give model names" in err


@slow
def test_predict_takes_a_folder_of_real_images(fmnist_run, tmp_path, capsys):
    """`senet predict RUN DIR` labels every image under DIR (subfolders too), in sorted order, as it labels the files
    named one by one; other files are left out, and a folder without images is refused, naming the fix."""
    images = _fmnist_pngs(tmp_path / "imgs", 3) + _fmnist_pngs(tmp_path / "imgs" / "more", 2, start=3)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    by_folder = json.loads(_ok(capsys, "predict", str(fmnist_run), str(tmp_path / "imgs"), "--json"))
    assert list(by_folder) == sorted(str(p) for p in images)
    by_file = json.loads(_ok(capsys, "predict", str(fmnist_run), *map(str, images), "--json"))
    assert by_folder == by_file
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    err = _fails(capsys, "predict", str(fmnist_run), str(tmp_path / "empty"))
    assert "is a folder without image files (.jpg" in err and "name image files or a folder that holds some" in err


@slow
def test_eval_on_another_dataset_reads_that_dataset_from_its_own_place(tmp_path, capsys):
    """A run trained on an image folder made of real Fashion-MNIST images (10 classes, grayscale, 28 px), evaluated
    with --dataset fashion-mnist: the IDX files come from their usual place, not the run's image folder."""
    if not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make data)")
    from PIL import Image

    _, test, _ = load_datasets("fashion-mnist", test_subset=0)
    root = tmp_path / "imgs"
    for k in range(10):
        where = (test.labels == k).nonzero().flatten()[:4].tolist()
        for split, idx in (("train", where[:2]), ("val", where[2:])):
            (root / split / f"c{k}").mkdir(parents=True)
            for i in idx:
                Image.fromarray(test.images[i, 0].numpy()).save(root / split / f"c{k}" / f"{i}.png")
    _ok(capsys, "train", "--dataset", "imagefolder", "--data-dir", str(root), "--in-chans", "1", "--model", "resnet20",
        "--batch-size", "10", "--epochs", "1", "--progress", "none", "--threads", "1", "--out-dir", str(tmp_path),
        "--name", "r")  # fmt: skip
    assert read_weights(tmp_path / "r" / LAST_FILE)[1]["image_size"] == 28
    out = json.loads(_ok(capsys, "eval", str(tmp_path / "r"), "--dataset", "fashion-mnist", "--test-subset", "16"))
    assert out["dataset"] == "fashion-mnist" and out["images"] == 16 and out["test_subset"] == 16
    own = json.loads(_ok(capsys, "eval", str(tmp_path / "r")))  # its own data: still where it was trained
    assert own["dataset"] == "imagefolder" and own["images"] == 20


def test_a_flag_the_command_does_not_take_names_the_one_it_does(tmp_path, capsys):
    """A flag from a sibling command (train's --out-dir given to eval) or a misspelt one: the command's own help,
    and the flag it takes for that."""
    err = _fails(capsys, "eval", str(tmp_path), "--out-dir", str(tmp_path / "o"))
    assert f"senet eval: unrecognized arguments: --out-dir {tmp_path / 'o'}; it writes its output with --json PATH " \
        "(see senet eval --help)" in err  # fmt: skip
    assert "; it writes its output with --out PATH" in _fails(capsys, "export", str(tmp_path), "--output", "x.onnx")
    assert "; it prints its output, no files" in _fails(capsys, "predict", str(tmp_path), "x.png", "--out", "y")
    assert "; did you mean --input-size?" in _fails(capsys, "export", str(tmp_path), "--input_size", "32")
    assert not list(tmp_path.iterdir())


def test_convert_of_a_folder_says_a_run_folder_needs_no_conversion(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    err = _fails(capsys, "convert", str(tmp_path / "run"), "--out", str(tmp_path / "w.safetensors"))
    assert "is a folder: pass a weights file (.pth, .safetensors); a senet run folder needs no conversion" in err
    assert not (tmp_path / "w.safetensors").exists()


# -- an installed senet: extras, torch.hub and the declared dependencies ------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@slow
def test_a_missing_extra_is_one_line_naming_the_pip_command(tmp_path):
    """`senet export` where the onnx package cannot be imported (None in sys.modules: import raises
    ModuleNotFoundError and importlib.util.find_spec answers None, as for a package that is not installed): exit 2,
    one line that names the extra to install, no file written."""
    import subprocess
    import sys
    import textwrap

    from senet.factory import create_model
    from senet.files import save_weights

    model = create_model("resnet20", num_classes=10)
    weights = save_weights(tmp_path / "w.safetensors", model, {**model.model_config, "mean": [0.5] * 3,
                                                                 "std": [0.25] * 3, "image_size": 32})  # fmt: skip
    script = textwrap.dedent("""
        import sys

        sys.modules.update(dict.fromkeys(("onnx", "onnxruntime", "onnxscript")))  # as if not installed
        from senet.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", script, "export", str(weights)], capture_output=True, text=True,
                          env=env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("senet: error: ONNX export needs the onnx package, which is not installed; install "
                                   "it with: pip install 'senet[onnx]'")  # fmt: skip
    assert not (tmp_path / "w.onnx").exists()


def _third_party(tree, *, module_level: bool) -> set[str]:
    """Top-level names of the absolute imports in ``tree`` (a module's AST) other than senet's and the standard
    library's; ``module_level``: only those run by importing the module (not inside functions or TYPE_CHECKING)."""
    import ast
    import sys

    found, todo = set(), list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if module_level and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        todo += ast.iter_child_nodes(node)
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("senet", "__future__")}


def _declared() -> dict[str, set[str]]:
    """pyproject.toml's distributions (normalised names): "" for the required ones, else by extra."""
    import re

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = lambda req: re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")  # noqa: E731
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {extra: {name(r) for r in reqs} for extra, reqs in groups.items()}


@functools.cache
def _distributions() -> dict[str, list[str]]:
    from importlib.metadata import packages_distributions

    return packages_distributions()  # reads every installed distribution's file list: once


# Modules of a required dependency that import a package it does not require: the package each needs.
_NEEDS = {"torch.utils.tensorboard": "tensorboard"}


def _distribution(module: str, installed: bool = True) -> str:
    """The distribution that provides ``module``; ``installed=False``: the module's own name where none does (an
    optional package this environment lacks)."""
    dists = _distributions().get(module)
    if not dists and not installed:
        return module.lower().replace("_", "-")
    assert dists, f"no installed distribution provides {module!r}"
    return dists[0].lower().replace("_", "-")


@slow
def test_hubconf_lists_what_importing_senet_needs():
    """torch.hub checks hubconf's ``dependencies`` before it imports hubconf, which imports senet: the list names
    every third-party module that `import senet` imports (so a missing one is named, not a traceback) and no module
    senet does not import, and each is a required dependency of pyproject.toml (a hub user installs no extras)."""
    import ast
    import subprocess
    import sys

    code = ("import json, sys; import hubconf; print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
            "if n == 'senet' or n.startswith('senet.'))))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    needed = set()
    for path in json.loads(proc.stdout):
        needed |= _third_party(ast.parse(Path(path).read_text()), module_level=True)
    hub = ast.parse((ROOT / "hubconf.py").read_text())
    listed = next(ast.literal_eval(n.value) for n in hub.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", "") == "dependencies")  # fmt: skip
    anywhere = set().union(*(_third_party(ast.parse(p.read_text()), module_level=False)
                             for p in (ROOT / "src" / "senet").rglob("*.py")))  # fmt: skip
    assert needed <= set(listed) <= anywhere
    assert {_distribution(m) for m in listed} <= _declared()[""]


@slow
def test_every_third_party_import_is_declared_in_pyproject():
    """Every module senet imports from outside the standard library is a required dependency, or, where it is
    imported only for a feature (`senet.environment.require(module, extra, ...)`, or an import that may fail), is
    in an extra a user installs for it (not the test extra)."""
    import ast

    declared = _declared()
    users = set().union(*(v for k, v in declared.items() if k not in ("", "test")))
    missing = []
    for path in sorted((ROOT / "src" / "senet").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for module in _third_party(tree, module_level=False):
            dist = _distribution(module)
            if dist not in declared[""] and dist not in users:
                missing.append(f"{path.relative_to(ROOT)}: {module} ({dist})")
        for node in ast.walk(tree):  # torch.utils.tensorboard: tensorboard, in an extra
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for needs in {_NEEDS[n] for n in names if n in _NEEDS}:
                if _distribution(needs, installed=False) not in users:
                    missing.append(f"{path.relative_to(ROOT)}: {needs} (for {', '.join(names)})")
        for call in ast.walk(tree):  # require("onnx", "onnx", ...): the extra it names must hold the module
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "require" and len(call.args) >= 2:
                module, extra = (ast.literal_eval(a) for a in call.args[:2])
                package = ast.literal_eval(call.args[3]) if len(call.args) > 3 else module.split(".")[0]
                if package != _NEEDS.get(module, package):
                    missing.append(f"{path.relative_to(ROOT)}: require({module!r}, ...) names {package!r}")
                if _distribution(package, installed=False) not in declared.get(extra, set()):
                    missing.append(f"{path.relative_to(ROOT)}: require({module!r}, {extra!r})")
    assert not missing


# -- the second cold review: eval as trained, folders of runs, torchrun, tensorboard, other datasets ---------------


@slow
def test_eval_of_a_bf16_run_scores_what_training_scored(tmp_path, capsys):
    """fmnist-fast trains with bf16 autocast: `senet eval RUN` evaluates with it too (as it follows the run's tta and
    test subset), so its top-1 and loss are the run's own on the same real images; --amp none still overrides."""
    if not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make data)")
    _ok(capsys, "train", "--recipe", "fmnist-fast", "--epochs", "1", "--train-subset", "128", "--test-subset", "64",
        "--batch-size", "32", "--progress", "none", "--threads", "1", "--out-dir", str(tmp_path),
        "--name", "r")  # fmt: skip
    last = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    row = dict(zip(last[0].split(","), last[-1].split(","), strict=True))
    out = json.loads(_ok(capsys, "eval", str(tmp_path / "r")))
    assert out["amp"] == "bf16" and out["images"] == 64
    assert out["top1"] == float(row["test_acc"]) and out["loss"] == pytest.approx(float(row["test_loss"]), abs=1e-6)
    fp32 = json.loads(_ok(capsys, "eval", str(tmp_path / "r"), "--amp", "none"))
    assert fp32["amp"] == "none" and fp32["loss"] != pytest.approx(out["loss"], abs=1e-6)


def _weights(path: Path) -> Path:
    """A real resnet20's weights with senet's metadata at ``path`` (a run's last.safetensors): 10 classes of 3-channel
    32 px synthetic images."""
    from senet.factory import create_model
    from senet.files import save_weights

    model = create_model("resnet20", num_classes=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**model.model_config, "mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 32, "dataset": "synthetic"}
    return save_weights(path, model, meta)


def test_a_folder_of_runs_where_a_run_goes_names_its_runs(tmp_path, capsys):
    """A compare or ablate folder given to a command that takes a run folder is named as what it is, with its first
    runs to pass instead; a run folder whose training has not saved its weights yet says so (not "no weights file")."""
    cmp = tmp_path / "cmp"
    for run in ("resnet20-s0", "resnet20-s1", "se_resnet20-s0", "se_resnet20-s1"):
        _weights(cmp / run / LAST_FILE)
    (cmp / "compare.json").write_text("{}")
    for argv in (["eval"], ["export"], ["predict", "x.png"], ["excitation"], ["profile"], ["cost"]):
        err = _fails(capsys, argv[0], str(cmp), *argv[1:])
        assert f"{str(cmp)!r} is a comparison (senet compare's output), not a run folder; pass one of its runs: " \
            f"{str(cmp / 'resnet20-s0')!r}, {str(cmp / 'resnet20-s1')!r}, {str(cmp / 'se_resnet20-s0')!r} and 1 " \
            "more" in err, argv  # fmt: skip
    study = tmp_path / "study"
    _weights(study / "runs" / "se-s0" / LAST_FILE)
    (study / "study.json").write_text("{}")
    err = _fails(capsys, "eval", str(study))
    assert (
        f"is a study (senet ablate's output), not a run folder; pass one of its runs: {str(study / 'runs' / 'se-s0')!r}"
        in err
    )
    (tmp_path / "new" / "config.yaml").parent.mkdir()
    (tmp_path / "new" / "config.yaml").write_text("model: resnet20\n")
    err = _fails(capsys, "export", str(tmp_path / "new"))
    assert "is a run folder whose training has not saved its weights (last.safetensors) yet" in err
    assert f"senet train --resume {tmp_path / 'new'}" in err
    assert "no weights file at" in _fails(capsys, "eval", str(tmp_path / "new" / "x"))  # not a folder: as before


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (["compare", "resnet20", "se_resnet20", "--dataset", "synthetic"],
         "to train with several processes, run `senet train` under torchrun for each model and seed"),
        (["ablate", "reduction", "--dataset", "synthetic"], "under torchrun for each variant and seed"),
        (["eval", "RUN"], "only senet train runs under torchrun"),
        (["export", "RUN"], "only senet train runs under torchrun"),
    ],
)  # fmt: skip
def test_commands_of_one_process_refuse_torchrun(tmp_path, monkeypatch, capsys, argv, fix):
    """Under torchrun (WORLD_SIZE > 1) a command other than train refuses before any work: one line on the first
    process naming what to do, exit 2 on every process (was: each process ran it, one found the folder in use)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    err = _fails(capsys, *argv)
    assert f"senet {argv[0]} runs as one process, not under torchrun (WORLD_SIZE=2); run it without torchrun" in err
    assert fix in err
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(senet.cli, "_OTHERS_WAIT_S", 0.0)  # the real wait: test_compare_launched_by_torchrun_...
    assert main(argv) == 2
    assert capsys.readouterr() == ("", "")
    assert not list(tmp_path.iterdir())


@slow
def test_compare_launched_by_torchrun_is_refused_on_both_processes(tmp_path):
    """A real two-process launch: exit 2, the line once, no traceback of senet's (torchrun's own
    report of the failed processes ends in the launcher's traceback)."""
    import subprocess
    import sys

    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node=2", "-m", "senet", "compare", "resnet20", "se_resnet20",
           "--dataset", "synthetic", "--out-dir", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "exitcode  : 2 " in proc.stderr, proc.stderr
    assert "/senet/" not in proc.stderr  # no frame of senet's
    assert proc.stderr.count("senet compare runs as one process, not under torchrun (WORLD_SIZE=2)") == 1
    assert not list(tmp_path.iterdir())


def test_tensorboard_true_without_tensorboard_is_refused_naming_the_extra(tmp_path, monkeypatch, capsys):
    """`--tensorboard true` where tensorboard cannot be imported (None in sys.modules, as if not installed): one line
    naming `pip install 'senet[tensorboard]'`, before any run folder; left out, the run trains without tb/."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    syn = ["train", "--dataset", "synthetic", "--model", "resnet20", "--train-subset", "16", "--test-subset", "8",
           "--batch-size", "8", "--epochs", "1", "--progress", "none", "--threads", "1",
           "--out-dir", str(tmp_path)]  # fmt: skip
    err = _fails(capsys, *syn, "--name", "tb", "--tensorboard", "true")
    assert err.strip() == ("senet: error: tensorboard=true (TensorBoard events in RUN/tb) needs the tensorboard "
                           "package, which is not installed; install it with: "
                           "pip install 'senet[tensorboard]'")  # fmt: skip
    assert not (tmp_path / "tb").exists()
    _ok(capsys, *syn, "--name", "plain")  # the default: events when tensorboard is installed
    assert (tmp_path / "plain" / LAST_FILE).is_file() and not (tmp_path / "plain" / "tb").exists()


def test_eval_on_a_dataset_of_other_channels_names_both(tmp_path, capsys):
    """Weights trained on 3-channel images, evaluated on Fashion-MNIST (1 channel): the run's and the dataset's
    channels, not a complaint about a mean and std the user never gave."""
    if not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make data)")
    weights = _weights(tmp_path / "r" / LAST_FILE)
    err = _fails(capsys, "eval", str(weights), "--dataset", "fashion-mnist", "--test-subset", "8")
    assert "the weights were trained on 3-channel images (synthetic) and fashion-mnist's have 1; evaluate them on " \
        "3-channel data" in err and "mean" not in err  # fmt: skip
    out = json.loads(_ok(capsys, "eval", str(weights), "--test-subset", "8"))  # its own data: as before
    assert out["dataset"] == "synthetic" and out["images"] == 8


@pytest.mark.parametrize("command", ["profile", "cost"])
def test_profile_and_cost_of_a_library_model_say_they_take_registered_models(command, capsys):
    """`timm:NAME` / `torchvision:NAME`, which train and eval take: these two commands say they measure registered
    senet models beside their twins, and how to count such a model alone (was: "unknown model 'timm:resnet18'")."""
    for name in ("timm:resnet18", "torchvision:resnet18"):
        err = _fails(capsys, command, "resnet20", name, "--repeats", "1") if command == "cost" else (
            _fails(capsys, command, name))  # fmt: skip
        assert f"{name}: senet profile and senet cost measure registered senet models beside their twins (`senet " \
            f"models` lists them); a {name.partition(':')[0]} model has no twin there" in err  # fmt: skip
        assert f"senet.profile(senet.create_model({name!r}), (C, H, W))" in err and "unknown model" not in err


def test_readme_install_names_every_extra_and_the_quick_start_stays_two_commands():
    """README's install section has a line for each extra a user installs (not the test extra), and its quick start
    is still the two make commands."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert {e for e in _declared() if e not in ("", "test")} == set(re.findall(r"pip install '\.\[(\w+)\]'", install))
    quick = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick.splitlines()] == ["make demo", "make test"]


def test_a_resumed_run_recorded_with_tensorboard_true_goes_on_without_it(tmp_path, monkeypatch, capsys):
    """Runs recorded before the default became null say `tensorboard: true` (then: "when installed"). Resumed where
    tensorboard is missing, such a run goes on without events and says so, rather than being refused."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    syn = ["train", "--dataset", "synthetic", "--model", "resnet20", "--train-subset", "16", "--test-subset", "8",
           "--batch-size", "8", "--progress", "epoch", "--threads", "1", "--out-dir", str(tmp_path),
           "--name", "old"]  # fmt: skip
    _ok(capsys, *syn, "--epochs", "1")
    config = tmp_path / "old" / "config.yaml"
    config.write_text(config.read_text().replace("tensorboard: null", "tensorboard: true"))
    assert "tensorboard: true" in config.read_text()
    assert main(["train", "--resume", str(tmp_path / "old"), "--epochs", "2"]) == 0
    out = capsys.readouterr()
    assert "this resumed run writes no TensorBoard events" in out.out + out.err
    assert json.loads((tmp_path / "old" / "summary.json").read_text())["config"]["epochs"] == 2
    assert not (tmp_path / "old" / "tb").exists()


def test_grayscale_torchvision_weights_convert_with_in_chans(tmp_path, capsys):
    """A torchvision ResNet-18 fine-tuned on grayscale images (conv1 of 1 channel): `senet convert` names the fix,
    then converts it with --in-chans 1 and the data's mean and std, and the result computes torchvision's function."""
    import torchvision

    tv = torchvision.models.resnet18(num_classes=10)
    tv.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    path = tmp_path / "grey.pth"
    torch.save(tv.state_dict(), path)
    base = ["convert", str(path), "--model", "resnet18", "--num-classes", "10"]
    err = _fails(capsys, *base, "--out", str(tmp_path / "a.safetensors"))
    assert "the weights' stem takes 1-channel images: convert with --in-chans 1 and --mean/--std of 1 value" in err
    err = _fails(capsys, *base, "--in-chans", "1", "--out", str(tmp_path / "b.safetensors"))
    assert "must give one value per input channel (1)" in err
    out = tmp_path / "c.safetensors"
    _ok(capsys, *base, "--in-chans", "1", "--mean", "0.286", "--std", "0.353", "--out", str(out))
    import senet

    model, _ = senet.load_model(out)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tv.eval()(x), rtol=1e-5, atol=1e-5)
    assert model.weights_meta["mean"] == [0.286] and model.in_chans == 1
