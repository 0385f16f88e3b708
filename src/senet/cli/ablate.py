"""the paper's ablation studies, K seeds, cached and resumable

Train every variant of a study (and the plain twin) over K seeds with one recipe; each run is cached in its own
folder, so an interrupted study resumes where it stopped. The attention study puts each of SE's successors in SE's
place and adds their measured cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.cli._config import add_config_flags, config_from_args, overrides, recipe_help, whole
from senet.validate import MAX_SEEDS


def arguments(parser: argparse.ArgumentParser) -> None:
    from senet.analysis.ablate import STUDIES
    from senet.analysis.presets import PRESETS

    studies = "; ".join(f"{k} ({what}; {_paper(table)})" for k, (what, table, _) in STUDIES.items())
    parser.add_argument("study", choices=list(STUDIES), metavar="STUDY", help=studies)
    parser.add_argument("--recipe", default="fmnist-fast", help=recipe_help("fmnist-fast"))
    parser.add_argument("--seeds", type=whole(1, MAX_SEEDS), default=3, help="seeds 0..K-1 (default 3)")
    parser.add_argument("--seed-list", type=whole(0, 2**63 - 1), nargs="+", help="explicit seeds instead of --seeds")
    parser.add_argument("--values", nargs="+", metavar="VALUE",
                        help="the study's variants instead of all of them, e.g. 2 4 8 16 for reduction; for "
                        f"attention, units as their papers use them, any of: {', '.join(PRESETS)}")  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true", help="leave out the plain twin")
    parser.add_argument("--out", metavar="DIR", help="study folder (default OUT_DIR/ablate-STUDY-MODEL-DATASET)")
    parser.add_argument("--runs-dir", metavar="DIR", help="where the runs go (default STUDY/runs); share it between "
                   "studies of one recipe to train common runs, such as the baseline, once")  # fmt: skip
    add_config_flags(parser, skip=("seed", "name"))
    parser.set_defaults(resume=None)


def _paper(table: str) -> str:
    """Where a study's ImageNet figures come from: the SE paper's table, or (attention) each unit's own paper."""
    return f"SE paper {table}" if table.startswith("Table") else table


def run(args: argparse.Namespace) -> int:
    from senet.analysis.ablate import run_study

    if args.out and "out_dir" in overrides(args):
        raise ValueError(f"--out {args.out!r} and --out-dir both say where the study goes; give one (--out-dir D "
                         "puts it in D/ablate-STUDY-MODEL-DATASET)")  # fmt: skip
    base = config_from_args(args)
    seeds = list(range(args.seeds)) if args.seed_list is None else args.seed_list
    out = Path(args.out or Path(base.out_dir) / f"ablate-{args.study}-{base.model}-{base.dataset}")
    result = run_study(
        args.study, base, seeds=seeds, out_dir=out, values=args.values, baseline=not args.no_baseline,
        runs_dir=args.runs_dir,
    )  # fmt: skip
    print(result.markdown())
    print(f"\nstudy folder: {out} (study.md, study.json, study.png; `senet report {out}` for an HTML page)")
    return 0
