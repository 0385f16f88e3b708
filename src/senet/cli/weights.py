"""list the known published weights

List the published weights that create_model(NAME, weights=...) downloads, converts and loads.
"""

from __future__ import annotations

import argparse


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style model pattern, e.g. 'se_*'")


def run(args: argparse.Namespace) -> int:
    from senet.weights import KNOWN_WEIGHTS, list_weights

    names = set(list_weights(args.pattern))
    if not names:
        raise ValueError(f"no published weights match {args.pattern!r}; `senet weights` lists them all")
    print(f"{'weights':<34} {'layout':<12} {'top-1':>6}  url")
    for w in KNOWN_WEIGHTS:
        if w.name in names:
            top1 = f"{w.top1:.2f}" if w.top1 is not None else "-"
            print(f"{w.name:<34} {w.layout:<12} {top1:>6}  {w.url}")
    print("\nthe first weights of a model are its DEFAULT: senet.create_model(NAME, weights='DEFAULT')")
    return 0
