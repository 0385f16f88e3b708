"""``senet profile``: parameters and multiply-adds of SE models beside their plain twins."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import torch

from senet.analysis import profile
from senet.models import create_model, get_entry, list_models


@dataclass(frozen=True)
class Overhead:
    """An SE model's complexity beside its plain twin's."""

    se_model: str
    plain_model: str
    input_size: tuple[int, int, int]
    se_params: int
    plain_params: int
    se_macs: int
    plain_macs: int

    @property
    def params_pct(self) -> float:
        return 100.0 * (self.se_params / self.plain_params - 1)

    @property
    def macs_pct(self) -> float:
        return 100.0 * (self.se_macs / self.plain_macs - 1)

    def to_dict(self) -> dict:
        return {**self.__dict__, "params_pct": self.params_pct, "macs_pct": self.macs_pct}


def overhead(name: str, input_size: tuple[int, int, int] | None = None, num_classes: int | None = None) -> Overhead:
    """Profile ``name`` and its twin (either may be given) at ``input_size`` (the model's default if None)."""
    entry = get_entry(name)
    se_name, plain_name = (entry.name, entry.twin) if entry.has_se else (entry.twin, entry.name)
    size = input_size or entry.input_size
    counts = []
    for n in (se_name, plain_name):
        with torch.device("meta"):  # no weights are allocated
            model = create_model(n, num_classes=num_classes, in_chans=size[0])
        counts.append(profile(model, size))
    se, plain = counts
    return Overhead(se_name, plain_name, tuple(size), se.params, plain.params, se.macs, plain.macs)


def format_table(rows: list[Overhead]) -> str:
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
    names = args.models or list_models(se=True, sort=False)
    size = None if args.input_size is None else (args.in_chans, args.input_size, args.input_size)
    pairs = dict.fromkeys(get_entry(n).name if get_entry(n).has_se else get_entry(n).twin for n in names)
    rows = [overhead(n, size, args.num_classes) for n in pairs]
    by_family: dict[str, list[Overhead]] = {}
    for o in rows:
        by_family.setdefault(get_entry(o.se_model).family, []).append(o)
    for family, family_rows in by_family.items():
        sizes = sorted({"×".join(map(str, o.input_size[1:])) for o in family_rows})
        print(f"\n{family} ({', '.join(sizes)}, MACs per image; SE squeeze and scale: 1 MAC per element each)")
        print(format_table(family_rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([o.to_dict() for o in rows], f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="params and MACs of SE models and their plain twins",
        description="Print each SE model's parameters and multiply-adds beside its plain twin's, with the "
        "overhead of SE. With no MODEL, every SE model in the registry, grouped by family.",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="model names (SE or plain); see `senet models`")
    p.add_argument("--input-size", type=int, help="input height = width (default: the size the paper uses)")
    p.add_argument("--in-chans", type=int, default=3, help="input channels with --input-size (default 3)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the model's, 1000 on ImageNet)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=run)

    m = sub.add_parser("models", help="list registered models", description="List registered models.")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'se_resnext*'")
    m.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    for name in list_models(args.pattern):
        e = get_entry(name)
        print(f"{name:<26} {e.family:<10} {'SE' if e.has_se else 'plain':<6} twin: {e.twin}")
    return 0
