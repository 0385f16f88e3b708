"""the paper's ablation studies, K seeds, cached and resumable

Train every variant of a study (and the plain twin) over K seeds with one recipe; each run is cached in its own
folder, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.cli._config import add_config_flags, config_from_args, recipe_help, whole
from senet.validate import MAX_SEEDS


def arguments(parser: argparse.ArgumentParser) -> None:
    from senet.analysis.ablate import STUDIES

    studies = "; ".join(f"{k} ({v[0]}, paper {v[1]})" for k, v in STUDIES.items())
    parser.add_argument("study", choices=list(STUDIES), metavar="STUDY", help=studies)
    parser.add_argument("--recipe", default="fmnist-fast", help=f"{recipe_help()} (default fmnist-fast)")
    parser.add_argument("--seeds", type=whole(1, MAX_SEEDS), default=3, help="seeds 0..K-1 (default 3)")
    parser.add_argument("--seed-list", type=whole(0, 2**63 - 1), nargs="+", help="explicit seeds instead of --seeds")
    parser.add_argument("--values", nargs="+", help="the study's values, e.g. --values 2 4 8 16 for reduction")
    parser.add_argument("--no-baseline", action="store_true", help="leave out the plain twin")
    parser.add_argument("--out", metavar="DIR", help="study folder (default OUT_DIR/ablate-STUDY-MODEL-DATASET)")
    parser.add_argument("--runs-dir", metavar="DIR", help="where the runs go (default STUDY/runs); share it between "
                   "studies of one recipe to train common runs, such as the baseline, once")  # fmt: skip
    add_config_flags(parser, skip=("seed", "name"))
    parser.set_defaults(resume=None)


def run(args: argparse.Namespace) -> int:
    from senet.analysis.ablate import run_study

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
