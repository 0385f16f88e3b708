"""record SE gate statistics of a trained model over its test set (paper Figs. 6-7)

Run a trained model over its dataset's test set, record the SE gates at chosen units and draw the paper's figures:
mean excitation per channel for several classes at early, middle and late depth, and the spread within a class.
Writes excitations.npz / .csv and two PNGs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.cli._config import BATCH, SUBSET, whole
from senet.validate import MAX_CLASSES


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="a senet weights file or a run folder")
    parser.add_argument("--units", nargs="+", help="SE module names, e.g. layer3.2.se (default: the paper's choice)")
    parser.add_argument("--classes", type=whole(0, MAX_CLASSES), nargs="+", default=[0, 1, 2, 3],
                        help="class indices to draw")  # fmt: skip
    parser.add_argument("--data-dir", help="where the dataset is (default: as the weights' recipe)")
    parser.add_argument("--test-subset", type=SUBSET, default=0, help="use a fixed subset of N test images (0: all)")
    parser.add_argument("--batch-size", type=BATCH, default=256)
    parser.add_argument("--out", metavar="DIR", help="default: RUN/excitation beside the weights")


def run(args: argparse.Namespace) -> int:
    from senet.analysis.excitation import paper_name, plot_class_means, plot_spread, record_from_weights

    stats = record_from_weights(
        args.weights, data_dir=args.data_dir, units=args.units, test_subset=args.test_subset, batch_size=args.batch_size
    )
    source = Path(args.weights)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "excitation"
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
