"""Making models: `create_model` builds a registered network (or, by ``LIBRARY:NAME``, one of torchvision's or timm's)
and loads published weights into it when asked; `load_model` rebuilds the network a senet weights file describes.
The one place where models meet weights.

A model made here carries ``model.model_config``, the record that rebuilds it: its name, options, classes and input
channels, and the `senet.add_se` calls made on it since (``add_se``); `model_metadata` writes that into a weights
file, so that `load_model` can build the same network again. ``model.pretrained_cfg`` holds its preprocessing in
timm's terms (input size, interpolation, crop, mean, std), so that ``timm.data.resolve_data_config(model=model)``
gives what its weights need.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .constants import CIFAR10_MEAN, CIFAR10_STD, GOOD_STATE_FILE, IMAGENET_MEAN, IMAGENET_STD, LAST_FILE, STATE_FILE
from .environment import require
from .files import read_weights, safe_torch_load
from .models import FeatureNet, build_model, get_entry
from .retrofit import add_se as _add_se
from .validate import check_weights_metadata
from .weights import convert_state_dict, fetch, get_weights, load_weights

__all__ = [
    "LIBRARIES", "check_rebuilds", "create_model", "default_preprocess", "load_model", "model_metadata", "weights_file",
    "weights_metadata",
]  # fmt: skip

LIBRARIES = ("torchvision", "timm")  # whose builders create_model("LIBRARY:NAME") calls
# Builder arguments that would fetch weights when a file is rebuilt; weights come from the file, or from --init.
_FETCHING = ("weights", "weights_backbone", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path")


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    weights: str | None = None,
    pretrained: bool | None = None,
    add_se: Sequence[Mapping[str, Any]] = (),
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered model with fresh weights, or with published ones (``weights``); or its feature maps.

    Args:
        name: a name from `senet.list_models()`, e.g. ``"se_resnet50"`` or its plain twin ``"resnet50"``; or
            ``"torchvision:NAME"`` / ``"timm:NAME"``: that library's builder (``torchvision.models.get_model_builder``,
            ``timm.create_model``) with ``options`` as its keyword arguments, recorded so that senet's weights files
            rebuild it (weights of its own are refused: load them with ``--init`` / `senet.transfer`).
        num_classes: outputs of the classifier; by default the model's dataset's (1000 for ImageNet models, 10 for
            the CIFAR ones), or the weights'. With published weights, another number keeps the pretrained features
            and starts a new classifier (``fc``).
            ``num_classes=0``: no classifier; the model returns its pooled features (timm's convention).
        in_chans: input channels (1 for grayscale).
        weights: ``"DEFAULT"`` or a tag of `senet.list_weights(name)`: download (torch.hub's cache, checksum
            checked), convert and load the published weights; ``model.weights_meta`` then records their
            normalisation and origin (`senet.weights.KnownWeights.metadata`).
        pretrained: ``weights="DEFAULT"`` (timm's spelling) unless ``weights`` names others; ``False`` with
            ``weights`` is a contradiction, refused.
        add_se: `senet.add_se` calls to make on the built model, each a dict of its arguments (``[{"r": 16}]``).
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
    if pretrained is not None and not isinstance(pretrained, bool):
        raise TypeError(f"pretrained={pretrained!r} must be True or False (or weights='DEFAULT' / a tag)")
    if pretrained is False and weights:  # weights="" means none, as everywhere
        raise ValueError(f"pretrained=False contradicts weights={weights!r}: drop one (pretrained=False builds "
                         "fresh weights, weights= loads published ones)")  # fmt: skip
    weights = weights or ("DEFAULT" if pretrained else None)
    if out_indices is not None and not features_only:
        raise ValueError(f"out_indices={out_indices!r} chooses feature maps: pass features_only=True with it")
    if ":" in name:
        if weights is not None:
            raise ValueError(f"{name} takes no senet weights; load weights into it with init= (senet train --init)")
        model = _from_library(name, num_classes, in_chans, options)
    elif weights is None:
        model = build_model(name, num_classes=num_classes, in_chans=in_chans, **options)
        model.pretrained_cfg = _pretrained_cfg(default_preprocess(name, in_chans))
    else:
        model = _published(name, weights, num_classes, in_chans, options)
    for call in add_se:
        _add_se(model, **call)
    return FeatureNet(model, out_indices) if features_only else model


def _published(name: str, weights: str, num_classes: int | None, in_chans: int, options: dict[str, Any]) -> nn.Module:
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
    model.pretrained_cfg = _pretrained_cfg(model.weights_meta)
    return model


def _from_library(name: str, num_classes: int | None, in_chans: int, options: dict[str, Any]) -> nn.Module:
    """``LIBRARY:NAME`` built by that library, with the record that rebuilds it."""
    library, _, builder = name.partition(":")
    if library not in LIBRARIES:
        raise ValueError(f"model {name!r}: the library before ':' must be one of {', '.join(LIBRARIES)}")
    fetching = [k for k in options if k in _FETCHING]
    if fetching:
        raise ValueError(f"{name}: {fetching[0]}= would fetch weights whenever the model is rebuilt; build it without "
                         "and load the weights with init= (senet train --init FILE)")  # fmt: skip
    if json.loads(json.dumps(options, default=repr)) != options:
        raise ValueError(f"{name}: options {options!r} must be plain data (numbers, strings, lists, mappings) so that "
                         "a weights file can record them")  # fmt: skip
    headless = library == "torchvision" and num_classes == 0  # torchvision would build Linear(features, 0)
    kwargs = dict(options) | ({} if num_classes is None or headless else {"num_classes": num_classes})
    if library == "torchvision":
        import torchvision

        names = torchvision.models.list_models()
        if builder not in names:
            hints = difflib.get_close_matches(builder, names, n=3)
            raise ValueError(f"torchvision has no model {builder!r}; close matches: {', '.join(hints) or 'none'}")
        if in_chans != 3:
            raise ValueError(f"{name} takes RGB input (in_chans=3); got in_chans={in_chans!r}")
        model = torchvision.models.get_model_builder(builder)(**kwargs)
        model.pretrained_cfg = _pretrained_cfg(_torchvision_preprocess(builder, options, model))
    else:
        timm = require("timm", "timm", f"{name} (a timm model)")
        if not timm.is_model(builder):
            hints = difflib.get_close_matches(builder, timm.list_models(), n=3)
            raise ValueError(f"timm has no model {builder!r}; close matches: {', '.join(hints) or 'none'}")
        model = timm.create_model(builder, pretrained=False, in_chans=in_chans, **kwargs)
    if num_classes is None:  # the builder's default: timm says it, torchvision's last linear layer has it
        linear = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
        num_classes = getattr(model, "num_classes", linear[-1] if linear else None)
    model.model_name = name
    model.model_config = {"name": name, "in_chans": in_chans, "options": dict(options), "num_classes": num_classes}
    _timm_head_methods(model, library)
    if headless:
        if not hasattr(model, "reset_classifier"):
            raise ValueError(f"{name} has no linear classifier to remove; num_classes=0 needs one")
        model.reset_classifier(0)
    return model


def _torchvision_preprocess(builder: str, options: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """A torchvision model's preprocessing in senet's terms: that of its ``DEFAULT`` weights' ``transforms()``
    (read, not downloaded: resnet18's resizes to 256 and crops 224, bilinear, ImageNet's mean and std), where the
    model as built takes that size; ImageNet's convention (224 of 256, bilinear) for a model without published
    classification weights. A model built for one input size (a ViT's ``image_size``) keeps its own: vit_h_14's
    DEFAULT weights are SWAG's at 518, which a ViT built without them refuses."""
    import torchvision

    pre = {"input_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "crop_pct": 0.875,
           "interpolation": "bilinear"}  # fmt: skip
    try:
        t = torchvision.models.get_model_weights(builder).DEFAULT.transforms()
        crop, resize = t.crop_size[0], t.resize_size[0]
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):  # no classification weights for this one
        t = None
    own = options.get("image_size", getattr(model, "image_size", None))
    if t is not None and (not isinstance(own, int) or own == crop):
        pre.update(input_size=crop, mean=list(t.mean), std=list(t.std), crop_pct=crop / resize,
                   interpolation=t.interpolation.value)  # fmt: skip
    if isinstance(own, int):
        pre["input_size"] = own
    return pre


