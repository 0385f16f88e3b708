"""convert Caffe-port / timm / torchvision weights into a senet weights file

Load a .pth (read with weights_only=True, never unpickling code) or safetensors file of another layout into a senet
model and save it as safetensors with senet's metadata. Missing, unexpected or misshapen keys are an error naming
them. The file records the preprocessing (a published file's own, recognised by its name; else the model's, or the
flags) and, for ImageNet weights (1000 outputs), ImageNet's class names, so that predict, eval and export use it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.weights import LAYOUTS


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="the weights file to convert")
    parser.add_argument("--from", dest="layout", default="auto", choices=("auto", *LAYOUTS),
                   help="layout of SRC (default: recognised from its key names)")  # fmt: skip
    parser.add_argument("--model", required=True, help="senet model name, e.g. se_resnet50 (see `senet models`)")
    parser.add_argument("--out", required=True, metavar="DST", help="output .safetensors file (written atomically)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's, 1000)")
    parser.add_argument("--mean", type=float, nargs="+",
                   help="input normalisation recorded with the weights (default: the published file's, else the "
                   "model's: ImageNet's for ImageNet models)")  # fmt: skip
    parser.add_argument("--std", type=float, nargs="+")
    parser.add_argument("--input-size", type=int, help="evaluation size (default: the published file's or the model's)")
    parser.add_argument("--crop-pct", type=float, help="evaluation centre crop's share of the resized side")
    parser.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"))


def run(args: argparse.Namespace) -> int:
    from senet.factory import create_model, default_preprocess, model_metadata
    from senet.files import refuse_overwrite, save_weights
    from senet.weights import KNOWN_WEIGHTS, detect_layout, imagenet_classes, load_weights, model_options, read_state

    refuse_overwrite(args.out, {"weights file to convert": args.src})
    state = read_state(args.src)
    layout = detect_layout(state) if args.layout == "auto" else args.layout
    if layout is None:
        raise ValueError(f"cannot tell the layout of {args.src!r}; pass --from one of {', '.join(LAYOUTS)}")
    options = model_options(args.model, layout)
    model = create_model(args.model, num_classes=args.num_classes, **options)
    load_weights(model, state, layout)
    known = [w for w in KNOWN_WEIGHTS if w.filename == Path(args.src).name]  # a published file: its own figures
    pre = known[0].metadata() if known else default_preprocess(args.model)
    pre = {k: pre[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation")}
    given = {"mean": args.mean, "std": args.std, "input_size": args.input_size, "crop_pct": args.crop_pct,
             "interpolation": args.interpolation}  # fmt: skip
    pre |= {k: v for k, v in given.items() if v is not None}
    extra = {"image_size": pre.pop("input_size"), **pre, "source": str(args.src), "source_layout": layout}
    if model.num_classes == 1000 and layout != "senet":
        extra["classes"] = list(imagenet_classes())
    save_weights(args.out, model, model_metadata(model, **extra))
    print(f"{args.src} ({layout} layout) -> {args.out}: {args.model} {options or ''}, {len(state)} tensors")
    return 0
