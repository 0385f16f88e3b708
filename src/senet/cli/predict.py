"""top-k labels of image files

Classify image files, or every image in folders (and their subfolders, sorted), with a senet weights file or run
folder: resized, centre-cropped and normalised as the weights record (their size, crop, interpolation, mean and
std), labelled with the classes they record (ImageNet's names for converted ImageNet weights).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from senet.cli._config import CLASSES


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="a .safetensors weights file or a run folder")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders: every image file in a "
                        "folder and its subfolders, in sorted order")  # fmt: skip
    parser.add_argument("--top-k", type=CLASSES, default=3, help="labels per image (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from senet.factory import load_model
    from senet.training import predict

    model, meta = load_model(args.weights)
    if "classes" not in meta:
        raise ValueError(f"{args.weights!r} does not record its class names; predict needs weights from senet train, "
                         "or converted ImageNet weights (senet convert)")  # fmt: skip
    images = image_files(args.images)
    batch = 64  # images in memory at once: a folder may hold thousands
    results = [r for i in range(0, len(images), batch) for r in predict(model, images[i : i + batch], meta, args.top_k)]
    if args.json:
        pairs = zip(images, results, strict=True)
        print(json.dumps({p: [{"label": lab, "p": prob} for lab, prob in r] for p, r in pairs}))
        return 0
    for path, r in zip(images, results, strict=True):
        print(f"{path}: " + ", ".join(f"{lab} {100 * prob:.1f}%" for lab, prob in r))
    return 0


def image_files(given: list[str]) -> list[str]:
    """The image files ``given`` names: a file itself (whatever its suffix: the reader says if it is no image), a
    folder every file under it with an image suffix (senet.data's IMAGE_EXTENSIONS), recursively, sorted."""
    from senet.data.datasets import IMAGE_EXTENSIONS

    out = []
    for name in given:
        path = Path(name)
        if not path.is_dir():
            out.append(name)
            continue
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not found:
            raise ValueError(f"{name!r} is a folder without image files ({', '.join(IMAGE_EXTENSIONS)}) in it or its "
                             "subfolders; name image files or a folder that holds some")  # fmt: skip
        out += [str(p) for p in found]
    return out
