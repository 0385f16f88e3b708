"""convert weights of another layout (Caffe port, timm, torchvision, pretrainedmodels) into a senet weights file

Load a .pth (read with weights_only=True, never unpickling code) or safetensors file of another layout into a senet
model built with the options that layout computes with, and save it as safetensors with senet's metadata: what
rebuilds the model, and the preprocessing the weights expect (the layout's normalisation; a published file's own
size, crop and interpolation, recognised by its name; else the model's; or the flags). For ImageNet weights (1000
outputs) it records ImageNet's class names, so that predict, eval and export use them. Missing, unexpected or
misshapen keys are an error naming them; weights no senet model reproduces are refused with the reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.cli._config import CLASSES, SIDE, finite, fraction
from senet.data.transforms import INTERPOLATIONS
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
                        help="input normalisation recorded with the weights (default: the published file's, else the "
                        "layout's, e.g. ImageNet's)")  # fmt: skip
    parser.add_argument("--std", type=finite, nargs="+", default=None, help="one per channel, above 0 (default: the "
                        "layout's)")  # fmt: skip
    parser.add_argument("--input-size", type=SIDE, help="evaluation size (default: the published file's, the model's)")
    parser.add_argument("--crop-pct", type=fraction, help="evaluation centre crop's share of the resized side")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS)


def run(args: argparse.Namespace) -> int:
    from senet.data import Preprocess
    from senet.factory import create_model, default_preprocess, model_metadata
    from senet.files import refuse_overwrite, save_weights
    from senet.validate import check_normalisation
    from senet.weights import KNOWN_WEIGHTS, get_layout, imagenet_classes, load_weights, model_options, read_source

    refuse_overwrite(args.out, {"weights file to convert": args.src})
    state, recorded = read_source(args.src)  # recorded: a senet file's own metadata (mean, std, classes, ...)
    spec = get_layout(args.layout, state)
    name = args.model or spec.model
    if name is None:
        raise ValueError(f"{args.src!r} holds {spec.source} weights of the ResNet family; name the senet model "
                         "with --model (e.g. se_resnet50)")  # fmt: skip
    options = model_options(name, spec.name, state)
    model = create_model(name, num_classes=args.num_classes, **options)
    load_weights(model, state, spec.name)
    meta = getattr(model, "weights_meta", None) or recorded
    # The preprocessing, each part from the first that says it: the flags, a published file's own (recognised by its
    # name), the layout's input or the senet file's record, the model's default.
    known = [w.metadata() for w in KNOWN_WEIGHTS if w.filename == Path(args.src).name]
    given = {"mean": args.mean, "std": args.std, "input_size": args.input_size, "crop_pct": args.crop_pct,
             "interpolation": args.interpolation}  # fmt: skip
    layers = [default_preprocess(name, model.in_chans), meta, *known, {k: v for k, v in given.items() if v is not None}]
    merged = {k: v for layer in layers for k, v in _preprocess_keys(layer).items()}
    check_normalisation(merged["mean"], merged["std"], model.in_chans, "--mean/--std:")
    pre = Preprocess.from_metadata(merged)
    rebuilt = ["layout", "source", "source_layout", "name", "options", "num_classes", "in_chans", "input_size"]
    rebuilt += pre.metadata()  # written anew below
    extra = {k: v for k, v in meta.items() if k not in rebuilt} | pre.metadata()
    if model.num_classes == 1000 and spec.name != "senet":
        extra["classes"] = list(imagenet_classes())
    save_weights(args.out, model, model_metadata(model, source=str(args.src), source_layout=spec.name, **extra))
    shown = "".join(f", {k}={v!r}" for k, v in options.items())  # the options the layout asked for, if any
    print(f"{args.src} ({spec.name} layout) -> {args.out}: {name}{shown}, {len(state)} tensors")
    return 0


def _preprocess_keys(meta: dict) -> dict:
    """The preprocessing a metadata record states (its ``image_size`` as ``input_size``)."""
    out = {k: meta[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation") if meta.get(k) is not None}
    if meta.get("image_size") is not None:
        out["input_size"] = meta["image_size"]
    return out
