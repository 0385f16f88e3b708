"""measured cost of SE: params, MACs, latency, training step, memory

Measure each SE model beside its plain twin in one process, interleaved: params, MACs, inference latency per batch
size, training-step time, activation memory (and CUDA peak memory). --attention adds each SE model with the named
units in place of SE (e.g. senet cost se_resnet50 --attention eca cbam ge_theta_plus gc simam). A run folder (or
senet weights file) in place of a name measures its model as trained (options, classes, channels, input size),
beside its twin with the same options but SE's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from senet.cli._config import BATCH, add_input_size_flags, input_size, positive, run_model, whole


def arguments(parser: argparse.ArgumentParser) -> None:
    from senet.analysis.presets import PRESETS

    parser.add_argument("models", nargs="+", metavar="MODEL", help="models (SE or plain; the twin is added; see "
                        "`senet models`), or run folders")  # fmt: skip
    parser.add_argument("--attention", nargs="+", metavar="UNIT", choices=[p for p in PRESETS if p != "se"],
                        help=f"also each SE model with these units in place of SE, as their papers use them: "
                        f"{', '.join(p for p in PRESETS if p != 'se')}")  # fmt: skip
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
    from senet.analysis.cost import ModelSpec, markdown_table, measure_cost
    from senet.analysis.presets import PRESETS, preset_options
    from senet.environment import check_parallelism
    from senet.files import atomic_write_text, refuse_busy
    from senet.models import get_entry
    from senet.validate import json_text

    if args.out:
        refuse_busy(args.out)
    if args.threads:
        check_parallelism(args.threads, flags=("--threads", "--workers"))
        torch.set_num_threads(args.threads)
    runs = {item: meta for item in args.models if (meta := run_model(item)) is not None}
    if runs and args.attention:
        raise ValueError(f"--attention puts units into registered models: give model names, not {next(iter(runs))}")
    sizes = {input_size(args, meta) for meta in runs.values()}
    if len(sizes) > 1:
        shown = ", ".join("×".join(map(str, s)) for s in sorted(sizes, key=str))
        raise ValueError(f"the runs were trained at different input sizes ({shown}); measure them one at a time, or "
                         "all at --input-size")  # fmt: skip
    size = sizes.pop() if sizes else input_size(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    models: list[str | ModelSpec] = [
        ModelSpec(runs[m]["name"], {**runs[m]["options"], "num_classes": runs[m]["num_classes"]}) if m in runs else m
        for m in args.models
    ]
    for name in args.models if args.attention else ():
        entry = get_entry(name)
        se_model = entry.name if entry.has_se else entry.twin
        unit = dict(get_entry(se_model).se_defaults).get("attention", "se")
        if unit != "se":  # a published network with another unit (eca_resnet50d): a unit swapped in is not its own
            base = get_entry(get_entry(se_model).twin).twin
            label = PRESETS[unit].label if unit in PRESETS else unit
            raise ValueError(f"{name} has {label} units in SE's place already; --attention swaps units into an SE "
                             f"model: measure {base} --attention {' '.join(args.attention)} beside {name}")  # fmt: skip
        for p in args.attention:
            options = preset_options(se_model, p, size or entry.input_size)
            models.append(ModelSpec(se_model, options, label=PRESETS[p].label))
    rows, env = measure_cost(
        models,
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
        atomic_write_text(out / "cost.json", json_text({"env": env, "rows": [r.to_dict() for r in rows]}))
        print(f"\nwrote {out / 'cost.md'} and {out / 'cost.json'}")
    return 0
