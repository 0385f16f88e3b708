"""Fashion-MNIST on this machine: how fast an SE network reaches a target test accuracy with the fast recipe, and
its last-epoch accuracy beside its plain twin's over several seeds.

    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/fmnist.py                  # se_resnet20 vs resnet20, 3 seeds
    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/fmnist.py --seeds 1 --epochs 2
    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/fmnist.py --first-seed 3 --out runs/bench-more  # seeds 3-5
    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/fmnist.py --tta flip --model-options "{r: 8}"  # any field

Run it alone on the machine (the lock keeps other jobs of this project off the cores), since the wall times are the
point. Runs are cached under --out (an interrupted benchmark continues). Prints a markdown table and writes it,
with every per-run figure, to OUT/benchmark.md and OUT/benchmark.json. The figures in docs/training.md come from
this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from senet.cli._config import add_config_flags, config_from_args
from senet.environment import describe, keep_freed_memory
from senet.files import atomic_write_text
from senet.training import RunResult, compare


def time_to(run: RunResult, target: float) -> float | None:
    """Wall seconds from the start of the run to the end of the first epoch whose test accuracy reached ``target``."""
    hit = next((r for r in run.history if r["test_acc"] != "" and r["test_acc"] >= target), None)
    return None if hit is None else hit["elapsed_s"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["se_resnet20", "resnet20"])
    p.add_argument("--recipe", default="fmnist-fast")
    p.add_argument("--seeds", type=int, default=3, help="how many seeds")
    p.add_argument("--first-seed", type=int, default=0, help="seeds FIRST, FIRST+1, ... (default 0)")
    p.add_argument("--target", type=float, default=0.94, help="test accuracy to time (default 0.94)")
    p.add_argument("--out", default="runs/bench-fmnist", help="folder of the runs and results")
    add_config_flags(p, skip=("model", "seed", "out_dir", "name"))  # --epochs 12, --tta flip, ...: as senet compare
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds {args.seeds}: give at least 1")
    if args.first_seed < 0:
        p.error(f"--first-seed {args.first_seed}: give 0 or more")
    keep_freed_memory()  # as `senet train` does

    out = Path(args.out)
    try:
        config = config_from_args(args).replace(out_dir=str(out.parent))
    except (ValueError, TypeError, FileNotFoundError) as e:
        p.error(str(e))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    result = compare(args.models, config, seeds=seeds, name=out.name)

    lines = [
        f"| model | last-epoch test top-1 % (per seed) | mean ± std | time to {100 * args.target:.1f}% (per seed) | "
        "train img/s | wall time / run |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for s in result.models:
        times = [time_to(r, args.target) for r in s.runs]
        shown = ", ".join("not reached" if t is None else f"{t / 60:.1f} min" for t in times)
        accs = ", ".join(f"{100 * a:.2f}" for a in s.accs)
        ips = statistics.median(r.images_per_s for r in s.runs)
        wall = statistics.fmean(r.wall_s for r in s.runs)
        mean = f"{100 * s.mean:.2f} ± {100 * s.std:.2f}"
        lines.append(f"| {s.model} | {accs} | {mean} | {shown} | {ips:.0f} | {wall / 60:.1f} min |")
        rows.append({**s.to_dict(), "time_to_target_s": times})
    mach = describe()
    seed_list = ", ".join(str(r.config.seed) for r in result.models[0].runs)
    head = (
        f"Fashion-MNIST, recipe {args.recipe} ({config.epochs} epochs), seeds {seed_list}; "
        f"{mach['cpu']}, {mach['cores']} cores, {torch.get_num_threads()} threads, torch {mach['torch']}"
    )
    table = "\n".join([head, "", *lines, "", result.differences_text()]).rstrip() + "\n"
    print(table)
    atomic_write_text(out / "benchmark.md", table)
    data = {"target": args.target, "recipe": config.to_dict(), "machine": mach, "models": rows,
            "differences": result.differences()}  # fmt: skip
    atomic_write_text(out / "benchmark.json", json.dumps(data, indent=1))
    print(f"\nwritten: {out / 'benchmark.md'}, {out / 'benchmark.json'}, curves {result.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
