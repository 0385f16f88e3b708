"""list registered models

List registered models with their twins.
"""

from __future__ import annotations

import argparse


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'se_resnext*'")


def run(args: argparse.Namespace) -> int:
    from senet.models import get_entry, list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; `senet models` lists them all")
    for name in names:
        e = get_entry(name)
        print(f"{name:<24} {e.family:<10} {'SE' if e.has_se else 'plain':<6} twin {e.twin:<24} {e.summary}")
    return 0
