"""``senet cost``, ``senet excitation``, ``senet ablate``, ``senet report``: the analysis commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from senet.io import atomic_write_text


def _cost(args: argparse.Namespace) -> int:
    from senet.analysis.cost import markdown_table, measure_cost

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    size = None if args.input_size is None else (args.in_chans, args.input_size, args.input_size)
    rows, env = measure_cost(
        args.models,
        batch_sizes=args.batch,
        train_batch=args.train_batch,
        input_size=size,
        repeats=args.repeats,
        train=not args.no_train,
        device=device,
        channels_last=args.channels_last,
    )
    table = markdown_table(rows, env)
    print(table)
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "cost.md", table + "\n")
        atomic_write_text(out / "cost.json", json.dumps({"env": env, "rows": [r.to_dict() for r in rows]}, indent=1))
        print(f"\nwrote {out / 'cost.md'} and {out / 'cost.json'}")
    return 0


def _excitation(args: argparse.Namespace) -> int:
    from senet.analysis.excitation import paper_name, plot_class_means, plot_spread, record_from_weights

    stats = record_from_weights(
        args.weights, data_dir=args.data_dir, units=args.units, test_subset=args.test_subset, batch_size=args.batch_size
    )
    out = Path(args.out) if args.out else _default_out(args.weights, "excitation")
    files = stats.save(out)
    bad = [k for k in args.classes if not 0 <= k < len(stats.classes)]
    if bad:
        raise ValueError(f"--classes {bad}: class indices run from 0 to {len(stats.classes) - 1}")
    files.append(plot_class_means(stats, out / "class_means.png", args.classes))
    files.append(plot_spread(stats, out / "spread.png", args.classes[0]))
    spec, spread = stats.specificity(), stats.class_spread()
    print(f"{'unit':<16} {'paper':<8} {'channels':>8} {'mean gate':>10} {'class spread':>13} {'η² (class)':>11}")
    for u in stats.units:
        m = stats.overall_mean[u]
        print(f"{u:<16} {paper_name(u):<8} {m.size:>8} {m.mean():>10.3f} {spread[u]:>13.4f} {spec[u]:>11.3f}")
    print(f"\n{int(stats.counts.sum())} test images; wrote " + ", ".join(str(f) for f in files))
    return 0


def _default_out(weights: str, name: str) -> Path:
    """Beside the weights: RUN/NAME for a run folder or a file inside one."""
    p = Path(weights)
    return (p if p.is_dir() else p.parent) / name


def _ablate(args: argparse.Namespace) -> int:
    from senet.analysis.ablate import run_study
    from senet.cli.train import config_from_args

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


def _report(args: argparse.Namespace) -> int:
    from senet.analysis.report import build_report

    print(f"wrote {build_report(args.folder)}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cost",
        help="measured cost of SE: params, MACs, latency, training step, memory",
        description="Measure each SE model beside its plain twin in one process, interleaved: params, MACs, "
        "inference latency per batch size, training-step time, activation memory (and CUDA peak memory).",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="models (SE or plain; the twin is added)")
    p.add_argument("--batch", type=_positive, nargs="+", default=[1, 8], help="inference batch sizes (default 1 8)")
    p.add_argument("--train-batch", type=_positive, default=8, help="training-step batch size (default 8)")
    p.add_argument("--repeats", type=_positive, default=15, help="timed rounds; figures are medians (default 15)")
    p.add_argument("--threads", type=_positive, help="intra-op threads (default: torch's, all cores)")
    p.add_argument("--input-size", type=_positive, help="input height = width (default: the model's)")
    p.add_argument("--in-chans", type=_positive, default=3, help="input channels (default 3)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    p.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    p.add_argument("--out", metavar="DIR", help="write cost.md and cost.json there")
    p.set_defaults(func=_cost)

    e = sub.add_parser(
        "excitation",
        help="record SE gate statistics of a trained model over its test set (paper Figs. 6-7)",
        description="Run a trained model over its dataset's test set, record the SE gates at chosen units and draw "
        "the paper's figures: mean excitation per channel for several classes at early, middle and late depth, and "
        "the spread within a class. Writes excitations.npz / .csv and two PNGs.",
    )
    e.add_argument("weights", help="a senet weights file or a run folder")
    e.add_argument("--units", nargs="+", help="SE module names, e.g. layer3.2.se (default: the paper's choice)")
    e.add_argument("--classes", type=int, nargs="+", default=[0, 1, 2, 3], help="class indices to draw")
    e.add_argument("--data-dir", help="where the dataset is (default: as the weights' recipe)")
    e.add_argument("--test-subset", type=int, default=0, help="use a fixed subset of N test images (0: all)")
    e.add_argument("--batch-size", type=_positive, default=256)
    e.add_argument("--out", metavar="DIR", help="default: RUN/excitation beside the weights")
    e.set_defaults(func=_excitation)

    from senet.analysis.ablate import STUDIES
    from senet.cli.train import _recipe_help, add_config_flags

    a = sub.add_parser(
        "ablate",
        help="the paper's ablation studies, K seeds, cached and resumable",
        description="Train every variant of a study (and the plain twin) over K seeds with one recipe; each run is "
        "cached in its own folder, so an interrupted study resumes where it stopped. Studies: "
        + "; ".join(f"{k} ({v[0]}, paper {v[1]})" for k, v in STUDIES.items())
        + ". "
        + _recipe_help(),
    )
    a.add_argument("study", choices=list(STUDIES), metavar="STUDY", help=", ".join(STUDIES))
    a.add_argument("--recipe", default="fmnist-fast", help="recipe name or YAML path (default fmnist-fast)")
    a.add_argument("--seeds", type=_positive, default=3, help="seeds 0..K-1 (default 3)")
    a.add_argument("--seed-list", type=int, nargs="+", help="explicit seeds instead of --seeds")
    a.add_argument("--values", nargs="+", help="the study's values, e.g. --values 2 4 8 16 for reduction")
    a.add_argument("--no-baseline", action="store_true", help="leave out the plain twin")
    a.add_argument("--out", metavar="DIR", help="study folder (default OUT_DIR/ablate-STUDY-MODEL-DATASET)")
    a.add_argument("--runs-dir", metavar="DIR", help="where the runs go (default STUDY/runs); share it between "
                   "studies of one recipe to train common runs, such as the baseline, once")  # fmt: skip
    add_config_flags(a, skip=("seed", "name"))
    a.set_defaults(func=_ablate, resume=None)

    r = sub.add_parser(
        "report",
        help="one self-contained HTML page for a run, a comparison or a study",
        description="Write report.html (tables and plots embedded) into a training run, comparison or ablation "
        "study folder.",
    )
    r.add_argument("folder", help="a run, comparison or study folder")
    r.set_defaults(func=_report)
