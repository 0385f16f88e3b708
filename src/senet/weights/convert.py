"""Weights from the layouts people hold, converted into senet's models exactly, or refused.

The paper's SE models were released as Caffe models (paper §6.1, ILSVRC 2017); most people hold them in one of
these PyTorch layouts, each of which `load_weights` converts into senet's models:

* ``"caffe"``: the widely used PyTorch port of the released Caffe models (Cadene's ``pretrainedmodels``), which
  timm keeps as ``legacy_seresnet*`` / ``legacy_seresnext*`` / ``legacy_senet154``: ``layer0.{conv1,bn1}``
  (SENet-154: ``conv1..3``, ``bn1..3``), ``layerN.M.se_module.{fc1,fc2}`` as 1×1 convolutions, ``last_linear``.
  Loads into senet's ``layout="original"`` (stride on the first 1×1 of SE-ResNet bottlenecks, ceil-mode pool).
* ``"timm"``: timm's ``seresnet*`` / ``seresnext*``: torchvision's names with ``layerN.M.se.{fc1,fc2}`` as 1×1
  convolutions; loads into ``layout="v1.5"`` (timm rounds C/r to a multiple of 8: ``se_rounding="round8"``).
  Its ResNet-D models (``ecaresnet50d``: a deep stem ``conv1.{0,1,3,4,6}`` and ``bn1``, average-pool shortcuts)
  load into senet's ResNet-D twins; the attention units timm has (`convert_timm_unit`) are renamed within blocks.
  timm's tiered-stem ResNets (``*t``) and its ByobNet models (``gcresnet50t``, ``eca_resnet33ts``, ...) compute
  other networks and are refused.
* ``"torchvision"``: torchvision's ``resnet*`` / ``resnext*``, loaded into senet's plain twins, ``layout="v1.5"``.
* ``"senet"``: senet's own names (a safetensors file written by senet).

Nothing is dropped silently: a key of the file that has no place in the model, a weight the file lacks, or a shape
that differs is reported by name (`ConversionError`). The only entries filled in are BatchNorm's
``num_batches_tracked`` counters, which the old Caffe-port files predate and which hold no weights. Weights whose
source network computes another function than the senet model they fit (every shape equal) are refused.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..files import looks_like_pickle, read_weights, safe_torch_load
from ..layers import UNIT_TYPES, SqueezeExcite
from ..layers.attention import CBAM, ECA, CoordinateAttention, EffectiveSE, GatherExcite, GlobalContext
from ..models import get_entry

__all__ = [
    "LAYOUTS",
    "ConversionError",
    "convert_state_dict",
    "convert_timm_unit",
    "detect_layout",
    "load_weights",
    "model_options",
    "read_state",
]

LAYOUTS = ("senet", "caffe", "timm", "torchvision")
# The senet `layout` option a model needs to compute what the source's code computes (see models/resnet.py).
MODEL_LAYOUT = {"caffe": "original", "timm": "v1.5", "torchvision": "v1.5"}


class ConversionError(ValueError):
    """Weights that do not fit a model; ``missing``, ``unexpected`` and ``mismatched`` list the keys by name."""

    def __init__(self, what: str, missing: list[str], unexpected: list[str], mismatched: list[str], hint: str = ""):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        for label, keys in (("missing from the file", missing), ("not in the model", unexpected),
                            ("shape differs", mismatched)):  # fmt: skip
            if keys:
                more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:8])}{more}")
        super().__init__(f"{what}: {'; '.join(parts)}{hint}")


# timm's deep stem (ResNet-D: conv1 = Sequential(conv, BN, ReLU, conv, BN, ReLU, conv), then bn1) in senet's names.
_DEEP_STEM = {"conv1.0.": "stem.conv1.", "conv1.1.": "stem.bn1.", "conv1.3.": "stem.conv2.", "conv1.4.": "stem.bn2.",
              "conv1.6.": "stem.conv3.", "bn1.": "stem.bn3."}  # fmt: skip


def _rename(key: str, layout: str, deep_stem: bool = False) -> str:
    """senet's name for ``key`` of a ``layout`` state dict (``deep_stem``: timm's ResNet-D stem)."""
    if layout == "caffe":
        key = re.sub(r"^layer0\.", "stem.", key)  # layer0.conv1 → stem.conv1 (SENet-154: conv1..3)
        key = key.replace(".se_module.", ".se.")
        return re.sub(r"^last_linear\.", "fc.", key)
    if layout == "timm" and deep_stem:
        prefix = next((p for p in _DEEP_STEM if key.startswith(p)), None)
        return _DEEP_STEM[prefix] + key[len(prefix) :] if prefix else key
    if layout in ("timm", "torchvision"):
        return re.sub(r"^(conv1|bn1)\.", r"stem.\1.", key)  # the stem's conv and BN sit at the top level
    return key


# The attention units timm has, its module's name, and senet key prefix → timm key prefix within the unit (the rest
# of a key is the same). Each unit's docstring gives the options with which it computes timm's module's function.
_TIMM_UNITS: dict[type, tuple[str, dict[str, str]]] = {
    ECA: ("EcaModule", {}),
    CBAM: (
        "CbamModule",
        {
            "fc1.": "channel.fc1.",
            "fc2.": "channel.fc2.",
            "spatial.": "spatial.conv.conv.",
            "spatial_bn.": "spatial.conv.bn.",
        },
    ),
    GatherExcite: ("GatherExcite", {}),
    GlobalContext: ("GlobalContext", {}),
    CoordinateAttention: ("CoordAttn", {}),
    EffectiveSE: ("EffectiveSEModule", {}),
}


def _unit_renames(model: nn.Module) -> dict[str, str]:
    """timm's key → senet's key for the parameters of every attention unit in ``model`` (or ``model`` itself) that
    timm has (which no other renaming rule then touches)."""
    out = {}
    for name, m in model.named_modules():
        prefixes = _TIMM_UNITS.get(type(m), ("", None))[1]
        for key in m.state_dict() if prefixes is not None else ():
            theirs = next((t + key[len(o) :] for o, t in prefixes.items() if key.startswith(o)), key)
            out[f"{name}.{theirs}" if name else theirs] = f"{name}.{key}" if name else key
    return out


def _unit_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Where ``model``'s SE and attention units' keys start ("" for a bare unit)."""
    return tuple(f"{n}." if n else "" for n, m in model.named_modules() if isinstance(m, UNIT_TYPES))


