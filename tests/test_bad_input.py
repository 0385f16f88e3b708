"""Bad input, generated (docs/reliability.md): every senet command, given a bad value for any of its options or a
hostile version of any file it reads, answers with one line and exit status 2 — no traceback, nothing written
outside its output folder, no existing file changed; and every reader of a file in the API raises ValueError or
OSError naming the file, nothing else.

The cases are generated: the options and their kinds come from the commands' own parsers and TrainConfig's fields,
and hypothesis mutates real files (weights' and training states' metadata, recipes, IDX, CIFAR batches, images) into
wrong kinds and absurd sizes. The sweeps run commands by the hundred and belong to the full suite (``make test``);
the fast tier keeps the checks that the sweep is complete, the malicious pickle and the readers' refusals."""

import argparse
import contextlib
import functools
import gzip
import io
import json
import math
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import slow
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from test_data import write_fake_fmnist

from senet.cli import COMMANDS, build_parser, main
from senet.environment import usable_cores
from senet.files import LOCK_FILE, read_weights
from senet.training.config import BOUNDS, TrainConfig, field_type
from senet.validate import Float, Int

OUT = "{out}"  # an argument replaced by the case's output folder
TINY = ["--dataset", "synthetic", "--image-size", "8", "--train-subset", "32", "--test-subset", "16", "--batch-size",
        "16", "--epochs", "1", "--progress", "none", "--tensorboard", "false"]  # fmt: skip


