"""params and MACs of SE models and their plain twins

Print each SE model's parameters and multiply-adds beside its plain twin's, with the overhead of SE. With no MODEL,
every SE model in the registry, grouped by family. A run folder (or senet weights file) in place of a name measures
its model as trained: its options, classes, channels and input size, beside its twin with the same options but SE's.
"""

from __future__ import annotations

import argparse

from senet.cli._config import CLASSES, add_input_size_flags, input_size, run_model


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="model names (SE or plain; see `senet models`), or "
                        "run folders")  # fmt: skip
    add_input_size_flags(parser)
    parser.add_argument("--num-classes", type=CLASSES, help="classifier outputs (default: the model's, 1000 on "
                        "ImageNet; a run's own)")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")


def format_table(rows: list) -> str:
    head = (
        f"{'SE model':<24} {'params':>9} {'GMACs':>8}   {'plain twin':<20} {'params':>9} {'GMACs':>8} "
        f"{'+params':>8} {'+MACs':>7}"
    )
    lines = [head, "-" * len(head)]
    for o in rows:
        lines.append(
            f"{o.se_model:<24} {o.se_params / 1e6:>8.3f}M {o.se_macs / 1e9:>8.3f}   {o.plain_model:<20} "
            f"{o.plain_params / 1e6:>8.3f}M {o.plain_macs / 1e9:>8.3f} {o.params_pct:>+7.2f}% {o.macs_pct:>+6.2f}%"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from senet.complexity import overhead
    from senet.files import atomic_write_text, refuse_overwrite
    from senet.models import get_entry, list_models
    from senet.validate import json_text

    if args.json:
        refuse_overwrite(args.json, {}, "--json")
    given = args.models or list_models(se=True, sort=False)
    runs = {item: meta for item in given if (meta := run_model(item)) is not None}  # refused before any work
    names = [n for n in given if n not in runs]
    size = input_size(args)
    pairs = dict.fromkeys(get_entry(n).name if get_entry(n).has_se else get_entry(n).twin for n in names)
    rows = [overhead(n, size, args.num_classes) for n in pairs]
    by_family: dict[str, list] = {}
    for o in rows:
        by_family.setdefault(get_entry(o.se_model).family, []).append(o)
    for family, family_rows in by_family.items():
        sizes = sorted({"×".join(map(str, o.input_size[1:])) for o in family_rows})
        print(f"\n{family} ({', '.join(sizes)}, MACs per image; SE squeeze and scale: 1 MAC per element each)")
        print(format_table(family_rows))
    for item, meta in runs.items():  # each run as trained: its model, options, classes, channels and input size
        classes = args.num_classes or meta["num_classes"]
        row = overhead(meta["name"], input_size(args, meta), classes, meta["options"])
        rows.append(row)
        shown = "".join(f", {k}={v!r}" for k, v in meta["options"].items())
        print(f"\n{item}: {meta['name']}{shown}, {classes} classes, input {'×'.join(map(str, row.input_size))}")
        print(format_table([row]))
    if args.json:
        atomic_write_text(args.json, json_text([o.to_dict() for o in rows], indent=2))
        print(f"\nwrote {args.json}")
    return 0
