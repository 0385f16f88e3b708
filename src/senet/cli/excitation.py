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
    parser.add_argument("--classes", type=whole(0, MAX_CLASSES), nargs="+",
                        help="class indices to draw (default: the first four, or all of a run with fewer)")  # fmt: skip
    parser.add_argument("--data-dir", help="where the dataset is (default: as the weights' recipe)")
    parser.add_argument("--test-subset", type=SUBSET, help="use a fixed subset of N test images; 0: all (default: the "
                        "subset the run was evaluated on, as eval)")  # fmt: skip
    parser.add_argument("--batch-size", type=BATCH, default=256)
    parser.add_argument("--out", metavar="DIR", help="default: RUN/excitation beside the weights")


def run(args: argparse.Namespace) -> int:
    from senet.analysis.excitation import paper_name, plot_class_means, plot_spread, record_from_weights
    from senet.factory import weights_metadata
    from senet.files import refuse_busy

    source = Path(args.weights)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "excitation"
    if args.classes:  # checked before the test set is recorded, so that a mistake costs nothing and writes nothing
        count = weights_metadata(args.weights)["num_classes"]
        bad = [k for k in args.classes if not 0 <= k < count]
        if bad:
            raise ValueError(f"--classes {bad}: {args.weights} has {count} classes, indices 0 to {count - 1}")
    refuse_busy(out)
    stats = record_from_weights(
        args.weights, data_dir=args.data_dir, units=args.units, test_subset=args.test_subset, batch_size=args.batch_size
    )
    files = stats.save(out)
    classes = args.classes or list(range(min(4, len(stats.classes))))  # the paper's figures draw four classes
    files.append(plot_class_means(stats, out / "class_means.png", classes))
    files.append(plot_spread(stats, out / "spread.png", classes[0]))
    spec, spread = stats.specificity(), stats.class_spread()
    print(f"{'unit':<16} {'paper':<8} {'channels':>8} {'mean gate':>10} {'class spread':>13} {'η² (class)':>11}")
    for u in stats.units:
        m = stats.overall_mean[u]
        print(f"{u:<16} {paper_name(u):<8} {m.size:>8} {m.mean():>10.3f} {spread[u]:>13.4f} {spec[u]:>11.3f}")
    print(f"\n{int(stats.counts.sum())} test images; wrote " + ", ".join(str(f) for f in files))
    return 0