def _last_linear(model: nn.Module) -> str | None:
    """The dotted name of a torchvision model's classifier: its last linear layer (``fc``, ``classifier.6``, ...)."""
    return next((n for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)), None)


def _timm_head_methods(model: nn.Module, library: str) -> None:
    """timm's classifier conventions on another library's model, keeping its record (``model_config``) true:
    ``get_classifier()``; ``reset_classifier(n)``, a new head of ``n`` outputs (0: ``nn.Identity``, the model
    returns the features its classifier read, e.g. a ResNet's pooled features); ``num_features``."""
    if library == "timm":  # timm's own methods; the record follows the head
        model.reset_classifier = types.MethodType(_timm_reset_classifier, model)
        return
    name = _last_linear(model)
    if name is None:  # not a classifier (a segmentation model): no head to give or replace
        return
    model._head_name = name
    model.num_features = model.get_submodule(model._head_name).in_features
    model.get_classifier = types.MethodType(_get_classifier, model)
    model.reset_classifier = types.MethodType(_reset_classifier, model)


def _timm_reset_classifier(self: nn.Module, num_classes: int, *args: Any, **kwargs: Any) -> None:
    type(self).reset_classifier(self, num_classes, *args, **kwargs)
    self.model_config = {**self.model_config, "num_classes": num_classes}


