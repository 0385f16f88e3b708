"""What several commands share: the TrainConfig fields as flags (train, compare, ablate), and small argument types."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from senet.training import TrainConfig, list_recipes
from senet.training.config import field_type
from senet.validate import MAX_BATCH, MAX_CHANNELS, MAX_CLASSES, MAX_COUNT, MAX_IMAGE_SIDE


def whole(lo: int, hi: int = MAX_COUNT) -> Callable[[str], int]:
    """An argparse type: a whole number from ``lo`` to ``hi`` (the bounds of senet.validate: a larger value is a
    mistake, and some would exhaust the machine)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is not a whole number from {lo:,} to {hi:,}")
        return value

    parse.__name__ = "whole number"
    return parse


positive = whole(1)  # images, repeats, seeds: at least one
BATCH = whole(1, MAX_BATCH)  # images per batch
CLASSES = whole(1, MAX_CLASSES)  # classifier outputs
SUBSET = whole(0)  # a fixed subset of N images; 0: all
SIDE = whole(1, MAX_IMAGE_SIDE)  # input height = width, pixels
CHANNELS = whole(1, MAX_CHANNELS)  # input channels


def finite(text: str) -> float:
    """An argparse type: a finite number (not nan, inf or 1e999)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


finite.__name__ = "number"


def fraction(text: str) -> float:
    """An argparse type: a share of a whole, in (0, 1] (a crop's share of the side)."""
    value = finite(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in (0, 1]")
    return value


fraction.__name__ = "fraction"


def add_input_size_flags(parser: argparse.ArgumentParser) -> None:
    """``--input-size`` and ``--in-chans``: the input a model is measured at (`input_size` reads them)."""
    parser.add_argument("--input-size", type=SIDE, help="input height = width (default: the size the paper uses; "
                        "a run's: the size it was trained at)")  # fmt: skip
    parser.add_argument("--in-chans", type=whole(1, MAX_CHANNELS), help="input channels with --input-size (default "
                        "3; a run's: its own)")  # fmt: skip


def input_size(args: argparse.Namespace, run: dict[str, Any] | None = None) -> tuple[int, int, int] | None:
    """(C, H, W) from `add_input_size_flags`' flags; None for the model's own. For a ``run`` (`run_model`'s
    metadata): its channels, and the size it was trained at unless ``--input-size`` says another."""
    if run is None:
        return None if args.input_size is None else (args.in_chans or 3, args.input_size, args.input_size)
    chans = run["in_chans"]
    if args.in_chans not in (None, chans):
        raise ValueError(f"--in-chans {args.in_chans}: the run's model takes {chans} input channels; leave it out")
    side = args.input_size or run.get("image_size") or run.get("input_size")
    if side is None:
        return None
    side = side[-1] if isinstance(side, (list, tuple)) else side
    return (chans, side, side)


def run_model(text: str) -> dict[str, Any] | None:
    """A run folder or senet weights file given where a model name goes (profile, cost): its checked metadata (the
    model's name, options, classes and channels, the size it was trained at); None for a model name.

    Raises:
        ValueError: it is, or holds, a model senet's registry cannot measure beside a twin (``LIBRARY:NAME``, or one
            that `senet.add_se` changed); the error names what to pass instead.
    """
    from senet.factory import LIBRARIES, weights_metadata

    path = Path(text)
    if text.partition(":")[0] in LIBRARIES and ":" in text and not path.exists():  # timm:NAME, as train takes it
        raise ValueError(f"{text}: senet profile and senet cost measure registered senet models beside their twins "
                         f"(`senet models` lists them); a {text.partition(':')[0]} model has no twin there. Train "
                         f"and eval take it; measure it alone in Python: senet.profile(senet.create_model({text!r}), "
                         "(C, H, W))")  # fmt: skip
    if not (path.exists() or "/" in text or path.suffix == ".safetensors"):
        return None
    meta = weights_metadata(path)
    if ":" in meta["name"] or meta.get("add_se"):
        what = meta["name"] + (" with SE added by add_se" if meta.get("add_se") else "")
        raise ValueError(f"{text} holds {what}, which has no twin in senet's registry to be measured beside; pass a "
                         f"model name (`senet models` lists them), or measure it alone in Python: "
                         f"senet.profile(senet.load_model({text!r})[0], (C, H, W))")  # fmt: skip
    return meta


def recipe_help(default: str | None = None) -> str:
    """The --recipe help: the recipes there are, and the default (a recipe's name, or the built-in defaults)."""
    names = ", ".join(list_recipes()) or "none found"
    return f"a recipe name ({names}) or a YAML file; default: {default or 'built-in defaults'}"


def _parse(name: str):
    """A flag's value parser: strings stay strings; numbers, booleans, lists and mappings are read as YAML."""
    kind, optional = field_type(name)

    def parse(text: str) -> Any:
        if kind is str:
            return None if optional and text in ("null", "None") else text
        try:
            return yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError):
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


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line."""
    names = set(TrainConfig.field_names())
    return {k: v for k, v in vars(args).items() if k in names}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's configuration: the recipe (or a resumed run's saved config.yaml) with the given flags on top."""
    given = overrides(args)
    resume = getattr(args, "resume", None)
    if resume not in (None, True):  # a run folder: its saved config is the recipe, its place the run's
        folder = Path(resume)
        if not (folder / "config.yaml").is_file():
            raise FileNotFoundError(f"{str(folder)!r} is not a run folder (no config.yaml)")
        given = {"out_dir": str(folder.parent), "name": folder.name, **given}
        return TrainConfig.from_recipe(folder / "config.yaml", **given)
    return TrainConfig.from_recipe(args.recipe, **given)
