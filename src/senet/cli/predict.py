"""top-k labels of image files

Classify image files with a senet weights file or run folder: resized, centre-cropped and normalised as the weights
record (their size, crop, interpolation, mean and std), labelled with the classes they record (ImageNet's names for
converted ImageNet weights).
"""

from __future__ import annotations

import argparse
import json

from senet.cli._config import CLASSES


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="a .safetensors weights file or a run folder")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--top-k", type=CLASSES, default=3, help="labels per image (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from senet.factory import load_model
    from senet.training import predict

    model, meta = load_model(args.weights)
    if "classes" not in meta:
        raise ValueError(f"{args.weights!r} does not record its class names; predict needs weights from senet train, "
                         "or converted ImageNet weights (senet convert)")  # fmt: skip
    results = predict(model, args.images, meta, top_k=args.top_k)
    if args.json:
        pairs = zip(args.images, results, strict=True)
        print(json.dumps({p: [{"label": lab, "p": prob} for lab, prob in r] for p, r in pairs}))
        return 0
    for path, r in zip(args.images, results, strict=True):
        print(f"{path}: " + ", ".join(f"{lab} {100 * prob:.1f}%" for lab, prob in r))
    return 0