def detect_layout(keys: Mapping[str, Any] | list[str]) -> str | None:
    """The layout whose names ``keys`` use, or None if none fits."""
    keys = list(keys)
    if any(k.startswith("stages.") for k in keys):
        raise ValueError(
            "these are weights of a timm ByobNet (gcresnet50t, gcresnext26ts, eca_resnet33ts, ...: keys "
            "'stem.conv1.conv', 'stages.N.M...'): another network, whose stem, blocks and placement of the unit no "
            "senet model has; use them with timm"
        )
    if any(k.startswith("stem.") for k in keys):
        return "senet"
    if any(k.startswith(("layer0.", "last_linear.")) or ".se_module." in k for k in keys):
        return "caffe"
    if "conv1.weight" in keys:
        return "timm" if any(".se." in k for k in keys) else "torchvision"  # torchvision has no SE
    if "conv1.0.weight" in keys:
        return "timm"  # a deep stem: timm's ResNet-D (ecaresnet50d, ...)
    return None


def _unwrap(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a checkpoint: a bare state dict, or one under "state_dict" / "model", minus DataParallel's
    "module." prefix."""
    for key in ("state_dict", "model"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"the checkpoint holds entries that are not tensors ({', '.join(map(str, bad[:5]))}); "
                         "pass its state dict of weights")  # fmt: skip
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _fits_as_linear(src: torch.Size, dst: torch.Size) -> bool:
    """An SE FC held as a 1×1 convolution (C', C, 1, 1) and as a linear layer (C', C) are the same weights."""
    return tuple(src[2:]) in ((1, 1), ()) and tuple(dst[2:]) in ((1, 1), ()) and src[:2] == dst[:2]


def convert_state_dict(
    state: Mapping[str, Any],
    model: nn.Module,
    layout: str = "auto",
    *,
    skip: tuple[str, ...] = (),
    what: str = "",
) -> dict[str, Tensor]:
    """``state`` (in ``layout``) as a complete state dict of ``model``.

    Args:
        layout: one of `LAYOUTS`, or ``"auto"`` to recognise it from the key names.
        skip: prefixes of senet keys left as the model has them and dropped from ``state``, e.g. ``("fc.",)`` to
            train a new classifier on pretrained features.
        what: how error messages name the weights (default: "the ``layout`` state dict").

    Raises:
        ConversionError: keys missing from the file, not in the model, or of another shape or kind (integer
            tensors for floating-point weights), each key in one category, all named.
    """
    tensors = _unwrap(state)
    if layout == "auto":
        layout = detect_layout(tensors) or ""
        if not layout:
            raise ValueError(f"cannot tell the layout of weights starting {list(tensors)[:3]}; pass layout= "
                             f"one of {LAYOUTS}")  # fmt: skip
    elif layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS} (or 'auto')")
    _check_same_function(tensors, layout)
    target = model.state_dict()
    out: dict[str, Tensor] = {}
    unexpected, mismatched, seen = [], [], set()
    units = _unit_renames(model) if layout == "timm" else {}
    in_unit = _unit_prefixes(model)
    deep_stem = "conv1.0.weight" in tensors
    for key, value in tensors.items():
        name = units.get(key) or _rename(key, layout, deep_stem)
        if name.startswith(skip):
            continue
        if name not in target:
            unexpected.append(key if name == key else f"{key} (as {name})")
            continue
        seen.add(name)
        want = target[name]
        if value.shape != want.shape:
            if name.startswith(in_unit) and name.endswith(".weight") and _fits_as_linear(value.shape, want.shape):
                value = value.reshape(want.shape)
            else:
                mismatched.append(f"{name} {tuple(value.shape)} in the file, {tuple(want.shape)} in the model")
                continue
        if value.is_floating_point() != want.is_floating_point():
            mismatched.append(f"{name} of dtype {value.dtype} in the file, {want.dtype} in the model")
            continue
        out[name] = value.to(want.dtype)
    missing = []
    for name, value in target.items():
        if name in out or name in seen:
            continue
        if name.endswith("num_batches_tracked") or name.startswith(skip):
            out[name] = value  # a counter, not a weight; or left as initialised on purpose
        else:
            missing.append(name)
    if missing or unexpected or mismatched:
        found = detect_layout(tensors)
        hint = f" (the keys look like layout={found!r}, not {layout!r})" if found not in (None, layout) else ""
        se_units = any(isinstance(m, SqueezeExcite) for m in model.modules())
        if se_units and any(".se." in m for m in mismatched) and layout == "timm":
            hint += " (timm rounds C/r to a multiple of 8: build the model with se_rounding='round8')"
        if mismatched and not missing and not unexpected and all(m.startswith("fc.") for m in mismatched):
            n = next(v.shape[0] for k, v in tensors.items() if _rename(k, layout) == "fc.weight")
            hint += (
                f" (only the classifier differs: the file has {n} classes; build the model with num_classes={n}, "
                "or pass skip=('fc.',) to start a new classifier)"
            )
        name = getattr(model, "model_name", "") or type(model).__name__
        what = what or f"the {layout} state dict"
        raise ConversionError(f"{what} does not fit {name}", missing, unexpected, mismatched, hint)
    return out


def convert_timm_unit(unit: nn.Module, state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict of timm's module for the same attention unit (``EcaModule``, ``CbamModule``, ...), renamed
    and reshaped for ``unit``, strictly (`ConversionError` names every key that does not fit).

    ``unit`` must be built with the options that make it compute timm's function (each class docstring says
    which); then ``unit.load_state_dict(convert_timm_unit(unit, timm_module.state_dict()))`` makes the two agree.
    """
    if type(unit) not in _TIMM_UNITS:
        names = ", ".join(f"{cls.__name__} ({timm})" for cls, (timm, _) in _TIMM_UNITS.items())
        raise ValueError(f"timm has no module for {type(unit).__name__}; conversions exist for {names}")
    what = f"timm's {_TIMM_UNITS[type(unit)][0]} state dict"
    return convert_state_dict(state, unit, "timm", what=what)


def _check_same_function(tensors: Mapping[str, Tensor], layout: str) -> None:
    """Refuse weights whose source network computes another function than any senet model with the same tensors,
    or that no senet model has (timm's tiered-stem ResNets, its ResNets with average-pool shortcuts on a 7×7 stem).

    The Caffe-port basic blocks (timm's ``legacy_seresnet18`` / ``legacy_seresnet34``) apply a ReLU to the branch
    before SE (conv-BN-ReLU-conv-BN-ReLU, SE, addition, ReLU); the paper's block, which senet builds, rescales the
    BN output itself. Every tensor has the same shape in both, so loading would succeed and compute something else.
    """
    basic = any(re.match(r"layer[1-4]\.\d+\.conv2\.weight$", k) for k in tensors) and not any(
        re.match(r"layer[1-4]\.\d+\.conv3\.weight$", k) for k in tensors
    )
    stem = tensors.get("conv1.0.weight")
    if layout == "timm" and stem is not None and stem.shape[0] != 32:
        raise ValueError(
            f"these are weights of a timm ResNet with a tiered deep stem (conv1.0 has {stem.shape[0]} filters, "
            "ResNet-T: ecaresnet26t, ecaresnet50t, seresnext26t_32x4d, ...); senet's ResNet-D stem has 32, and no "
            "senet model computes that network; use them with timm"
        )
    # an average-pool shortcut holds its 1×1 convolution second (torchvision's and timm's first)
    avg_down = any(re.match(r"layer\d+\.0\.downsample\.1\.weight$", k) and v.ndim == 4 for k, v in tensors.items())
    if layout in ("timm", "torchvision") and stem is None and avg_down:
        raise ValueError(
            "these are weights of a timm ResNet with average-pool shortcuts and a 7×7 stem (ecaresnetlight, ...), "
            "a network no senet model computes; senet's average-pool shortcuts come with the deep stem (resnet50d)"
        )
    if layout == "caffe" and basic:
        raise ValueError(
            "these are Caffe-port SE-ResNet-18/34 weights (timm's legacy_seresnet18/34), whose basic blocks apply a "
            "ReLU before SE; senet's se_resnet18/34 follow the paper (SE on the last BN's output), so they would "
            "compute a different function. Use timm's legacy_seresnet18/34 for these weights"
        )


def _check_model_layout(model: nn.Module, layout: str) -> None:
    """Raise unless ``model`` was built with the senet ``layout`` option that ``layout`` weights compute with.

    Strides and pooling differ between the layouts while every shape is the same, so loading would succeed and
    silently compute another function.
    """
    need = MODEL_LAYOUT.get(layout)
    config = getattr(model, "model_config", None)
    if need is None or config is None:
        return
    entry = get_entry(config["name"])
    if "layout" not in entry.arch_options:
        return
    have = config["options"].get("layout", inspect.signature(entry.build).parameters["layout"].default)
    if have != need:
        raise ValueError(
            f"{layout} weights compute with senet's layout={need!r} (strides and pooling), but this "
            f"{config['name']} has layout={have!r}; build it with create_model({config['name']!r}, layout={need!r})"
        )


def read_state(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a ``.pth`` file (read with ``weights_only=True``), a safetensors file or a checkpoint dict."""
    if isinstance(source, Mapping):
        return _unwrap(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}")
    if looks_like_pickle(path):
        return _unwrap(safe_torch_load(path))  # refuses anything that would run code
    return read_weights(path)[0]  # safetensors; a clear error if truncated or corrupt


def model_options(model: str, layout: str) -> dict[str, Any]:
    """The ``create_model`` options with which ``model`` computes what the code of ``layout`` weights computes."""
    entry = get_entry(model)
    options: dict[str, Any] = {}
    if layout in MODEL_LAYOUT and "layout" in entry.arch_options:
        options["layout"] = MODEL_LAYOUT[layout]  # strides and pooling
    if layout == "timm" and entry.has_se and entry.defaults().get("attention", "se") == "se":
        options["se_rounding"] = "round8"  # timm's reduced width: C/r to a multiple of 8
    return options


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    layout: str = "auto",
    *,
    skip: tuple[str, ...] = (),
) -> nn.Module:
    """Load weights of another layout (see the module docstring) into ``model``, strictly; returns ``model``.

    Args:
        source: a ``.pth`` file (read with ``weights_only=True``), a safetensors file, or a state dict.
        layout: ``"caffe"``, ``"timm"``, ``"torchvision"``, ``"senet"`` or ``"auto"`` (recognised from the names).
        skip: senet key prefixes to leave as initialised, e.g. ``("fc.",)`` for a new classifier.

    Raises:
        ConversionError: keys missing, unexpected or of another shape, all named.
        ValueError: the file is not a plain weights file, or the model's layout option does not fit the weights.
    """
    state = read_state(source)
    if layout == "auto":
        layout = detect_layout(state) or "auto"
    _check_model_layout(model, layout)
    what = repr(str(source)) if isinstance(source, (str, os.PathLike)) else ""
    model.load_state_dict(convert_state_dict(state, model, layout, skip=skip, what=what), strict=True)
    return model
