"""convert weights of another layout (Caffe port, timm, torchvision, pretrainedmodels) into a senet weights file

Load a .pth (read with weights_only=True, never unpickling code) or safetensors file of another layout into a senet
model built with the options that layout computes with, and save it as safetensors with senet's metadata: what
rebuilds the model, and the input normalisation the weights expect. Missing, unexpected or misshapen keys are an
error naming them; weights no senet model reproduces are refused with the reason.
"""

from __future__ import annotations

import argparse

from senet.cli._config import CLASSES, finite
from senet.weights import LAYOUTS


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="the weights file to convert")
    parser.add_argument("--from", dest="layout", default="auto", choices=("auto", *LAYOUTS),
                        help="layout of SRC (default: recognised from its key names)")  # fmt: skip
    parser.add_argument("--model", help="senet model name, e.g. se_resnet50 (see `senet models`); default: the "
                        "layout's model, where it has one (Inception, VGG, MobileNet layouts)")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="DST", help="output .safetensors file (written atomically)")
    parser.add_argument("--num-classes", type=CLASSES, default=None, help="classifier outputs (default: the model's, "
                        "1000)")  # fmt: skip
    parser.add_argument("--mean", type=finite, nargs="+", default=None,
                        help="input normalisation recorded with the weights (default: the layout's, e.g. "
                        "ImageNet's)")  # fmt: skip
    parser.add_argument("--std", type=finite, nargs="+", default=None, help="one per channel, above 0 (default: the "
                        "layout's)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from senet.factory import create_model, model_metadata
    from senet.files import refuse_overwrite, save_weights
    from senet.validate import check_normalisation
    from senet.weights import get_layout, load_weights, model_options, read_source

    refuse_overwrite(args.out, {"weights file to convert": args.src})
    state, recorded = read_source(args.src)  # recorded: a senet file's own metadata (mean, std, classes, ...)
    spec = get_layout(args.layout, list(state))
    name = args.model or spec.model
    if name is None:
        raise ValueError(f"{args.src!r} holds {spec.source} weights of the ResNet family; name the senet model "
                         "with --model (e.g. se_resnet50)")  # fmt: skip
    options = model_options(name, spec.name, state)
    model = create_model(name, num_classes=args.num_classes, **options)
    load_weights(model, state, spec.name)
    meta = getattr(model, "weights_meta", None) or recorded
    mean = args.mean if args.mean is not None else meta.get("mean")
    std = args.std if args.std is not None else meta.get("std")
    if mean is not None or std is not None:
        check_normalisation(mean or [], std or [], model.in_chans, "--mean/--std:")
    rebuilt = ("mean", "std", "layout", "source", "name", "options", "num_classes", "in_chans")  # written anew below
    extra = {k: v for k, v in meta.items() if k not in rebuilt}
    extra |= {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}  # senet's own files: as recorded
    meta = model_metadata(model, source=str(args.src), source_layout=spec.name, **extra)
    save_weights(args.out, model, meta)
    shown = "".join(f", {k}={v!r}" for k, v in options.items())  # the options the layout asked for, if any
    print(f"{args.src} ({spec.name} layout) -> {args.out}: {name}{shown}, {len(state)} tensors")
    return 0
