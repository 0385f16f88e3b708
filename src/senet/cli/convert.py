"""convert Caffe-port / timm / torchvision weights into a senet weights file

Load a .pth (read with weights_only=True, never unpickling code) or safetensors file of another layout into a senet
model and save it as safetensors with senet's metadata. Missing, unexpected or misshapen keys are an error naming
them.
"""

from __future__ import annotations

import argparse

from senet.cli._config import CLASSES, finite
from senet.constants import IMAGENET_MEAN, IMAGENET_STD
from senet.weights import LAYOUTS


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="the weights file to convert")
    parser.add_argument("--from", dest="layout", default="auto", choices=("auto", *LAYOUTS),
                   help="layout of SRC (default: recognised from its key names)")  # fmt: skip
    parser.add_argument("--model", required=True, help="senet model name, e.g. se_resnet50 (see `senet models`)")
    parser.add_argument("--out", required=True, metavar="DST", help="output .safetensors file (written atomically)")
    parser.add_argument("--num-classes", type=CLASSES, default=None, help="classifier outputs (default: the model's, "
                        "1000)")  # fmt: skip
    parser.add_argument("--mean", type=finite, nargs="+", default=list(IMAGENET_MEAN),
                   help="input normalisation recorded with the weights (default ImageNet's)")  # fmt: skip
    parser.add_argument("--std", type=finite, nargs="+", default=list(IMAGENET_STD), help="one per channel, above 0")


def run(args: argparse.Namespace) -> int:
    from senet.factory import create_model, model_metadata
    from senet.files import refuse_overwrite, save_weights
    from senet.validate import check_normalisation
    from senet.weights import detect_layout, load_weights, model_options, read_state

    refuse_overwrite(args.out, {"weights file to convert": args.src})
    state = read_state(args.src)
    layout = detect_layout(state) if args.layout == "auto" else args.layout
    if layout is None:
        raise ValueError(f"cannot tell the layout of {args.src!r}; pass --from one of {', '.join(LAYOUTS)}")
    options = model_options(args.model, layout)
    model = create_model(args.model, num_classes=args.num_classes, **options)
    check_normalisation(args.mean, args.std, model.in_chans, "--mean/--std:")
    load_weights(model, state, layout)
    meta = model_metadata(model, mean=args.mean, std=args.std, source=str(args.src), source_layout=layout)
    save_weights(args.out, model, meta)
    print(f"{args.src} ({layout} layout) -> {args.out}: {args.model} {options or ''}, {len(state)} tensors")
    return 0
