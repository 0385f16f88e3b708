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

from senet.cli._config import CHANNELS, CLASSES, SIDE, finite, fraction
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
    parser.add_argument("--in-chans", type=CHANNELS, default=None, help="input channels of the weights' stem "
                        "(default 3; 1 for grayscale weights, with --mean and --std of one value)")  # fmt: skip
    parser.add_argument("--mean", type=finite, nargs="+", default=None,
                        help="input normalisation recorded with the weights (default: the published file's, else the "
                        "layout's, e.g. ImageNet's)")  # fmt: skip
    parser.add_argument("--std", type=finite, nargs="+", default=None, help="one per channel, above 0 (default: the "
                        "layout's)")  # fmt: skip
    parser.add_argument("--input-size", type=SIDE, help="evaluation size (default: the published file's, the model's)")
    parser.add_argument("--crop-pct", type=fraction, help="evaluation centre crop's share of the resized side")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS)


def run(args: argparse.Namespace) -> int:
    from senet.conversion import convert_file

    done = convert_file(
        args.src, args.out, layout=args.layout, model=args.model, num_classes=args.num_classes, in_chans=args.in_chans,
        mean=args.mean,
        std=args.std, input_size=args.input_size, crop_pct=args.crop_pct, interpolation=args.interpolation,
    )  # fmt: skip
    shown = "".join(f", {k}={v!r}" for k, v in done.options.items())  # the options the layout asked for, if any
    print(f"{args.src} ({done.layout} layout) -> {args.out}: {done.model}{shown}, {done.tensors} tensors")
    return 0
