"""``senet train``, ``senet eval``, ``senet predict`` and ``senet compare``: training and evaluation on real data.

Every field of senet.TrainConfig is a flag of ``train`` and ``compare`` (``--lr 0.2``, ``--model-options
'{r: 8}'``, ``--deterministic``); a recipe (``--recipe fmnist-fast`` or a YAML path) sets the starting values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from senet.training import TrainConfig, list_recipes
from senet.training.config import field_type
from senet.training.inference import TTA

_SKIP_IN_COMPARE = ("model", "seed")


def _parse(name: str):
    """A flag's value parser: strings stay strings; numbers, booleans, lists and mappings are read as YAML."""
    kind, optional = field_type(name)

    def parse(text: str) -> Any:
        if kind is str:
            return None if optional and text in ("null", "None") else text
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            raise argparse.ArgumentTypeError(f"cannot read {text!r} as a value for {name}") from None

    parse.__name__ = name  # argparse names the field in its error
    return parse


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field (``--batch-size``); only given flags override the recipe."""
    group = parser.add_argument_group("recipe fields (each overrides the recipe; see docs/training.md)")
    defaults = TrainConfig()
    for name, text in TrainConfig.field_help().items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        help_ = f"{text} (default {getattr(defaults, name)!r})" if text else f"default {getattr(defaults, name)!r}"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_.replace("%", "%%")}
        if field_type(name)[0] is bool:
            kwargs |= {"nargs": "?", "const": True, "metavar": "BOOL"}
        group.add_argument(flag, type=_parse(name), **kwargs)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = set(TrainConfig.field_names())
    return {k: v for k, v in vars(args).items() if k in names}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = _overrides(args)
    resume = getattr(args, "resume", None)
    if resume not in (None, True):  # a run folder: its saved config is the recipe, its place the run's
        folder = Path(resume)
        if not (folder / "config.yaml").is_file():
            raise FileNotFoundError(f"{str(folder)!r} is not a run folder (no config.yaml)")
        overrides = {"out_dir": str(folder.parent), "name": folder.name, **overrides}
        return TrainConfig.from_recipe(folder / "config.yaml", **overrides)
    return TrainConfig.from_recipe(args.recipe, **overrides)


# ----------------------------------------------------------------------------------------------------- train


def run_train(args: argparse.Namespace) -> int:
    from senet.training import train

    config = config_from_args(args)
    result = train(config, resume=args.resume is not None)
    best = f" (best {100 * result.best_acc:.2f}%)" if result.best_acc != result.test_acc else ""
    print(
        f"{config.model} on {config.dataset}: test top-1 {100 * result.test_acc:.2f}%{best} after {config.epochs} "
        f"epoch{'' if config.epochs == 1 else 's'}, {result.wall_s / 60:.1f} min, {result.images_per_s:.0f} train img/s"
    )
    print(f"run folder: {result.run_dir} (weights last.safetensors, curves.png, metrics.csv)")
    if result.skipped_images:
        print(f"skipped {result.skipped_images} unreadable image(s) per epoch (--skip-bad-images)")
    return 0


# ------------------------------------------------------------------------------------------------------ eval


def load_weights(path: str) -> tuple[Any, dict[str, Any]]:
    """A model and its metadata from a senet weights file (or a run folder: its last.safetensors)."""
    from senet.checkpoint import LAST_FILE, STATE_FILE
    from senet.io import load_model

    p = Path(path)
    if p.name == STATE_FILE:
        raise ValueError(f"{path!r} is a training state (for --resume); use {LAST_FILE} or the run folder")
    return load_model(p / LAST_FILE if p.is_dir() else p)


def _state_dict_model(path: str, model: str | None, num_classes: int, in_chans: int) -> Any:
    """``model`` with the weights of a plain PyTorch state dict, read without unpickling objects."""
    from senet.io import safe_torch_load
    from senet.models import create_model

    if not model:
        raise ValueError(f"{path!r} is a PyTorch state dict without senet metadata; name its model with --model")
    state = safe_torch_load(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, not a state dict")
    net = create_model(model, num_classes=num_classes, in_chans=in_chans)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:  # missing, unexpected or mis-shaped keys
        detail = " ".join(str(e).split("\n\t")[1:2])[:300]
        raise ValueError(
            f"{path!r} does not fit {model} ({num_classes} classes, {in_chans} channels): {detail}"
        ) from None
    return net


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from senet.data import load_datasets
    from senet.training import Inputs, evaluate

    if args.json:
        from senet.checkpoint import LAST_FILE
        from senet.io import refuse_overwrite

        source = Path(args.weights)
        refuse_overwrite(args.json, {"weights file": source / LAST_FILE if source.is_dir() else source}, "--json")
    is_pth = Path(args.weights).suffix in (".pth", ".pt", ".bin")
    model, meta = (None, {}) if is_pth else load_weights(args.weights)
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise ValueError(f"{args.weights!r} does not say which dataset it was trained on; pass --dataset")
    _, test, spec = load_datasets(
        dataset,
        data_dir=args.data_dir or meta.get("recipe", {}).get("data_dir"),
        download=args.download,
        image_size=meta.get("image_size", 0),
        augment="none",
        test_subset=args.test_subset,
        in_chans=meta.get("in_chans", 3),
    )
    if model is None:
        model = _state_dict_model(args.weights, args.model, spec.num_classes, spec.in_chans)
    if spec.num_classes != model.num_classes:
        raise ValueError(f"{args.weights!r} has {model.num_classes} classes, {dataset} has {spec.num_classes}")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    inputs = Inputs(
        torch.device("cuda" if cuda else "cpu"), tuple(meta.get("mean", spec.mean)), tuple(meta.get("std", spec.std)),
        amp=args.amp,
    )  # fmt: skip
    tta = args.tta or meta.get("recipe", {}).get("tta", "none")
    result = evaluate(
        model.to(inputs.device), test, inputs, batch_size=args.batch_size, workers=args.workers,
        skip_bad_images=args.skip_bad_images, tta=tta,
    )  # fmt: skip
    out = {"weights": str(args.weights), "model": model.model_config["name"], "dataset": dataset, "images": result.n}
    out |= {"top1": result.acc, "top5": result.acc5, "loss": result.loss, "skipped": result.skipped, "tta": tta}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        from senet.io import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    return 0


# --------------------------------------------------------------------------------------------------- predict


def run_predict(args: argparse.Namespace) -> int:
    from senet.training import predict

    model, meta = load_weights(args.weights)
    missing = [k for k in ("classes", "mean", "std", "image_size", "dataset") if k not in meta]
    if missing:
        raise ValueError(
            f"{args.weights!r} lacks {', '.join(missing)} in its metadata; predict needs senet-trained weights"
        )
    results = predict(model, args.images, meta, top_k=args.top_k)
    if args.json:
        pairs = zip(args.images, results, strict=True)
        print(json.dumps({p: [{"label": lab, "p": prob} for lab, prob in r] for p, r in pairs}))
        return 0
    for path, r in zip(args.images, results, strict=True):
        print(f"{path}: " + ", ".join(f"{lab} {100 * prob:.1f}%" for lab, prob in r))
    return 0


# --------------------------------------------------------------------------------------------------- compare


def run_compare(args: argparse.Namespace) -> int:
    from senet.training.compare import compare

    config = TrainConfig.from_recipe(args.recipe, **_overrides(args))
    result = compare(args.models, config, seeds=args.seeds, name=args.name_)
    print(f"\n{result.table()}\n")
    if differences := result.differences_text():  # empty for one model
        print(f"{differences}\n")
    print(f"curves: {result.plot}\nreport: {result.report} (numbers: {result.data}; runs in {result.folder}/)")
    return 0


# ------------------------------------------------------------------------------------------------------ parser


def _recipe_help() -> str:
    return f"a recipe name ({', '.join(list_recipes()) or 'none found'}) or a YAML file; default: built-in defaults"


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train",
        usage="senet train [--recipe RECIPE] [--resume [RUN_DIR]] [--FIELD VALUE ...]",
        help="train a model on real data (crash-safe, resumable, torchrun-ready)",
        description="Train a model with a recipe. Writes config.yaml, metrics.csv, curves.png and checkpoints "
        "(state/last/best .safetensors) to OUT_DIR/NAME. Several processes: torchrun --nproc_per_node=N -m senet "
        "train ...",
    )
    t.add_argument("--recipe", help=_recipe_help())
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint: the run named by the flags, or RUN_DIR with its saved config",
    )
    add_config_flags(t)
    t.set_defaults(func=run_train)

    e = sub.add_parser(
        "eval",
        help="top-1 / top-5 accuracy and loss of trained weights on a test set (JSON)",
        description="Evaluate a senet weights file (or run folder) on the test set of the dataset it was trained "
        "on; prints JSON. A plain PyTorch state dict (.pth) needs --model and --dataset and is loaded without "
        "unpickling objects.",
    )
    e.add_argument("weights", help="a .safetensors weights file, a run folder, or a .pth state dict")
    e.add_argument("--dataset", help="default: the one in the weights' metadata")
    e.add_argument("--model", help="the model of a .pth state dict")
    e.add_argument("--data-dir", help="where the dataset's files are")
    e.add_argument("--download", action="store_true", help="download the dataset through torchvision if missing")
    e.add_argument("--test-subset", type=int, default=0, help="evaluate a fixed random subset of N images")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    e.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    e.add_argument(
        "--tta", choices=TTA, help="flip: mean of the image's and its mirror image's probabilities; none: the image "
        "alone (default: as the run was evaluated, else none)",
    )  # fmt: skip
    e.add_argument("--skip-bad-images", action="store_true", help="skip and count unreadable image files")
    e.add_argument("--json", metavar="PATH", help="also write the JSON to PATH")
    e.set_defaults(func=run_eval)

    p = sub.add_parser(
        "predict",
        help="top-k labels of image files",
        description="Classify image files with senet-trained weights (resized and normalised as in training).",
    )
    p.add_argument("weights", help="a .safetensors weights file or a run folder")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_predict)

    c = sub.add_parser(
        "compare",
        usage="senet compare MODEL [MODEL ...] [--seeds K] [--recipe RECIPE] [--name NAME] [--FIELD VALUE ...]",
        help="train models (an SE model and its twin) over K seeds and compare test accuracy",
        description="Train each MODEL with one recipe over --seeds seeds; print last-epoch test accuracy mean ± "
        "std, params, MACs and training speed; plot both curves. Interrupted comparisons resume.",
    )
    c.add_argument("models", nargs="+", metavar="MODEL")
    c.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1 (default 3)")
    c.add_argument("--recipe", help=_recipe_help())
    c.add_argument("--name", dest="name_", default="", help="the comparison's folder under --out-dir")
    add_config_flags(c, skip=(*_SKIP_IN_COMPARE, "name"))
    c.set_defaults(func=run_compare)
