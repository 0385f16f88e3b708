"""export a senet weights file to ONNX, ExportedProgram or TorchScript

Rebuild the model a senet weights file describes and export it with a dynamic batch axis. The input normalisation
and size are recorded in the exported file (ONNX metadata_props, or senet.json in .pt2 / TorchScript archives).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.cli._config import SIDE, finite
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
    if ("mean" not in meta and args.mean is None) or ("std" not in meta and args.std is None):
        raise ValueError(f"{args.weights!r} does not record its input normalisation; pass --mean and --std")
    # The rest as the library exports a loaded model: at the size it was trained or published at, with the weights'
    # normalisation and facts (senet.export reads model.weights_meta, which load_model sets).
    path = export(model, out, format=args.format, input_size=args.input_size, mean=args.mean, std=args.std)
    recorded = read_metadata(path)
    print(f"{args.weights} -> {path} ({args.format}, input (N, {', '.join(map(str, recorded['input_size']))}), "
          f"dynamic N; mean {recorded['mean']}, std {recorded['std']})")  # fmt: skip
    return 0
