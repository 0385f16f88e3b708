"""export a senet weights file to ONNX, ExportedProgram or TorchScript

Rebuild the model a senet weights file describes and export it with a dynamic batch axis. The input normalisation
and size are recorded in the exported file (ONNX metadata_props, or senet.json in .pt2 / TorchScript archives).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.cli._config import SIDE, finite
from senet.data import Preprocess
from senet.export import FORMATS, export, read_metadata
from senet.factory import load_model, weights_file
from senet.files import refuse_overwrite

_SUFFIX = {"onnx": ".onnx", "exported-program": ".pt2", "torchscript": ".ts"}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "weights", metavar="WEIGHTS", help="a senet weights file (from training or convert) or a run folder"
    )
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="default: onnx")
    parser.add_argument("--out", help="output file (default: the weights file with .onnx, .pt2 or .ts)")
    parser.add_argument("--input-size", type=SIDE, help="height = width of the input (default: the size it was "
                        "trained or published at)")  # fmt: skip
    parser.add_argument("--mean", type=finite, nargs="+", help="input normalisation (default: the weights' metadata)")
    parser.add_argument("--std", type=finite, nargs="+", help="one per channel, above 0")


def run(args: argparse.Namespace) -> int:
    source = weights_file(args.weights)  # a run folder means its last.safetensors
    out = Path(args.out) if args.out else source.with_suffix(_SUFFIX[args.format])
    refuse_overwrite(out, {"input weights": source})
    model, meta = load_model(args.weights)
    flags = {"mean": args.mean, "std": args.std, "image_size": args.input_size}
    recorded_or_given = {**meta, **{k: v for k, v in flags.items() if v is not None}}
    if "mean" not in recorded_or_given or "std" not in recorded_or_given:
        raise ValueError(f"{args.weights!r} does not record its input normalisation; pass --mean and --std")
    # The weights' preprocessing as eval and predict read it (senet.data.Preprocess): the size they were trained at
    # (senet runs record image_size) or published at (input_size), else the size the model is measured at.
    own = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (None,))[-1]
    pre = Preprocess.from_metadata(recorded_or_given, input_size=own)
    keep = {k: v for k, v in meta.items() if k not in ("name", "options", "num_classes", "in_chans", "mean", "std")}
    path = export(model, out, format=args.format, input_size=pre.input_size, mean=pre.mean, std=pre.std, metadata=keep)
    recorded = read_metadata(path)
    print(f"{args.weights} -> {path} ({args.format}, input (N, {', '.join(map(str, recorded['input_size']))}), "
          f"dynamic N; mean {recorded['mean']}, std {recorded['std']})")  # fmt: skip
    return 0
