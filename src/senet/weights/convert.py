"""Weights from the layouts people hold, converted into senet's models exactly, or refused.

The paper's SE models were released as Caffe models (paper §6.1, ILSVRC 2017), and the plain baselines of every
family (BN-Inception, Inception-v3, Inception-ResNet-v2, VGG-16, MobileNet; paper Tables 2 and 3) are published by
torchvision, timm and Cadene's ``pretrainedmodels``. `senet.weights.layouts` describes each of their layouts as
data; this module recognises them (`detect_layout`), converts them (`convert_state_dict`) and loads them
(`load_weights`), all by the same code, with three guarantees:

* **Nothing is dropped silently.** A key of the file that has no place in the model, a weight the file lacks, or a
  shape that differs is reported by name (`ConversionError`), each key once. The only entries filled in are
  BatchNorm's ``num_batches_tracked`` counters, which old files predate and which hold no weights.
* **The model computes what the source computes.** Every ``create_model`` option that changes a network's function
  without changing a shape (strides, activations, SE's position, ...) must have the value the layout's network
  needs (`Layout.options`); otherwise the weights are refused with the ``create_model`` call to use. Options that
  change shapes are checked by the shapes, and options that act in training only cannot matter
  (`SHAPE_OR_TRAINING_OPTIONS`). So loading succeeds only where the model computes the reference's function; a file
  no senet model reproduces is refused with the reason (`Layout.refuse`).
* **Exact transformations only**: a linear layer held as a convolution (the same weights), BGR → RGB in a Caffe
  conv1 (a permutation), and a convolution bias before a BatchNorm folded into its running mean:
  BN(Wx + b) = γ (Wx + b − μ) / σ + β = γ (Wx − (μ − b)) / σ + β, in training mode too, where the batch mean
  absorbs b.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..files import looks_like_pickle, read_weights, safe_torch_load
from ..layers import UNIT_TYPES, SqueezeExcite
from ..layers.attention import CBAM, ECA, CoordinateAttention, EffectiveSE, GatherExcite, GlobalContext
from ..models import ModelEntry, get_entry
from .layouts import LAYOUT_TABLE, TIMM_UNIT, Layout

__all__ = [
    "LAYOUTS",
    "SHAPE_OR_TRAINING_OPTIONS",
    "ConversionError",
    "convert_state_dict",
    "convert_timm_unit",
    "detect_layout",
    "get_layout",
    "load_weights",
    "model_options",
    "read_state",
    "senet_name",
]

LAYOUTS = tuple(layout.name for layout in LAYOUT_TABLE)
_BY_NAME = {layout.name: layout for layout in LAYOUT_TABLE}

# create_model options that cannot make a model compute another function with the same tensors: they change shapes
# or names (a misfit is then named by key), act in training only, or choose between two forms of one function.
SHAPE_OR_TRAINING_OPTIONS = frozenset({
    "r", "se_reduced", "se_rounding", "se_bias", "se_conv", "se_stages", "se_init", "drop_rate", "block_drop_rate",
    "zero_init_last", "width_mult", "groups", "aux_logits", "conv_bias", "features_only", "out_indices",
})  # fmt: skip
# Why a layout's network needs an option (for the refusal's message).
_WHY = {
    ("relu_before_se", True): "basic blocks that apply a ReLU before SE, as timm's legacy_seresnet18/34, not the "
    "paper's block",
    ("layout", "original"): "strides and pooling of the released Caffe models",
    ("layout", "v1.5"): "strides and pooling of torchvision's ResNets",
    ("act", "relu6"): "ReLU6 after every BN",
    ("head", "dense"): "fc6 slides over the last map (VGG's dense evaluation)",
}  # fmt: skip


class ConversionError(ValueError):
    """Weights that do not fit a model; ``missing``, ``unexpected`` and ``mismatched`` list the keys by name, each
    key in one of them."""

    def __init__(self, what: str, missing: list[str], unexpected: list[str], mismatched: list[str], hint: str = ""):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        for label, keys in (("missing from the file", missing), ("not in the model", unexpected),
                            ("of another shape", mismatched)):  # fmt: skip
            if keys:
                more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:8])}{more}")
        super().__init__(f"{what}: {'; '.join(parts)}{hint}")


def senet_name(key: str, layout: str) -> str | None:
    """The name a ``layout`` state dict's ``key`` has in senet's models (``layer0.conv1.weight`` →
    ``stem.conv1.weight`` for ``"caffe"``), or None where it has no place in them; SE FCs keep their name in either
    of their two forms."""
    return get_layout(layout).rename(key)


def detect_layout(keys: Mapping[str, Any] | list[str]) -> str | None:
    """The layout (a name of `LAYOUTS`) whose names ``keys`` use, or None if none fits.

    Raises:
        ValueError: more than one layout fits (a defect of `senet.weights.layouts`, whose detectors are disjoint).
    """
    keys = list(keys)
    if keys and all(k.startswith("module.") for k in keys):
        keys = [k[len("module.") :] for k in keys]
    found = [layout.name for layout in LAYOUT_TABLE if layout.looks_like(keys)]
    if len(found) > 1:
        raise ValueError(f"the keys fit several layouts ({', '.join(found)}); pass layout= one of them")
    return found[0] if found else None


def get_layout(layout: str, keys: Mapping[str, Any] | list[str] = ()) -> Layout:
    """The `Layout` named ``layout``, or the one ``keys`` use for ``"auto"``.

    Raises:
        ValueError: an unknown name, a layout that cannot be told, or a file of the layout that no senet model
            reproduces (the reason named).
    """
    if layout == "auto":
        found = detect_layout(keys)
        if found is None:
            raise ValueError(f"cannot tell the layout of weights starting {list(keys)[:3]}; pass layout= one of "
                             f"{', '.join(LAYOUTS)}")  # fmt: skip
        layout = found
    if layout not in _BY_NAME:
        raise ValueError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)} (or 'auto')")
    spec = _BY_NAME[layout]
    # without keys: the layout itself (options, input); a file's mapping lets a rule read shapes
    why = spec.refuse(keys if isinstance(keys, Mapping) else list(keys)) if keys else ""
    if why:
        raise ValueError(f"{spec.source} weights are refused: {why}")
    return spec


def _unwrap(state: Any, what: str = "the checkpoint") -> dict[str, Tensor]:
    """The tensors of a checkpoint: a bare state dict, or one under "state_dict" / "model", minus DataParallel's
    "module." prefix. Anything but a mapping of str names to tensors is refused, naming what it holds."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{what} holds a {type(state).__name__}, not a state dict (names → tensors); pass a file "
                         "of model weights (a saved model.state_dict())")  # fmt: skip
    for key in ("state_dict", "model"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    odd = [k for k in state if not isinstance(k, str)]
    if odd:
        raise ValueError(f"{what} holds a {type(state).__name__} keyed by {type(odd[0]).__name__} ({odd[0]!r}), not a "
                         "state dict (names → tensors); pass a file of model weights")  # fmt: skip
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{what} holds entries that are not tensors ({', '.join(map(str, bad[:5]))}); "
                         "pass its state dict of weights")  # fmt: skip
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _same_weights(src: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    """A linear layer (O, C·k·k) and a k×k convolution (O, C, k, k) hold the same weights (C, k, k flattened in
    that order, as torch flattens a map), and so do a 1×1 convolution and a linear layer in either direction."""
    if len(src) == 4 and len(dst) == 2:
        src, dst = dst, src
    return len(src) == 2 and len(dst) == 4 and src[0] == dst[0] and src[1] == dst[1] * dst[2] * dst[3]


# ---------------------------------------------------------------------------------------------------------------------
# The function check: the model's options against those the layout's network computes with.


def _effective(entry: ModelEntry, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` that change the function (not `SHAPE_OR_TRAINING_OPTIONS`) and differ from the defaults."""
    return {k: v for k, v in entry.non_default_options(dict(options)).items() if k not in SHAPE_OR_TRAINING_OPTIONS}


def _check_function(model: nn.Module, spec: Layout, keys: list[str], need: Mapping[str, Any] | None = None) -> None:
    """Raise unless ``model`` computes what the network of ``spec``'s weights computes.

    ``need`` are the options the weights need (``spec.options`` by default; a senet file's own options). A model
    not made by `senet.create_model` carries no options to check: only the keys are checked then.
    """
    config = getattr(model, "model_config", None)
    if config is None:
        return
    name = config["name"]
    entry = get_entry(name)
    _check_model(name, spec, keys)
    need = spec.options(entry, keys) if need is None else need
    want, have = _effective(entry, need), _effective(entry, config["options"])
    if want == have:
        return
    differ = sorted(k for k in set(want) | set(have) if want.get(k, "default") != have.get(k, "default"))
    defaults = entry.defaults()
    parts = []
    for k in differ:
        value = want.get(k, defaults.get(k))
        why = _WHY.get((k, value))
        parts.append(f"{k}={value!r}" + (f" ({why})" if why else ""))
    got = ", ".join(f"{k}={have.get(k, defaults.get(k))!r}" for k in differ)
    raise ValueError(
        f"{spec.source} weights compute with {', '.join(parts)}, but this {name} has {got}: it would load them and "
        f"compute another function; build it with {_call(name, {**_shape_options(config['options']), **need})}"
    )


def _shape_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in SHAPE_OR_TRAINING_OPTIONS}


def _call(name: str, options: Mapping[str, Any]) -> str:
    return f"create_model({name!r}{''.join(f', {k}={v!r}' for k, v in options.items())})"


def model_options(model: str, layout: str, state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``create_model`` options with which ``model`` takes weights of ``layout`` and computes what their network
    computes; ``state`` (the weights) where they depend on the file (Inception-v3's auxiliary head)."""
    tensors = _unwrap(state) if state is not None else {}
    keys = list(tensors)
    spec = get_layout(layout, tensors)
    _check_model(model, spec, keys)
    return spec.options(get_entry(model), keys)


def _check_model(name: str, spec: Layout, keys: list[str]) -> None:
    """Raise unless ``name`` is the model of ``spec``'s weights (the layouts of one network name their model)."""
    if spec.model is not None and name != spec.model:
        why = " (the file holds no SE units)" if get_entry(name).twin == spec.model else ""
        options = spec.options(get_entry(spec.model), keys)
        raise ValueError(f"{spec.source} weights are weights of senet's {spec.model!r}, not {name!r}{why}; build it "
                         f"with {_call(spec.model, options)}")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Conversion


def convert_state_dict(
    state: Mapping[str, Any],
    model: nn.Module,
    layout: str = "auto",
    *,
    skip: tuple[str, ...] = (),
    what: str = "",
) -> dict[str, Tensor]:
    """``state`` (in ``layout``) as a complete state dict of ``model``, after checking that ``model`` computes what
    the weights' network computes (see the module docstring).

    Args:
        layout: one of `LAYOUTS`, or ``"auto"`` to recognise it from the key names.
        skip: prefixes of senet keys left as the model has them and dropped from ``state``, e.g. ``("fc.",)`` to
            train a new classifier on pretrained features. A `senet.models.FeatureNet` adds the prefixes of the
            modules it removed.
        what: how error messages name the weights (default: "the ``layout`` state dict").

    Raises:
        ConversionError: keys missing from the file, not in the model, or of another shape or kind (integer
            tensors for floating-point weights), each key in one category, all named.
        ValueError: the layout is unknown, cannot be told or is refused, or the model would compute another
            function (the ``create_model`` call to use named).
    """
    tensors = _unwrap(state)
    keys = list(tensors)
    spec = get_layout(layout, tensors)
    if spec.name != "senet":  # a bare senet state dict does not say which options it was made with
        _check_function(model, spec, keys)
    return _convert(tensors, model, spec, skip + tuple(f"{p}." for p in getattr(model, "removed", ())), what)


def _convert(
    tensors: dict[str, Tensor], model: nn.Module, spec: Layout, skip: tuple[str, ...], what: str
) -> dict[str, Tensor]:
    target = model.state_dict()
    units = _unit_prefixes(model)
    out: dict[str, Tensor] = {}
    unexpected, mismatched, seen = [], [], set()
    biases: dict[str, Tensor] = {}  # convolution biases to fold into the BN after them, by the BN's running mean
    for key, value in tensors.items():
        name = spec.rename(key)
        if name is not None and name.startswith(skip):
            continue
        if name is not None and name not in target and name.endswith(".conv.bias"):
            mean = name[: -len("conv.bias")] + "bn.running_mean"
            if mean in target and name[: -len("bias")] + "weight" in target:
                biases[mean] = value
                continue
        if name not in target:
            unexpected.append(key if name in (None, key) else f"{key} (as {name})")
            continue
        seen.add(name)
        want = target[name]
        value = spec.adjust(name, value)
        if value.shape != want.shape:
            in_unit = ".se." in name or name.startswith(units)  # SE's FCs (or another unit's) as 1×1 convolutions
            reshape = (in_unit or name in spec.flattened) and _same_weights(value.shape, want.shape)
            if not reshape:
                mismatched.append(f"{name} {tuple(value.shape)} in the file, {tuple(want.shape)} in the model")
                continue
            value = value.reshape(want.shape)
        if value.is_floating_point() != want.is_floating_point():
            mismatched.append(f"{name} of dtype {value.dtype} in the file, {want.dtype} in the model")
            continue
        out[name] = value.to(want.dtype)
    for mean, bias in biases.items():
        if mean in out and out[mean].shape == bias.shape:
            out[mean] = out[mean] - bias.to(out[mean].dtype)  # BN(Wx + b) with mean μ = BN(Wx) with mean μ − b
        elif mean in out:
            mismatched.append(f"{mean[: -len('bn.running_mean')]}conv.bias {tuple(bias.shape)} in the file, folded "
                              f"into {mean} {tuple(out.pop(mean).shape)}")  # fmt: skip
    missing = []
    for name, value in target.items():
        if name in out or name in seen:
            continue
        if name.endswith("num_batches_tracked") or name.startswith(skip):
            out[name] = value  # a counter, not a weight; or left as initialised on purpose
        else:
            missing.append(name)
    if missing or unexpected or mismatched:
        name = getattr(model, "model_name", "") or type(model).__name__
        what = what or f"the {spec.name} state dict"
        se = any(isinstance(m, SqueezeExcite) for m in model.modules())
        hint = _hint(tensors, spec, missing, unexpected, mismatched, se, name)
        raise ConversionError(f"{what} does not fit {name}", missing, unexpected, mismatched, hint)
    return out


def _hint(
    tensors: dict[str, Tensor],
    spec: Layout,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
    se: bool = True,
    model: str = "",
) -> str:
    """What to do about a misfit, where it has one likely cause (``se``: the model has SE units)."""
    hint = ""
    found = detect_layout(tensors)
    if found not in (None, spec.name):
        hint += f" (the keys look like layout={found!r}, not {spec.name!r})"
    if se and any(".se." in m for m in mismatched) and spec.name == "timm":
        hint += " (timm rounds C/r to a multiple of 8: build the model with se_rounding='round8')"
    names = missing + [m.split(" ")[0] for m in mismatched] + [u.rpartition("(as ")[2].rstrip(")") for u in unexpected]
    n = next((v.shape[0] for k, v in tensors.items() if spec.rename(k) == "fc.weight"), None)
    classes = (f"the file has {n} classes; build the model with num_classes={n} (senet convert: --num-classes {n}), "
               "or ") if n else ""  # fmt: skip
    if names and all(n.startswith("fc.") for n in names):
        hint += f" (only the classifier differs: {classes}pass skip=('fc.',) to start a new classifier)"
    elif names and all(n.startswith("aux.") for n in names):
        has = "holds" if any((spec.rename(k) or "").startswith("aux.") for k in tensors) else "holds no"
        hint += (f" (only the auxiliary classifier differs: the file {has} one; build the model with "
                 f"aux_logits={has == 'holds'}, or pass skip=('aux.',) to leave it as the model has it)")  # fmt: skip
    elif names and all(n.startswith(("fc.", "aux.")) for n in names):
        hint += (f" (only the classifier and the auxiliary classifier differ: {classes}pass skip=('fc.', 'aux.') to "
                 "start new ones)")  # fmt: skip
    elif names and not unexpected and not mismatched and all(".se." in n for n in names):
        try:
            twin = get_entry(model).twin
        except ValueError:  # a model senet did not make
            twin = None
        plain = f"use {twin!r}" if twin else "use the plain model"
        hint += (f" (the file holds no SE units: {plain}, or retrofit it: senet train --model {model} --init FILE "
                 "leaves the SE units new)")  # fmt: skip
    return hint


def _unit_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Where the keys of ``model``'s SE and attention units start ("" for a bare unit)."""
    return tuple(f"{n}." if n else "" for n, m in model.named_modules() if isinstance(m, UNIT_TYPES))


# The attention units timm has, by the name of its module (`senet.weights.layouts.TIMM_UNIT` renames their keys).
_TIMM_UNITS: dict[type, str] = {
    ECA: "EcaModule",
    CBAM: "CbamModule",
    GatherExcite: "GatherExcite",
    GlobalContext: "GlobalContext",
    CoordinateAttention: "CoordAttn",
    EffectiveSE: "EffectiveSEModule",
}


def convert_timm_unit(unit: nn.Module, state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict of timm's module for the same attention unit (``EcaModule``, ``CbamModule``, ...), renamed
    and reshaped for ``unit``, strictly (`ConversionError` names every key that does not fit).

    ``unit`` must be built with the options that make it compute timm's function (each class docstring says
    which); then ``unit.load_state_dict(convert_timm_unit(unit, timm_module.state_dict()))`` makes the two agree.
    """
    if type(unit) not in _TIMM_UNITS:
        names = ", ".join(f"{cls.__name__} ({timm})" for cls, timm in _TIMM_UNITS.items())
        raise ValueError(f"timm has no module for {type(unit).__name__}; conversions exist for {names}")
    if isinstance(unit, GatherExcite) and unit.gather_relu:  # same keys and shapes, another function
        raise ValueError("timm's GatherExcite θ⁺ has no ReLU between gather and excite; build the unit with "
                         "gather_relu=False to load its weights")  # fmt: skip
    return _convert(_unwrap(state), unit, TIMM_UNIT, (), f"timm's {_TIMM_UNITS[type(unit)]} state dict")


def read_state(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a ``.pth`` file (read with ``weights_only=True``), a safetensors file or a checkpoint dict."""
    return read_source(source)[0]


def read_source(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors of ``source`` and, for a safetensors file written by senet, its metadata ({} otherwise)."""
    if isinstance(source, Mapping):
        return _unwrap(source), {}
    path = Path(source)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder: pass a weights file (.pth, .safetensors); a senet run folder "
                         "needs no conversion (eval, predict, export and train --init take it as it is)")  # fmt: skip
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}")
    if looks_like_pickle(path):
        return _unwrap(safe_torch_load(path), repr(str(path))), {}  # refuses anything that would run code
    return read_weights(path)  # safetensors; a clear error if truncated or corrupt


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    layout: str = "auto",
    *,
    skip: tuple[str, ...] = (),
) -> nn.Module:
    """Load weights of any layout of `LAYOUTS` into ``model``, strictly; returns ``model``.

    Weights of another publisher set ``model.weights_meta``: the layout, its source and what the weights expect of
    their input (``mean`` and ``std`` for RGB in [0, 1], ``input_size``, a ``note`` where needed), which
    `senet.export` and `senet convert` record.

    Args:
        source: a ``.pth`` file (read with ``weights_only=True``), a safetensors file, or a state dict.
        layout: a name of `LAYOUTS` or ``"auto"`` (recognised from the names).
        skip: senet key prefixes to leave as initialised, e.g. ``("fc.",)`` for a new classifier.

    Raises:
        ConversionError: keys missing, unexpected or of another shape, all named.
        ValueError: the file is not a plain weights file; its layout is unknown, cannot be told or is refused; or
            the model would compute another function with these weights (the ``create_model`` call to use named).
    """
    tensors, meta = read_source(source)
    keys = list(tensors)
    spec = get_layout(layout, tensors)
    if spec.name != "senet":
        _check_function(model, spec, keys)
    elif meta.get("name") == getattr(model, "model_name", None):  # a senet file says what it computes
        _check_function(model, spec, keys, need=meta.get("options", {}))
    what = repr(str(source)) if isinstance(source, (str, os.PathLike)) else ""
    removed = tuple(f"{p}." for p in getattr(model, "removed", ()))
    model.load_state_dict(_convert(tensors, model, spec, skip + removed, what), strict=True)
    if spec.name != "senet":
        model.weights_meta = {"layout": spec.name, "source": spec.source, **spec.input}
    return model
