"""train a model on real data (crash-safe, resumable, torchrun-ready)

Train a model with a recipe. Writes config.yaml, metrics.csv, curves.png and checkpoints (state/last/best
.safetensors) to OUT_DIR/NAME. Several processes: torchrun --nproc_per_node=N -m senet train ...
"""

from __future__ import annotations

import argparse

from senet.cli._config import add_config_flags, config_from_args, recipe_help

USAGE = "senet train [--recipe RECIPE] [--resume [RUN_DIR]] [--FIELD VALUE ...]"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", help=recipe_help())
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint: the run named by the flags, or RUN_DIR with its saved config",
    )
    add_config_flags(parser)


def run(args: argparse.Namespace) -> int:
    from senet.training import train
    from senet.training.distributed import launched_rank

    config = config_from_args(args)
    result = train(config, resume=args.resume is not None)
    if launched_rank() != 0:  # under torchrun every process returns the result; one prints it
        return 0
    best = f" (best {100 * result.best_acc:.2f}%)" if result.best_acc != result.test_acc else ""
    print(
        f"{config.model} on {config.dataset}: test top-1 {100 * result.test_acc:.2f}%{best} after {config.epochs} "
        f"epoch{'' if config.epochs == 1 else 's'}, {result.wall_s / 60:.1f} min, {result.images_per_s:.0f} train img/s"
    )
    print(f"run folder: {result.run_dir} (weights last.safetensors, curves.png, metrics.csv)")
    if result.skipped_images:
        print(f"skipped {result.skipped_images} unreadable image(s) per epoch (--skip-bad-images)")
    return 0
