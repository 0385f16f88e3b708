"""Weights of another layout (Caffe port, timm, torchvision, pretrainedmodels) as a senet model or weights file.

`convert_file` is what ``senet convert`` does: read a .pth (with ``weights_only=True``, never unpickling code) or
safetensors file, recognise its layout (`senet.weights.get_layout`), build the senet model with the options that
layout computes with, load every tensor exactly (`senet.weights.load_weights`), and save it as safetensors with
senet's metadata: what rebuilds the model, and the preprocessing the weights expect. `state_dict_model` is what
``senet eval`` does with a plain state dict in senet's own layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from .data import Preprocess
from .factory import create_model, default_preprocess, model_metadata
from .files import refuse_overwrite, save_weights
from .validate import check_normalisation
from .weights import (
    KNOWN_WEIGHTS,
    ConversionError,
    get_layout,
    imagenet_classes,
    load_weights,
    model_options,
    read_source,
    senet_name,
)

__all__ = ["Converted", "convert_file", "state_dict_model"]


class Converted(NamedTuple):
    """What `convert_file` wrote: the senet model, the layout it read, the options that layout asked for, and the
    number of tensors of the source."""

    model: str
    layout: str
    options: dict[str, Any]
    tensors: int


def convert_file(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    layout: str = "auto",
    model: str | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    input_size: int | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
) -> Converted:
    """Convert the weights file ``src`` into a senet weights file ``out`` (safetensors, written atomically).

    Args:
        src: a .pth / .safetensors state dict of any layout in `senet.weights.LAYOUTS`.
        out: the senet weights file to write; never one of the inputs or a run folder's own file.
        layout: the layout of ``src``, or ``"auto"`` to recognise it from its key names.
        model: the senet model (see `senet.list_models`); None for the layout's own, where it has one.
        num_classes: classifier outputs (None: the model's, 1000).
        in_chans: input channels of the weights' stem (None: 3); weights for another number than the layout's
            images (e.g. a grayscale fine-tune) need ``mean`` and ``std`` with one value per channel.
        mean, std, input_size, crop_pct, interpolation: the preprocessing recorded with the weights; each left None
            comes from the first that says it: a published file's own (recognised by its name), the layout's input
            or a senet file's record, the model's default.

    For ImageNet weights (1000 outputs) of another layout the file also records ImageNet's class names. Raises
    ValueError for a layout without a model and no ``model``, bad preprocessing, or an ``out`` that would destroy
    something; `senet.weights.ConversionError` for missing, unexpected or misshapen keys, or weights no senet model
    reproduces.
    """
    refuse_overwrite(out, {"weights file to convert": src})
    state, recorded = read_source(src)  # recorded: a senet file's own metadata (mean, std, classes, ...)
    spec = get_layout(layout, state)
    name = model or spec.model
    if name is None:
        raise ValueError(f"{src!r} holds {spec.source} weights of the ResNet family; name the senet model "
                         "with --model (e.g. se_resnet50)")  # fmt: skip
    options = model_options(name, spec.name, state)
    net = create_model(name, num_classes=num_classes, in_chans=in_chans or 3, **options)
    try:
        load_weights(net, state, spec.name)
    except ConversionError as e:
        channels = _stem_channels(net, state, spec.name)
        if in_chans is None and channels not in (None, net.in_chans):  # the same error, with the fix
            e.args = (f"{e}; the weights' stem takes {channels}-channel images: convert with --in-chans {channels} "
                      f"and --mean/--std of {channels} value(s)",)  # fmt: skip
        raise
    meta = getattr(net, "weights_meta", None) or recorded
    # The preprocessing, each part from the first that says it: the arguments, a published file's own (recognised by
    # its name), the layout's input or the senet file's record, the model's default.
    known = [w.metadata() for w in KNOWN_WEIGHTS if w.filename == Path(src).name]
    given = {"mean": mean, "std": std, "input_size": input_size, "crop_pct": crop_pct, "interpolation": interpolation}
    layers = [default_preprocess(name, net.in_chans), meta, *known, {k: v for k, v in given.items() if v is not None}]
    merged = {k: v for layer in layers for k, v in _preprocess_keys(layer).items()}
    check_normalisation(merged["mean"], merged["std"], net.in_chans, "--mean/--std:")
    pre = Preprocess.from_metadata(merged)
    rebuilt = ["layout", "source", "source_layout", "name", "options", "num_classes", "in_chans", "input_size"]
    rebuilt += pre.metadata()  # written anew below
    extra = {k: v for k, v in meta.items() if k not in rebuilt} | pre.metadata()
    if net.num_classes == 1000 and spec.name != "senet":
        extra["classes"] = list(imagenet_classes())
    save_weights(out, net, model_metadata(net, source=str(src), source_layout=spec.name, **extra))
    return Converted(name, spec.name, options, len(state))


def _preprocess_keys(meta: dict) -> dict:
    """The preprocessing a metadata record states (its ``image_size`` as ``input_size``)."""
    out = {k: meta[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation") if meta.get(k) is not None}
    if meta.get("image_size") is not None:
        out["input_size"] = meta["image_size"]
    return out


def state_dict_model(path: str | os.PathLike, name: str | None, *, num_classes: int, in_chans: int = 3) -> nn.Module:
    """The model ``name`` with the weights of ``path``, a plain PyTorch state dict in senet's own layout (read with
    ``weights_only=True``, every key checked). Weights of another layout (torchvision, timm, Caffe ports) need the
    options and input normalisation that `convert_file` records: ValueError naming ``senet convert``."""
    convert = f"convert it first: senet convert {path} --model MODEL --num-classes {num_classes} --out W.safetensors"
    if not name:
        raise ValueError(f"{path!r} is a PyTorch state dict without senet metadata; name its model with --model, or "
                         f"{convert}")  # fmt: skip
    tensors, _ = read_source(path)
    layout = get_layout("auto", list(tensors))
    if layout.name != "senet":  # the file's own head sets the class count to convert with, not the data's
        head = _head_classes(tensors)
        classes = f" --num-classes {head}" if head is not None else ""
        convert = f"convert it first: senet convert {path} --model MODEL{classes} --out W.safetensors"
        raise ValueError(f"{path!r} holds {layout.source} weights ({layout.name} layout), which senet eval does not "
                         f"read directly; {convert.replace('MODEL', name)}, then senet eval W.safetensors")  # fmt: skip
    return load_weights(create_model(name, num_classes=num_classes, in_chans=in_chans), path, "senet")


# The classifier's weight in the layouts senet reads (torchvision, timm, Cadene's and the Caffe ports).
_HEAD_KEYS = ("fc.weight", "last_linear.weight", "classif.weight", "classifier.weight", "classifier.6.weight",
              "head.fc.weight")  # fmt: skip


def _head_classes(tensors: dict) -> int | None:
    """The number of outputs of the classifier in a state dict of another layout, or None where none is found."""
    for key in _HEAD_KEYS:
        w = tensors.get(key)
        if w is not None and w.ndim == 2:
            return int(w.shape[0])
    return None


def _stem_channels(net: nn.Module, state: dict, layout: str) -> int | None:
    """The input channels of ``state``'s tensor for ``net``'s first convolution (None where it has none)."""
    first = next((f"{n}.weight" for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
    for key, value in state.items():
        if senet_name(key, layout) == first and getattr(value, "ndim", 0) == 4:
            return int(value.shape[1])
    return None
