"""measured cost of SE: params, MACs, latency, training step, memory

Measure each SE model beside its plain twin in one process, interleaved: params, MACs, inference latency per batch
size, training-step time, activation memory (and CUDA peak memory).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from senet.cli._config import BATCH, add_input_size_flags, input_size, positive, whole


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="models (SE or plain; the twin is added)")
    parser.add_argument("--batch", type=BATCH, nargs="+", default=[1, 8], help="inference batch sizes (default 1 8)")
    parser.add_argument("--train-batch", type=BATCH, default=8, help="training-step batch size (default 8)")
    parser.add_argument("--repeats", type=whole(1, 10_000), default=15, help="timed rounds; figures are medians "
                        "(default 15)")  # fmt: skip
    parser.add_argument("--threads", type=positive, help="intra-op threads, at most the cores (default: torch's, all "
                        "cores)")  # fmt: skip
    add_input_size_flags(parser)
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    parser.add_argument("--out", metavar="DIR", help="write cost.md and cost.json there")


def run(args: argparse.Namespace) -> int:
    from senet.analysis.cost import markdown_table, measure_cost
    from senet.environment import check_parallelism
    from senet.files import atomic_write_text
    from senet.validate import json_text

    if args.threads:
        check_parallelism(args.threads, flags=("--threads", "--workers"))
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows, env = measure_cost(
        args.models,
        batch_sizes=args.batch,
        train_batch=args.train_batch,
        input_size=input_size(args),
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
        atomic_write_text(out / "cost.json", json_text({"env": env, "rows": [r.to_dict() for r in rows]}))
        print(f"\nwrote {out / 'cost.md'} and {out / 'cost.json'}")
    return 0