def _get_classifier(self: nn.Module) -> nn.Module:
    return self.get_submodule(self._head_name)


def _reset_classifier(self: nn.Module, num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes={num_classes!r} must be an int >= 0 (0: no classifier, the features)")
    parent, _, leaf = self._head_name.rpartition(".")
    head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
    setattr(self.get_submodule(parent) if parent else self, leaf, head)
    self.model_config = {**self.model_config, "num_classes": num_classes}


def default_preprocess(name: str, in_chans: int = 3) -> dict[str, Any]:
    """A registered model's preprocessing before any weights say otherwise: the input size the paper uses; ImageNet's
    evaluation crop (224 of 256) and normalisation for ImageNet models, CIFAR-10's whole images and normalisation
    for the CIFAR ones (paper Table 4); one channel takes the mean of the three."""
    entry = get_entry(name)
    cifar = entry.input_size[1] <= 32
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if cifar else (IMAGENET_MEAN, IMAGENET_STD)
    if in_chans != 3:
        mean, std = (sum(mean) / 3,) * in_chans, (sum(std) / 3,) * in_chans
    crop = 1.0 if cifar else 0.875
    return {"input_size": entry.input_size[1], "mean": list(mean), "std": list(std), "crop_pct": crop,
            "interpolation": "bilinear"}  # fmt: skip


def _pretrained_cfg(pre: Mapping[str, Any]) -> dict[str, Any]:
    """Preprocessing (``input_size`` or ``image_size``, ``mean``, ``std``, ``crop_pct``, ``interpolation``) in
    timm's ``pretrained_cfg`` terms."""
    side = pre.get("input_size", pre.get("image_size"))
    side = side[-1] if isinstance(side, (list, tuple)) else side
    return {"input_size": (len(pre["mean"]), side, side), "interpolation": pre.get("interpolation", "bilinear"),
            "mean": tuple(pre["mean"]), "std": tuple(pre["std"]), "crop_pct": pre.get("crop_pct", 1.0),
            "crop_mode": "center"}  # fmt: skip


def check_rebuilds(model: nn.Module) -> None:
    """Raise ValueError unless the record ``model.model_config`` rebuilds ``model`` exactly: the same modules with
    the same settings (their printed form) and tensors of the same names and shapes, built on the meta device."""
    name = getattr(model, "model_name", "") or type(model).__name__
    config = getattr(model, "model_config", None)
    if config is None:
        raise ValueError(f"{name} records no way to rebuild it, so its weights could not be evaluated, predicted or "
                         "exported: build it with senet.create_model (a senet name, or 'torchvision:NAME' / "
                         "'timm:NAME' with the builder's keyword arguments), then senet.add_se")  # fmt: skip
    with torch.device("meta"):
        again = _rebuild(config)
    have, want = model.state_dict(), again.state_dict()
    diff = [k for k in have.keys() | want.keys() if k not in have or k not in want or have[k].shape != want[k].shape]
    if diff:
        k = sorted(diff)[0]
        where = f"{tuple(have[k].shape) if k in have else 'absent'} in the model, " + (
            f"{tuple(want[k].shape)} as rebuilt" if k in want else "absent as rebuilt"
        )
        raise ValueError(f"{name} is no longer what its record (model_config) rebuilds: {k} {where}; make the change "
                         "through create_model's options (e.g. num_classes=) or reset_classifier")  # fmt: skip
    if repr(again) != repr(model):
        lines = itertools.zip_longest(repr(model).splitlines(), repr(again).splitlines(), fillvalue="")
        first = next((a, b) for a, b in lines if a != b)
        raise ValueError(f"{name} is no longer what its record rebuilds: {first[0].strip()!r} in the model, "
                         f"{first[1].strip()!r} as rebuilt")  # fmt: skip


def _rebuild(config: Mapping[str, Any], **overrides: Any) -> nn.Module:
    options = {**config.get("options", {}), **overrides}
    return create_model(config["name"], num_classes=config["num_classes"], in_chans=config["in_chans"],
                        add_se=config.get("add_se", ()), **options)  # fmt: skip


def model_metadata(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """What rebuilds ``model`` (made by `create_model`) plus ``extra`` facts (mean, std, classes, ...)."""
    config = getattr(model, "model_config", None)
    if config is None:
        check_rebuilds(model)  # the error that says how to make a model that can be rebuilt
    return {**config, **extra}


def weights_file(path: str | os.PathLike) -> Path:
    """The weights file ``path`` names: itself, or a run folder's ``last.safetensors``."""
    path = Path(path)
    if path.name in (STATE_FILE, GOOD_STATE_FILE):
        raise ValueError(f"{str(path)!r} is a training state (for --resume); use {LAST_FILE} or the run folder")
    if path.is_dir() and not (path / LAST_FILE).is_file():
        _not_a_finished_run(path)
    return path / LAST_FILE if path.is_dir() else path


def _not_a_finished_run(path: Path) -> None:
    """Refuse a folder without ``last.safetensors`` that holds runs (a `compare` or `ablate` folder: name a few of
    them) or is a run whose training has not saved its weights yet; any other folder gets the missing-file error."""
    runs = sorted(p.parent for pattern in (f"*/{LAST_FILE}", f"*/*/{LAST_FILE}") for p in path.glob(pattern))
    kinds = (("compare.json", "comparison (senet compare's output)"), ("study.json", "study (senet ablate's output)"))
    kind = next((k for f, k in kinds if (path / f).is_file()), "folder of runs" if runs else "")
    if kind:
        names = ", ".join(repr(str(r)) for r in runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        raise ValueError(f"{str(path)!r} is a {kind}, not a run folder; pass one of its runs"
                         + (f": {names}" if runs else " (none has saved its weights yet)"))  # fmt: skip
    if any((path / f).is_file() for f in ("config.yaml", STATE_FILE, "metrics.csv")):
        raise FileNotFoundError(f"{str(path)!r} is a run folder whose training has not saved its weights "
                                f"({LAST_FILE}) yet: let it finish an epoch, or continue a stopped run with senet "
                                f"train --resume {path}")  # fmt: skip


def weights_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The checked senet metadata of a weights file or run folder, as `load_model` reads it (what rebuilds the model,
    its preprocessing, classes and run), without building the model: for checks that come before any work."""
    path = weights_file(path)
    meta = read_weights(path)[1]
    if not meta:
        raise ValueError(f"{str(path)!r} has no senet metadata; load it into a model with senet.load_weights")
    return check_weights_metadata(meta, repr(str(path)))


def load_model(path: str | os.PathLike, **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a senet weights file (or a run folder) describes and load its weights (strictly).

    Returns (model, metadata). ``overrides`` replace options the file records. The model carries the file's
    preprocessing twice: ``model.pretrained_cfg`` (timm's terms) and ``model.weights_meta`` (the metadata beyond what
    rebuilds the model, ``input_size`` the size it was trained at), so that `senet.export` exports it as trained.

    Raises:
        ValueError: the file is not a senet weights file, or its tensors do not fit the model it names (each key
            named: missing, unexpected, or of another shape or kind).
    """
    path = weights_file(path)
    tensors, meta = read_weights(path)
    if not meta:
        raise ValueError(f"{str(path)!r} has no senet metadata; load it into a model with senet.load_weights")
    meta = check_weights_metadata(meta, repr(str(path)))
    # The model the metadata describes, first without memory (the meta device): its tensors are checked against
    # the file's, so metadata that describes another or a huge network is refused before anything is allocated.
    with torch.device("meta"):
        shape = _rebuild(meta, **overrides)
    convert_state_dict(tensors, shape, "senet", what=repr(str(path)))
    model = _rebuild(meta, **overrides)
    model.load_state_dict(convert_state_dict(tensors, model, "senet", what=repr(str(path))), strict=True)
    if "mean" in meta and "std" in meta and ("image_size" in meta or "input_size" in meta):
        model.pretrained_cfg = _pretrained_cfg(meta)
    model.weights_meta = _weights_meta(meta)
    return model, meta


_REBUILD_KEYS = ("name", "options", "num_classes", "in_chans", "add_se")  # model_config's: what rebuilds the model


def _weights_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a weights file says beyond what rebuilds its model, as ``model.weights_meta`` (published weights' form):
    the preprocessing, with the size the weights were trained at (a run's ``image_size``) as ``input_size``, which
    `senet.export` then exports at; the classes and the run's facts, which it records."""
    out = {k: v for k, v in meta.items() if k not in _REBUILD_KEYS}
    side = meta.get("image_size", meta.get("input_size"))
    if side is not None:
        out["input_size"] = side[-1] if isinstance(side, (list, tuple)) else side
    return out
