"""top-1 / top-5 accuracy and loss of trained weights on a test set (JSON)

Evaluate a senet weights file (or run folder) on the test set of the dataset it was trained on (by default the test
subset the run was evaluated on); prints JSON. A plain PyTorch state dict (.pth) in senet's layout needs --model and
--dataset and is loaded without unpickling objects; weights of another layout (torchvision, timm) go through senet
convert first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.cli._config import BATCH, SUBSET, whole
from senet.training.evaluation import TTA

_STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="a .safetensors weights file, a run folder, or a .pth state dict")
    parser.add_argument("--dataset", help="default: the one in the weights' metadata")
    parser.add_argument("--model", help="the model of a .pth state dict")
    parser.add_argument("--data-dir", help="where the dataset's files are")
    parser.add_argument("--download", action="store_true", help="download the dataset through torchvision if missing")
    parser.add_argument("--test-subset", type=SUBSET, help="evaluate a fixed random subset of N images; 0: all "
                        "(default: the subset the run was evaluated on, as its recipe says)")  # fmt: skip
    parser.add_argument("--batch-size", type=BATCH, default=256)
    parser.add_argument("--workers", type=whole(0, 1024), default=0, help="data-loading processes (at most the cores)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--amp", choices=("none", "bf16", "fp16"), help="autocast precision (default: the run's, as it was evaluated "
        "in training; fp16 on CPU: none)",
    )  # fmt: skip
    parser.add_argument(
        "--tta", choices=TTA, help="flip: mean of the image's and its mirror image's probabilities; none: the image "
        "alone (default: as the run was evaluated, else none)",
    )  # fmt: skip
    parser.add_argument("--skip-bad-images", action="store_true", help="skip and count unreadable image files")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON to PATH")


def run(args: argparse.Namespace) -> int:
    import torch

    from senet.conversion import state_dict_model
    from senet.factory import load_model, weights_file
    from senet.files import atomic_write_text, refuse_overwrite
    from senet.training import Inputs, evaluate
    from senet.training.evaluation import recorded_test_set, recorded_test_subset
    from senet.validate import json_text

    state_dict = Path(args.weights).suffix in _STATE_DICT_SUFFIXES
    if args.json:
        refuse_overwrite(
            args.json, {"weights file": args.weights if state_dict else weights_file(args.weights)}, "--json"
        )
    model, meta = (None, {}) if state_dict else load_model(args.weights)
    subset = recorded_test_subset(meta, args.dataset) if args.test_subset is None else args.test_subset
    test, spec = recorded_test_set(
        meta, dataset=args.dataset, data_dir=args.data_dir, download=args.download, test_subset=subset
    )
    dataset = spec.dataset
    if model is None:  # a plain PyTorch state dict: read with weights_only=True, every key checked
        model = state_dict_model(args.weights, args.model, num_classes=spec.num_classes, in_chans=spec.in_chans)
    classes = model.model_config["num_classes"]
    if spec.num_classes != classes:
        raise ValueError(f"{args.weights!r} has {classes} classes, {dataset} has {spec.num_classes}; evaluate it on "
                         "the data it was trained on (leave out --dataset, or point --data-dir there)")  # fmt: skip
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    amp = args.amp or meta.get("recipe", {}).get("amp", "none")  # the run's, so eval scores what training scored
    if amp == "fp16" and not cuda and args.amp is None:
        amp = "none"  # a run trained with fp16 autocast on a GPU, evaluated on CPU (fp16 autocast is CUDA's)
    inputs = Inputs(torch.device("cuda" if cuda else "cpu"), spec.mean, spec.std, amp=amp)
    tta = args.tta or meta.get("recipe", {}).get("tta", "none")
    result = evaluate(
        model.to(inputs.device), test, inputs, batch_size=args.batch_size, workers=args.workers,
        skip_bad_images=args.skip_bad_images, tta=tta,
    )  # fmt: skip
    out = {"weights": str(args.weights), "model": model.model_config["name"], "dataset": dataset, "images": result.n}
    out["test_subset"] = subset  # 0: the whole test set
    out |= {
        "top1": result.acc,
        "top5": result.acc5,
        "loss": result.loss,
        "skipped": result.skipped,
        "tta": tta,
        "amp": amp,
    }
    text = json_text(out)  # a diverged model's loss is NaN: null in the JSON
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0
