"""Making models: `create_model` builds a registered network and loads published weights into it when asked;
`load_model` rebuilds the network a senet weights file describes. The one place where models meet weights.

A model made here carries ``model.model_config`` (its name, options, classes and input channels); `model_metadata`
writes that into a weights file, so that `load_model` can build the same network again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .constants import GOOD_STATE_FILE, LAST_FILE, STATE_FILE
from .files import read_weights, safe_torch_load
from .models import FeatureNet, build_model
from .validate import check_weights_metadata
from .weights import convert_state_dict, fetch, get_weights, load_weights

__all__ = ["create_model", "load_model", "model_metadata", "weights_file"]


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    weights: str | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered model with fresh weights, or with published ones (``weights``); or its feature maps.

    Args:
        name: a name from `senet.list_models()`, e.g. ``"se_resnet50"`` or its plain twin ``"resnet50"``.
        num_classes: outputs of the classifier; by default the model's dataset's (1000 for ImageNet models, 10 for
            the CIFAR ones), or the weights'. With published weights, another number keeps the pretrained features
            and starts a new classifier (``fc``).
        in_chans: input channels (1 for grayscale).
        weights: ``"DEFAULT"`` or a tag of `senet.list_weights(name)`: download (torch.hub's cache, checksum
            checked), convert and load the published weights; ``model.weights_meta`` then records their
            normalisation and origin (`senet.weights.KnownWeights.metadata`).
        features_only: return the network's feature maps instead of its classes: a `senet.models.FeatureNet`,
            whose forward returns a list of maps (timm's ``features_only``); ``model.feature_info`` gives the
            channels and stride of each. Published weights are loaded first, the classifier then removed.
        out_indices: which maps (indices into the network's ``feature_info``; an int n: the last n); default all.
        **options: architecture options of the family (e.g. ``layout="v1.5"``, ``drop_rate=0.2``) and, for SE
            models, the SE options: ``r`` (one ratio, or one per stage), ``se_position`` (standard, pre, post,
            identity, after_3x3), ``se_stages`` (1-based stages with SE), ``se_squeeze``, ``se_gate``,
            ``se_rounding``, ``se_reduced``, ``se_bias``, ``se_conv``, ``se_init`` (``"identity"``: every unit
            starts with its gate exactly 1; needs ``se_gate="sigmoid_x2"`` or ``"relu"``), and ``attention``: one
            of SE's successors in SE's place (``"eca"``, ``"cbam"``, ``"ge"``, ``"gc"``, ``"srm"``, ``"coord"``,
            ``"fca"``, ``"ese"``, ``"simam"``, ``"triplet"``; `senet.layers.attention`) with its own options in
            ``attention_options``, placed by ``se_position`` and ``se_stages`` (docs/attention.md).

    Raises:
        ValueError: unknown name (close matches named), a bad option value, or options the weights do not fit.
        TypeError: an option the model does not take (the valid ones named).
    """
    if out_indices is not None and not features_only:
        raise ValueError(f"out_indices={out_indices!r} chooses feature maps: pass features_only=True with it")
    model = _create(name, num_classes, in_chans, weights, options)
    return FeatureNet(model, out_indices) if features_only else model


def _create(name: str, num_classes: int | None, in_chans: int, weights: str | None, options: dict) -> nn.Module:
    if weights is None:
        return build_model(name, num_classes=num_classes, in_chans=in_chans, **options)
    spec = get_weights(name, weights)
    if in_chans != 3:
        raise ValueError(f"{spec.name} are weights for RGB input; use in_chans=3 (repeat a grey channel 3 times)")
    for key, value in spec.options.items():
        if key in options and options[key] != value:
            raise ValueError(f"{spec.name} need {key}={value!r}; got {key}={options[key]!r}")
    num_classes = spec.num_classes if num_classes is None else num_classes
    model = build_model(name, num_classes=num_classes, in_chans=in_chans, **{**options, **spec.options})
    new_head = model.num_classes != spec.num_classes
    load_weights(model, safe_torch_load(fetch(spec)), spec.layout, skip=("fc.",) if new_head else ())
    model.weights_meta = spec.metadata()
    return model


def model_metadata(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """What rebuilds ``model`` (made by `create_model`) plus ``extra`` facts (mean, std, classes, ...)."""
    config = getattr(model, "model_config", None)
    if config is None:
        raise ValueError(f"{type(model).__name__} was not made by senet.create_model; its weights cannot be rebuilt")
    return {**config, **extra}


def weights_file(path: str | os.PathLike) -> Path:
    """The weights file ``path`` names: itself, or a run folder's ``last.safetensors``."""
    path = Path(path)
    if path.name in (STATE_FILE, GOOD_STATE_FILE):
        raise ValueError(f"{str(path)!r} is a training state (for --resume); use {LAST_FILE} or the run folder")
    return path / LAST_FILE if path.is_dir() else path


def load_model(path: str | os.PathLike, **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a senet weights file (or a run folder) describes and load its weights (strictly).

    Returns (model, metadata). ``overrides`` replace options the file records.

    Raises:
        ValueError: the file is not a senet weights file, or its tensors do not fit the model it names (each key
            named: missing, unexpected, or of another shape or kind).
    """
    path = weights_file(path)
    tensors, meta = read_weights(path)
    if not meta:
        raise ValueError(f"{str(path)!r} has no senet metadata; load it into a model with senet.load_weights")
    meta = check_weights_metadata(meta, repr(str(path)))
    options = {**meta.get("options", {}), **overrides}
    # The model the metadata describes, first without memory (the meta device): its tensors are checked against
    # the file's, so metadata that describes another or a huge network is refused before anything is allocated.
    with torch.device("meta"):
        shape = create_model(meta["name"], num_classes=meta["num_classes"], in_chans=meta["in_chans"], **options)
    convert_state_dict(tensors, shape, "senet", what=repr(str(path)))
    model = create_model(meta["name"], num_classes=meta["num_classes"], in_chans=meta["in_chans"], **options)
    model.load_state_dict(convert_state_dict(tensors, model, "senet", what=repr(str(path))), strict=True)
    return model, meta