# -- the workspace: real files of every kind senet reads, made once ---------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A finished SE-ResNet-20 run on synthetic data (weights, training state, config.yaml, summary.json), an image,
    a recipe, Fashion-MNIST IDX files and CIFAR-10 batches, all valid."""
    root = tmp_path_factory.mktemp("ws")
    with _quiet():
        assert main(["train", "--model", "se_resnet20", *TINY, "--out-dir", str(root), "--name", "run"]) == 0
    from PIL import Image

    Image.new("RGB", (12, 10), (90, 30, 200)).save(root / "image.png")
    (root / "recipe.yaml").write_text(yaml.safe_dump({"model": "resnet20", "dataset": "synthetic", "epochs": 1}))
    write_fake_fmnist(root / "fmnist", n_train=64, n_test=32)
    _cifar10(root / "cifar" / "cifar-10-batches-py")
    return root


def _cifar10(folder: Path, n: int = 16) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for p in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
        (folder / p).write_bytes(pickle.dumps(batch, protocol=2))


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every file under ``root`` with its size, modification time and inode (a changed or replaced file differs),
    and every folder (a folder's own time changes with what is created in it, which the new entries show)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st_ = p.lstat()
        out[str(p.relative_to(root))] = (True,) if p.is_dir() else (st_.st_size, st_.st_mtime_ns, st_.st_ino)
    return out


def refused(ws: Path, case: Path, argv: list[str], *, root: Path | None = None) -> str:
    """Run ``senet ARGV`` in-process from an empty working folder, with its home and caches inside ``case``; assert
    exit status 2, one line on stderr and no traceback; and that no file under the workspace or ``root`` (default
    ``case``: it holds the command's input files) was changed, replaced or removed, and none created but inside
    ``case/out`` (a run folder's lock file aside: a refused resume may have taken it). Returns the line."""
    root = root or case
    out, cwd, home = case / "out", case / "cwd", case / "home"
    for d in (cwd, home):
        d.mkdir(parents=True, exist_ok=True)
    argv = [a.replace(OUT, str(out)) for a in argv]
    before = _snapshot(ws), _snapshot(root)
    env = {"TORCH_HOME": str(home / "torch"), "SENET_DATA": str(home / "data"), "HOME": str(home)}
    saved = {k: os.environ.get(k) for k in env}
    err = io.StringIO()
    try:
        os.environ.update(env)
        with contextlib.chdir(cwd), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = main(argv)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    text, command = err.getvalue(), f"senet {' '.join(argv)}"
    assert rc == 2, f"{command} exited {rc}: {text}"
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text, f"{command}: {text}"
    assert _snapshot(ws) == before[0], f"{command} changed the workspace"
    after = _snapshot(root)

    def created_where_allowed(rel: str) -> bool:
        path = root / rel
        return rel not in before[1] and (path == out or out in path.parents)

    changed = {k for k in before[1].keys() | after.keys() if before[1].get(k) != after.get(k)}
    changed = {k for k in changed if not created_where_allowed(k) and Path(k).name != LOCK_FILE}
    assert not changed, f"{command} changed, removed or created outside its output folder: {sorted(changed)}"
    return text.strip()


# -- arguments: every option of every command, bad values of its kind -------------------------------------------------


def _bases(ws: Path) -> dict[str, list[str]]:
    """A valid command line of each command; a case replaces one option of it with a bad value."""
    run, w, se = str(ws / "run"), str(ws / "run" / "last.safetensors"), ["--model", "se_resnet20"]
    return {
        "models": ["models"],
        "profile": ["profile", "resnet20"],
        "train": ["train", *se, *TINY, "--out-dir", OUT, "--name", "r"],
        "eval": ["eval", run, "--test-subset", "8"],
        "predict": ["predict", w, str(ws / "image.png")],
        "compare": ["compare", "resnet20", "--seeds", "1", *TINY, "--out-dir", OUT, "--name", "c"],
        "cost": [
            "cost",
            "resnet20",
            "--batch",
            "1",
            "--repeats",
            "1",
            "--no-train",
            "--input-size",
            "32",
            *["--out", OUT],
        ],
        "ablate": ["ablate", "reduction", "--values", "4", "--seeds", "1", "--no-baseline", *se, *TINY, "--out", OUT],
        "excitation": ["excitation", run, "--test-subset", "8", "--out", OUT],
        "report": ["report", OUT],
        "convert": ["convert", w, *se, "--out", f"{OUT}/c.safetensors"],
        "weights": ["weights"],
        "export": ["export", w, "--out", f"{OUT}/m.onnx"],
    }


def _config_values(name: str, ws: Path) -> list[str]:
    """Bad values of a TrainConfig field given on the command line (parsed as YAML), by the field's kind."""
    kind, _ = field_type(name)
    special = {
        "model": ["se_resnet21"],
        "name": ["../escaped", "/tmp/senet-absolute", ".."],
        "out_dir": [str(ws / "recipe.yaml")],  # a file, not a folder
        "data_dir": [],  # a folder senet may ignore (synthetic data has none); its cases are in test_reliability
        "milestones": ["[-1]", "[.nan]", "5"],
        "model_options": ["{r: .nan}", "[1]", "{a: {b: {c: {d: 1}}}}"],
    }
    if name in special:
        return special[name]
    if kind is bool:
        return ["maybe", "2"]
    if kind is int:
        return ["-1", "100000000000000000000", "1.5", "[1]"]
    if kind is float:
        return [".nan", ".inf", "-1", "[1]"]
    return ["no-such-choice"]  # every other string field is a choice (optimizer, schedule, dataset, device, ...)


def _bad_values(action: argparse.Action, ws: Path) -> list[str]:
    kind = getattr(action.type, "__name__", None)
    if action.dest in TrainConfig.field_names() and kind == action.dest:
        return _config_values(action.dest, ws)
    if action.choices is not None:
        return ["no-such-choice"]
    if kind == "whole number":
        return ["-1", "100000000000000000000", "1.5", "x"]
    if kind == "number":
        return ["nan", "inf", "x"]
    if action.dest in ("out", "json", "runs_dir"):  # outputs: over an input, over a run's own files, too long a name
        run = ws / "run"
        return [str(run / "last.safetensors"), str(run / "state.safetensors"), str(ws / ("x" * 300))]
    if action.dest == "name_":
        return ["../escaped", "/tmp/senet-absolute", "..", "x" * 300]
    return []  # other strings: names, patterns, inputs (their cases are the hostile files below)


def _argument_cases(ws: Path) -> list[tuple[str, list[str]]]:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    cases = []
    for command, base in _bases(ws).items():
        for action in commands[command]._actions:
            if not action.option_strings or action.nargs == 0 or action.dest in ("help", "resume"):
                continue
            flag = action.option_strings[0]
            for i, value in enumerate(_bad_values(action, ws)):
                argv = [*base, flag, value]
                if flag in ("--threads", "--workers") and i == 0:  # more than the machine has
                    argv = [*base, flag, str(usable_cores() + 1)]
                cases.append((f"{command} {flag} {value}", argv, i))
    return cases


def test_every_numeric_option_has_bounds():
    """The sweep below relies on it: no option of any command takes a bare int or float."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == set(COMMANDS)
    bare = [f"{c} {a.dest}" for c, p in commands.items() for a in p._actions if a.type in (int, float)]
    assert not bare, f"options without bounds: {bare}"


@pytest.fixture(scope="module")
def argument_cases(ws):
    return _argument_cases(ws)


def test_the_sweep_covers_every_command_and_every_recipe_field(argument_cases):
    commands = {c.split()[0] for c, _, _ in argument_cases}
    assert commands >= set(COMMANDS) - {"models", "weights", "report"}  # these take no numbers or choices
    train_flags = {c.split()[1] for c, _, _ in argument_cases if c.startswith("train ")}
    fields = {"--" + f.replace("_", "-") for f in TrainConfig.field_names()} - {"--data-dir"}
    assert fields <= train_flags, fields - train_flags


@slow
def test_bad_arguments_of_every_command(ws, tmp_path, argument_cases):
    for n, (_, argv, _) in enumerate(argument_cases):
        refused(ws, tmp_path / f"case{n}", argv)


# -- hostile files: every file senet reads ----------------------------------------------------------------------------


def _evil_pickle() -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/senet_bad_input_pwned",))

    return pickle.dumps({"state_dict": Evil()})


@functools.cache
def _generic_files(valid: Path) -> dict[str, bytes | None]:
    """Hostile stand-ins for any file: None for a missing one, a folder for "dir"."""
    data = valid.read_bytes()
    return {
        "missing": None,
        "dir": b"",
        "empty": b"",
        "text": b"hello, not a senet file\n",
        "random": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        "truncated": data[: len(data) // 2],
        "evil pickle": _evil_pickle(),
        "gzip bomb": gzip.compress(b"\0" * (64 << 20)),
        "png": _png(),
    }


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return buf.getvalue()


def _place(case: Path, name: str, kind: str, data: bytes | None) -> Path:
    path = case / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    return path


def _rewrite_weights(src: Path, dst: Path, *, meta_text: str | None = None, tensors: dict | None = None) -> Path:
    """A copy of a safetensors file with other senet metadata (raw text) or other tensors."""
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata() or {})
        loaded = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    if meta_text is not None:
        meta["senet"] = meta_text
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors if tensors is not None else loaded, str(dst), metadata=meta)
    return dst


def _weights_commands(w: str, ws: Path) -> list[list[str]]:
    """Every command that reads a weights file, with it."""
    return [
        ["eval", w, "--test-subset", "8"],
        ["predict", w, str(ws / "image.png")],
        ["export", w, "--out", f"{OUT}/m.onnx"],
        ["excitation", w, "--test-subset", "8", "--out", OUT],
        ["convert", w, "--model", "se_resnet20", "--out", f"{OUT}/c.safetensors"],
        ["train", "--model", "se_resnet20", *TINY, "--init", w, "--out-dir", OUT, "--name", "i"],
    ]


@pytest.mark.parametrize("kind", [pytest.param(k, marks=() if k == "evil pickle" else slow) for k in
                                  ["missing", "dir", "empty", "text", "random", "truncated", "evil pickle", "gzip bomb",
                                   "png"]])  # fmt: skip
def test_hostile_weights_files(ws, tmp_path, kind):
    w = _place(tmp_path, "w.safetensors", kind, _generic_files(ws / "run" / "last.safetensors")[kind])
    for n, argv in enumerate(_weights_commands(str(w), ws)):
        if kind == "dir" and argv[0] in ("eval", "excitation", "export"):
            continue  # a folder is a run folder to these: its missing last.safetensors is the "missing" case
        refused(ws, tmp_path / f"c{n}", argv, root=tmp_path)
    assert not os.path.exists("/tmp/senet_bad_input_pwned")


def _weights_meta(ws: Path) -> dict:
    return read_weights(ws / "run" / "last.safetensors")[1]


def _tensor_cases(ws: Path) -> dict[str, dict]:
    tensors, _ = read_weights(ws / "run" / "last.safetensors")
    first = next(k for k, v in tensors.items() if v.ndim == 4)
    return {
        "mis-shaped": {**tensors, first: torch.zeros(3, 3)},
        "integer": {k: (v * 100).to(torch.int64) if v.is_floating_point() else v for k, v in tensors.items()},
        "missing": {k: v for k, v in tensors.items() if k != first},
        "extra": {**tensors, "surprise.weight": torch.zeros(2)},
    }


@pytest.mark.parametrize("case", ["mis-shaped", "integer", "missing", "extra"])
def test_weights_whose_tensors_do_not_fit_are_named(ws, tmp_path, case):
    w = _rewrite_weights(ws / "run" / "last.safetensors", tmp_path / "in" / "w.safetensors",
                         tensors=_tensor_cases(ws)[case])  # fmt: skip
    for n, argv in enumerate(_weights_commands(str(w), ws)[:3]):
        assert "does not fit se_resnet20" in refused(ws, tmp_path / f"c{n}", argv, root=tmp_path)


# Wrong kinds of JSON values: a mutation replaces a field with a value of another kind than the field's.
_JSON_KINDS = {
    "null": st.none(),
    "bool": st.booleans(),
    "number": st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False)),
    "string": st.text(max_size=8),
    "list": st.lists(st.integers(-5, 5), max_size=3),
    "object": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
}


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}[type(value)]


def _other_kind(original) -> st.SearchStrategy:
    kinds = [s for k, s in _JSON_KINDS.items() if k != _kind(original)]
    bad = st.one_of(*kinds)
    if _kind(original) == "number":  # and numbers far outside any bound
        bad = st.one_of(bad, st.integers(10**7, 2**70), st.integers(-(2**70), -1))
    return bad


_WEIGHTS_FIELDS = ["name", "options", "num_classes", "in_chans", "mean", "std", "classes", "image_size", "dataset",
                   "epoch", "test_acc", "recipe", "crop_pct", "interpolation"]  # fmt: skip


def _run_hypothesis(examples: int, strategy, check) -> None:
    options = {"deadline": None, "database": None, "derandomize": True, "suppress_health_check": list(HealthCheck)}
    given(strategy)(settings(max_examples=examples, **options)(check))()


_EXAMPLES = [pytest.param(60, marks=slow, id="sweep")]


@pytest.mark.parametrize("examples", _EXAMPLES)
def test_weights_with_mutated_metadata(ws, tmp_path_factory, examples):
    meta = _weights_meta(ws)
    mutation = st.one_of(
        st.sampled_from(_WEIGHTS_FIELDS).flatmap(lambda f: st.tuples(st.just(f), _other_kind(meta[f]))),
        st.tuples(st.just("$raw"), st.text(max_size=40)),  # any text as the metadata itself
    )

    def check(m):
        field, value = m
        text = value if field == "$raw" else json.dumps({**meta, field: value})
        case = tmp_path_factory.mktemp("meta")
        w = _rewrite_weights(ws / "run" / "last.safetensors", case / "in" / "w.safetensors", meta_text=text)
        commands = _weights_commands(str(w), ws)
        for n, argv in enumerate([*commands[:2], commands[-1]]):  # eval, predict, train --init
            refused(ws, case / f"c{n}", argv, root=case)

    _run_hypothesis(examples, mutation, check)


def _copy_run(ws: Path, case: Path) -> Path:
    run = case / "run"
    shutil.copytree(ws / "run", run)
    (run / "summary.json").unlink()  # an interrupted run, to resume
    return run


_STATE_FIELDS = ["format", "model", "has_ema", "extra", "extra.epoch", "extra.batch", "extra.step", "extra.history",
                 "extra.optimizer", "extra.config", "extra.totals", "extra.best_acc", "extra.elapsed_s", "model.name",
                 "model.num_classes", "model.options", "extra.optimizer.state", "extra.schedule"]  # fmt: skip


@pytest.mark.parametrize("examples", _EXAMPLES)
def test_resume_from_a_state_with_mutated_metadata(ws, tmp_path_factory, examples):
    with safe_open(str(ws / "run" / "state.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["senet"])

    def get(path):
        v = meta
        for part in path.split("."):
            v = v[part]
        return v

    mutation = st.one_of(
        st.sampled_from(_STATE_FIELDS).flatmap(lambda f: st.tuples(st.just(f), _other_kind(get(f)))),
        st.tuples(st.just("$raw"), st.text(max_size=40)),
    )

    def check(m):
        field, value = m
        if field == "$raw":
            text = value
        else:
            new = json.loads(json.dumps(meta))
            *parents, last = field.split(".")
            target = new
            for p in parents:
                target = target[p]
            target[last] = value
            text = json.dumps(new)
        case = tmp_path_factory.mktemp("state")
        run = _copy_run(ws, case)
        for name in ("state.safetensors", "state.good.safetensors"):
            (run / name).unlink()
        _rewrite_weights(ws / "run" / "state.safetensors", run / "state.safetensors", meta_text=text)
        refused(ws, case, ["train", "--resume", str(run)])  # nothing in the run folder changes (but its lock)

    _run_hypothesis(examples, mutation, check)


_RECIPE_FIELDS = [f for f in TrainConfig.field_names() if f not in ("data_dir", "out_dir", "name")]


@pytest.mark.parametrize("examples", _EXAMPLES)
def test_recipes_and_saved_configs_with_mutated_fields(ws, tmp_path_factory, examples):
    """A recipe given with --recipe, and the config.yaml a resumed run reads back, with one field of another kind or
    out of bounds (NaN and infinity included): refused, naming the field."""
    base = TrainConfig.from_dict(yaml.safe_load((ws / "run" / "config.yaml").read_text())).to_dict()

    def bad(field):
        kinds = st.one_of(*(s for k, s in _JSON_KINDS.items() if k != _kind(base[field])))
        values = kinds.filter(lambda v: not (isinstance(v, str) and _numeric(v)))  # YAML reads "5e-4" as text
        spec = BOUNDS.get(field)
        if isinstance(spec, (Int, Float)):  # numbers beyond the field's bounds, and NaN and infinities
            beyond = [spec.lo - 1, spec.lo - 1e-3] if spec.lo > -math.inf else []
            beyond += [spec.hi + 1, spec.hi * 1e6 + 1] if spec.hi < math.inf else []
            beyond += [float("nan"), float("inf"), -float("inf")]
            values = st.one_of(values, st.sampled_from([v for v in beyond if not spec_accepts(spec, v)]))
        return st.tuples(st.just(field), values)

    def check(m):
        field, value = m
        case = tmp_path_factory.mktemp("recipe")
        recipe = case / "in" / "r.yaml"
        recipe.parent.mkdir(parents=True)
        recipe.write_text(yaml.safe_dump({**base, "out_dir": str(case / "out"), field: value}))
        err = refused(ws, case, ["train", "--recipe", str(recipe)])
        assert field in err, err
        run = _copy_run(ws, case / "resumed")
        (run / "config.yaml").write_text(yaml.safe_dump({**base, field: value}))
        refused(ws, case / "resumed", ["train", "--resume", str(run)])  # nothing in the run folder changes

    _run_hypothesis(examples, st.sampled_from(_RECIPE_FIELDS).flatmap(bad), check)


def spec_accepts(spec, value) -> bool:
    try:
        spec.check(value)
    except ValueError:
        return False
    return True


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "text",
    [
        "- a list\n- not a mapping\n",
        "lr: [unclosed\n",
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b]\n"
        "model_options: {x: [*c, *c, *c, *c, *c, *c, *c, *c, *c]}\n",  # aliases: a billion laughs
        # nesting beyond the parser's recursion (1.4 s: the full suite)
        pytest.param("model_options: " + "[" * 5000 + "]" * 5000 + "\n", marks=slow),
        "lr: 0.1\n" + "# padding\n" * 200_000,  # larger than any recipe
        "\x00\x01\x02 binary",
    ],
    ids=["list", "invalid", "aliases", "nested", "huge", "binary"],
)
def test_hostile_recipe_files(ws, tmp_path, text):
    recipe = tmp_path / "in" / "r.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_bytes(text.encode("utf-8", "surrogateescape"))
    for n, command in enumerate(["train", "compare"]):
        argv = [command, *(["resnet20"] if command == "compare" else []), "--recipe", str(recipe), "--out-dir", OUT]
        refused(ws, tmp_path / f"c{n}", argv, root=tmp_path)


# -- data files: IDX, CIFAR batches, images ---------------------------------------------------------------------------


def _idx_mutations() -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.just("header"), st.binary(min_size=1, max_size=16)),  # replaces the first bytes
        st.tuples(st.just("cut"), st.integers(0, 64 * 784 + 15)),  # keeps this many bytes
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
    )


@pytest.mark.parametrize("examples", _EXAMPLES)
def test_mutated_idx_files(ws, tmp_path_factory, examples):
    def check(m):
        how, arg = m
        case = tmp_path_factory.mktemp("idx")
        shutil.copytree(ws / "fmnist", case / "in" / "fmnist")
        path = case / "in" / "fmnist" / "train-images-idx3-ubyte.gz"
        raw = gzip.decompress(path.read_bytes())
        if how == "header":
            new = arg + raw[len(arg) :]
        elif how == "cut":
            new = raw[:arg]
        else:
            new = raw + arg
        if new == raw:
            return
        path.write_bytes(gzip.compress(new) if len(new) % 2 else new)  # gzipped or raw, both read
        argv = ["train", "--dataset", "fashion-mnist", "--data-dir", str(path.parent), "--model", "resnet20",
                "--epochs", "1", "--progress", "none", "--out-dir", OUT]  # fmt: skip
        refused(ws, case, argv)

    _run_hypothesis(examples, _idx_mutations(), check)


def _array(draw_dtype, shape) -> np.ndarray:
    return np.zeros(shape, dtype=draw_dtype)


_CIFAR_VALUES = st.one_of(
    st.none(),
    st.integers(-300, 300),
    st.text(max_size=4),
    st.lists(st.integers(-2, 300), max_size=5),
    st.builds(
        _array,
        st.sampled_from([np.uint8, np.int16, np.float32, np.int64, np.bool_]),
        st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple),
    ),
)


@pytest.mark.parametrize("examples", _EXAMPLES)
def test_mutated_cifar_batches(ws, tmp_path_factory, examples):
    batches = st.one_of(
        st.dictionaries(st.sampled_from(["data", "labels", "batch_label", "x"]), _CIFAR_VALUES, max_size=4),
        _CIFAR_VALUES,
    )

    def check(obj):
        case = tmp_path_factory.mktemp("cifar")
        shutil.copytree(ws / "cifar", case / "in" / "cifar")
        (case / "in" / "cifar" / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(obj, protocol=2))
        argv = ["train", "--dataset", "cifar10", "--data-dir", str(case / "in" / "cifar"), "--model", "resnet20",
                "--epochs", "1", "--progress", "none", "--out-dir", OUT]  # fmt: skip
        refused(ws, case, argv)

    _run_hypothesis(examples, batches, check)


def cifar_batch_declaring(shape: tuple[int, ...]) -> bytes:
    """A CIFAR batch pickle whose array declares ``shape`` (numpy's own pickle opcodes), with almost no data."""
    header = pickle.dumps({"data": np.zeros(4, np.uint8), "labels": [0]}, protocol=2)
    return header.replace(pickle.dumps((4,), protocol=2)[2:-1], pickle.dumps(shape, protocol=2)[2:-1], 1)


def _png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` × ``height`` pixels: a decompression bomb."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 << 16), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("examples", _EXAMPLES)
def test_random_bytes_as_images(ws, tmp_path_factory, examples):
    def check(data):
        case = tmp_path_factory.mktemp("img")
        image = _place(case, "x.png", "file", data)
        refused(ws, case / "p", ["predict", str(ws / "run"), str(image)], root=case)

    _run_hypothesis(examples, st.one_of(st.binary(max_size=200), st.just(_png_declaring(100_000, 100_000))), check)


# -- the readers of the API: ValueError or OSError naming the file, nothing else ------------------------------------


def _readers():
    """Every reader of a file in the API: name → (read, the name of the file it reads in the folder it is given, or
    None where it is given the file itself)."""
    from senet import data, factory, files, weights
    from senet.analysis.ablate import StudyResult
    from senet.analysis.excitation import ExcitationStats
    from senet.analysis.html_report import build_report
    from senet.export import read_metadata
    from senet.training import RunResult
    from senet.training.checkpoint import load_state

    return {
        "read_weights": (files.read_weights, None),
        "safe_torch_load": (files.safe_torch_load, None),
        "load_model": (factory.load_model, None),
        "load_state": (load_state, None),
        "read_state": (weights.read_state, None),
        "recipe": (TrainConfig.from_recipe, None),
        "summary.json": (RunResult.load, "summary.json"),
        "study.json": (StudyResult.load, "study.json"),
        "report": (build_report, "compare.json"),
        "read_idx": (data.read_idx, None),
        "read_cifar_batch": (data.read_cifar_batch, None),
        "read_image": (lambda p: data.read_image(p, 3), None),
        "read_metadata (ONNX, .pt2, TorchScript)": (read_metadata, None),
        "excitations.npz": (ExcitationStats.load, None),
    }


@pytest.mark.parametrize("kind", ["missing", "dir", "empty", "text", "random", "evil pickle", "gzip bomb", "png",
                                  "sparse 8 GiB"])  # fmt: skip
def test_every_reader_refuses_hostile_files_with_a_value_or_os_error(ws, tmp_path, kind):
    for n, (name, (read, filename)) in enumerate(_readers().items()):
        if kind == "png" and name == "read_image":
            continue  # a valid image
        case = tmp_path / f"r{n}"
        file = filename or "f.yaml"  # (a recipe is known by its suffix)
        if kind == "sparse 8 GiB":  # no blocks on disk; a reader that read it whole would take 8 GiB of memory
            path = _place(case, file, "file", b"")
            os.truncate(path, 8 << 30)
        else:
            path = _place(case, file, kind, _generic_files(ws / "run" / "last.safetensors")[kind])
        try:
            read(path.parent if filename else path)
        except (ValueError, OSError) as e:
            named = str(path.parent) in str(e) or (isinstance(e, OSError) and e.filename is not None)
            assert named, f"{name} on a {kind} file: {e}"
        else:
            pytest.fail(f"{name} accepted a {kind} file")
        finally:
            if path.is_file():
                path.unlink()  # pytest keeps the folders of the last runs
    assert not os.path.exists("/tmp/senet_bad_input_pwned")
