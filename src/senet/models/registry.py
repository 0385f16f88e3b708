"""The model registry: every network by name, each SE model beside its plain twin.

A family registers a pair with `register_twins`: one builder ``build(se, *, num_classes, in_chans, **arch)`` makes
both, with ``se=None`` for the plain twin, and a one-line summary of each. `build_model` checks the options where
the user passed them (the SE options, `SE_OPTIONS`, are accepted by SE models only, architecture options by both)
and builds the network with fresh weights; `senet.create_model` builds on it and loads published weights.

This module is the bottom of the model zoo: it knows nothing of weights files, downloads or training.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..layers import UNIT_TYPES, AttentionUnit, SEConfig

__all__ = [
    "SE_OPTIONS",
    "ModelEntry",
    "build_model",
    "get_entry",
    "list_models",
    "register_attention_model",
    "register_twins",
]

# Keyword options of every SE model, mapped onto SEConfig (see SEConfig.from_options). ``attention`` puts another
# unit where SE sits (senet.layers.attention), placed and staged by the same options.
SE_OPTIONS = (
    "r", "se_reduced", "se_rounding", "se_squeeze", "se_gate", "se_bias", "se_conv", "se_position", "se_stages",
    "se_init", "attention", "attention_options",
)  # fmt: skip
# The options of the SE unit itself (its bottleneck, squeeze, gate, layers): a model's default for one of them (the
# source notes' SE-ResNet-18 builds SE with 1×1 convolutions) describes its SE unit and does not apply to another.
_SE_UNIT_OPTIONS = ("se_reduced", "se_rounding", "se_squeeze", "se_gate", "se_bias", "se_conv")
_COMMON = ("num_classes", "in_chans")


@dataclass(frozen=True)
class ModelEntry:
    """One registered network."""

    name: str
    family: str
    has_se: bool
    twin: str  # the plain model of an SE model, and the SE model of a plain one
    build: Callable[..., nn.Module]
    arch_options: tuple[str, ...]  # options besides num_classes, in_chans and the SE ones
    input_size: tuple[int, int, int]  # the size the paper measures it at
    summary: str  # one line: what the network is, its paper and table
    family_doc: str  # the builder's docstring, shared by the pair
    se_defaults: tuple[tuple[str, object], ...] = ()  # SE options this model defaults differently

    @property
    def doc(self) -> str:
        """The summary, then the family's description (what `senet models` and ``torch.hub.help`` show)."""
        return f"{self.summary}\n\n{self.family_doc}" if self.family_doc else self.summary

    @property
    def options(self) -> tuple[str, ...]:
        return self.arch_options + (SE_OPTIONS if self.has_se else ())

    def defaults(self) -> dict[str, Any]:
        """Every option this model takes with its default value (an option without a default is left out)."""
        out = {}
        builders = [self.build, SEConfig.from_options] if self.has_se else [self.build]
        for build in builders:
            for k, p in inspect.signature(build).parameters.items():
                if k in self.options and p.default is not inspect.Parameter.empty:
                    out[k] = p.default
        return out | dict(self.se_defaults)

    def non_default_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` without those that equal the model's defaults: one spelling for one network, so that
        ``{"r": 16}``, ``{"se_gate": "sigmoid"}`` and ``{}`` all name the default SE-ResNet."""
        defaults = self.defaults()
        same = lambda k, v: k in defaults and _plain(v) == _plain(defaults[k])  # noqa: E731
        return {k: v for k, v in options.items() if not same(k, v)}

    def shared_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The part of options meant for a whole comparison that this model takes: SE options go to SE models only."""
        return dict(options) if self.has_se else {k: v for k, v in options.items() if k not in SE_OPTIONS}


def _plain(value: Any) -> Any:
    """A value as a YAML/JSON round trip gives it back: tuples become lists."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


_REGISTRY: dict[str, ModelEntry] = {}


def register_twins(
    se_name: str,
    plain_name: str,
    build: Callable[..., nn.Module],
    *,
    family: str,
    summaries: tuple[str, str],
    input_size: tuple[int, int, int] = (3, 224, 224),
    se_defaults: dict[str, object] | None = None,
) -> None:
    """Register an SE model and its plain twin, both made by ``build(se, *, num_classes, in_chans, **arch)``.

    Args:
        summaries: one line for the SE model and one for its twin: what each is, with its paper and table.
        input_size: the input the paper measures the network at (C, H, W).
        se_defaults: SE options this model defaults differently from `SEConfig` (e.g. ``{"se_conv": True}``).

    Raises ValueError if either name is taken or a summary is empty.
    """
    params = inspect.signature(build).parameters
    arch = tuple(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in _COMMON)
    for name, summary in zip((se_name, plain_name), summaries, strict=True):
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered (by family {_REGISTRY[name].family!r})")
        if not summary.strip():
            raise ValueError(f"model {name!r} needs a one-line summary (what it is, its paper and table)")
    family_doc = inspect.getdoc(getattr(build, "func", build)) or ""  # a functools.partial's function
    defaults = tuple((se_defaults or {}).items())
    if any(k not in SE_OPTIONS for k, _ in defaults):
        raise ValueError(f"se_defaults {dict(defaults)} may only set {SE_OPTIONS}")
    se_summary, plain_summary = summaries
    common = (build, arch, input_size)
    _REGISTRY[se_name] = ModelEntry(se_name, family, True, plain_name, *common, se_summary, family_doc, defaults)
    _REGISTRY[plain_name] = ModelEntry(plain_name, family, False, se_name, *common, plain_summary, family_doc)


def register_attention_model(name: str, se_name: str, attention: str, *, summary: str, **options: object) -> None:
    """Register ``name`` as the SE model ``se_name`` with ``attention`` in place of SE (``create_model(se_name,
    attention=attention, **options)``), for a network published under a name of its own (timm's ECA-ResNets).

    Its plain twin is ``se_name``'s; ``options`` (SE options only) become its defaults. Raises ValueError if the
    name is taken, ``se_name`` is not an SE model or an option is not an SE option.
    """
    base = get_entry(se_name)
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered (by family {_REGISTRY[name].family!r})")
    if not base.has_se:
        raise ValueError(f"{se_name!r} is a plain model; an attention model is built on an SE model")
    defaults = dict(base.se_defaults) | options | {"attention": attention}
    if any(k not in SE_OPTIONS for k in defaults):
        raise ValueError(f"options {options} may only set {SE_OPTIONS}")
    SEConfig.from_options(**defaults)  # a bad default fails at import, not when the model is built
    _REGISTRY[name] = ModelEntry(
        name, base.family, True, base.twin, base.build, base.arch_options, base.input_size, summary,
        base.family_doc, tuple(defaults.items()),
    )  # fmt: skip


def list_models(
    pattern: str = "*", *, se: bool | None = None, family: str | None = None, sort: bool = True
) -> list[str]:
    """Names matching a shell-style ``pattern``, sorted (or in registration order with ``sort=False``).

    ``se=True``/``False`` keeps SE or plain models only; ``family`` one family ("resnet", "cifar", ...).
    """
    names = [
        name
        for name, e in _REGISTRY.items()
        if fnmatch.fnmatchcase(name, pattern)
        and (se is None or e.has_se == se)
        and (family is None or e.family == family)
    ]
    return sorted(names) if sort else names


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; ValueError naming close matches if there is none."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        hints = difflib.get_close_matches(name, _REGISTRY, n=4, cutoff=0.5)
        hint = f"close matches: {', '.join(hints)}" if hints else "no close matches"
        raise ValueError(f"unknown model {name!r}; {hint}; see senet.list_models()") from None


def build_model(name: str, *, num_classes: int | None = None, in_chans: int = 3, **options) -> nn.Module:
    """Build a registered model with fresh weights (`senet.create_model` without ``weights``).

    Records ``model.model_name`` and ``model.model_config`` (what rebuilds it: name, options, classes, channels).

    Raises:
        ValueError: unknown name (close matches named) or a bad option value.
        TypeError: an option the model does not take (the valid ones named).
    """
    entry = get_entry(name)
    unknown = [k for k in options if k not in entry.options]
    if unknown:
        why = " (SE options belong to SE models)" if any(k in SE_OPTIONS for k in unknown) else ""
        raise TypeError(
            f"create_model({name!r}) got unexpected option(s) {', '.join(map(repr, unknown))}{why}; "
            f"valid options: {', '.join(_COMMON + entry.options)}"
        )
    for key, value, least in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            what = (
                "an int >= 0 (0: no classifier, the model returns its pooled features)"
                if least == 0
                else "a positive int"
            )
            raise ValueError(f"{key}={value!r} must be {what}")
    config = {"name": name, "in_chans": in_chans, "options": dict(options)}
    if num_classes is not None:
        options["num_classes"] = num_classes
    given = {k: options.pop(k) for k in SE_OPTIONS if k in options}
    defaults = dict(entry.se_defaults)
    if given.get("attention", defaults.get("attention", "se")) != "se":  # the model's SE-unit defaults stay with SE;
        defaults = {k: v for k, v in defaults.items() if k not in _SE_UNIT_OPTIONS}  # the user's own are refused
    se_kw = defaults | given
    se = SEConfig.from_options(**se_kw) if entry.has_se else None
    model = entry.build(se, in_chans=in_chans, **options)
    for m in model.modules():  # after the family's own initialisation, which may touch the units' layers
        if isinstance(m, AttentionUnit):
            m.reset_parameters()  # each unit starts as its authors' code starts it
        if se is not None and se.init == "identity" and isinstance(m, UNIT_TYPES):
            m.reset_to_identity()
    model.model_name = name
    model.model_config = {**config, "num_classes": model.num_classes}  # what rebuilds it (see senet.factory)
    return model
