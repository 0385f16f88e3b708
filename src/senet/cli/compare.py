"""train models (an SE model and its twin) over K seeds and compare test accuracy

Train each MODEL with one recipe over --seeds seeds; print last-epoch test accuracy mean ± std, params, MACs and
training speed; plot both curves. Interrupted comparisons resume.
"""

from __future__ import annotations

import argparse

from senet.cli._config import add_config_flags, overrides, recipe_help, whole
from senet.validate import MAX_SEEDS

USAGE = "senet compare MODEL [MODEL ...] [--seeds K] [--recipe RECIPE] [--name NAME] [--FIELD VALUE ...]"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL")
    parser.add_argument("--seeds", type=whole(1, MAX_SEEDS), default=3, help="seeds 0..K-1 (default 3)")
    parser.add_argument("--recipe", help=recipe_help())
    parser.add_argument("--name", dest="name_", default="", help="the comparison's folder under --out-dir")
    add_config_flags(parser, skip=("model", "seed", "name"))


def run(args: argparse.Namespace) -> int:
    from senet.training import TrainConfig
    from senet.training.compare import compare

    config = TrainConfig.from_recipe(args.recipe, **overrides(args))
    result = compare(args.models, config, seeds=args.seeds, name=args.name_)
    print(f"\n{result.table()}\n")
    if differences := result.differences_text():  # empty for one model
        print(f"{differences}\n")
    print(f"curves: {result.plot}\nreport: {result.report} (numbers: {result.data}; runs in {result.folder}/)")
    return 0
