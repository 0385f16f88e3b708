"""Parameters, multiply-adds and activations of a network, counted the way the SE paper counts them (§4, Table 2).

Multiply-adds (MACs; the paper's "GFLOPs") are those of convolutions and linear layers, plus, for each SE unit, one
per element for the squeeze (global pooling) and one per element for the scale: SE-ResNet-50 is 3.860 GMACs of
convolutions and FCs plus 0.011 G of SE pooling and scaling, the paper's 3.87. BatchNorm, ReLU, the residual
additions and the other pooling layers are not counted, as in the paper and in ``torch.utils.flop_counter``.

The paper does not say how it counts the squeeze and scale, and rounds to 0.01 G; no single rule fits all its
increases. ResNet-101's +0.02 fits this count (+0.023; one MAC per element for both together gives +0.014), while
ResNet-152's +0.02, ResNeXt-101's +0.01 and the VGG-16, MobileNet and ShuffleNet increases fit the single count
(ResNet-152: +0.020 vs +0.033 here; VGG-16: 15.484 vs 15.498). Either way every total is within 1% of the paper.

The attention units that followed SE (`senet.layers.attention`) are counted by the same rule: their convolutions
and linear layers as layers, plus what `AttentionUnit.map_macs` counts (one per element for each pass over the
map: poolings, elementwise products and sums with the map, the rescale; matrix products exactly).

The forward pass that measures the shapes runs on the ``meta`` device: no arithmetic is done, so profiling
SENet-154 takes well under a second, and a model built under ``torch.device("meta")`` can be profiled without
ever allocating its weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .layers import UNIT_TYPES, AttentionUnit
from .models import build_model, get_entry

__all__ = ["LayerCost", "Overhead", "Profile", "overhead", "profile"]


@dataclass(frozen=True)
class LayerCost:
    """The cost of one module call, per image."""

    name: str
    kind: str
    params: int
    macs: int
    output_shape: tuple[int, ...]
    unit: bool = False  # an SE (or attention) unit, its layers folded in


@dataclass(frozen=True)
class Profile:
    """Complexity of a model for one input image of ``input_size``.

    ``layers`` has one row per call of a convolution, linear layer or SE unit, in execution order; an SE unit's
    row includes its two FCs (an attention unit's, all its layers).
    """

    params: int
    macs: int
    activations: int  # elements written by convolutions and linear layers, per image
    input_size: tuple[int, ...]
    layers: list[LayerCost] = field(repr=False)

    @property
    def se_params(self) -> int:
        """Parameters of the SE (or attention) units."""
        return sum(c.params for c in self.layers if c.unit)

    @property
    def se_macs(self) -> int:
        """MACs of the SE units: their two FCs, squeeze and scale (an attention unit's layers and passes)."""
        return sum(c.macs for c in self.layers if c.unit)

    def by_kind(self) -> dict[str, int]:
        """MACs per module kind."""
        out: dict[str, int] = {}
        for c in self.layers:
            out[c.kind] = out.get(c.kind, 0) + c.macs
        return out

    def __str__(self) -> str:
        return (
            f"{self.params / 1e6:.3f}M params, {self.macs / 1e9:.3f} GMACs, "
            f"{self.activations / 1e6:.2f}M activations at {'×'.join(map(str, self.input_size))}"
        )


_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear, *UNIT_TYPES)


def _macs(m: nn.Module, inputs: tuple, out: Tensor) -> int:
    """Multiply-adds of one call, per image."""
    per_image = out.numel() // out.shape[0]
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        return per_image * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return per_image * m.in_features
    if isinstance(m, AttentionUnit):  # its layers are rows of their own, folded in afterwards
        return m.map_macs(*inputs[0].shape[1:])
    # SqueezeExcite: one per element to pool (two for avg+max, none without a squeeze) and one to scale;
    # its FCs are counted as rows of their own and folded in afterwards.
    squeeze = {"avg": 1, "max": 1, "avgmax": 2, "none": 0}[m.squeeze_kind]
    return (squeeze + 1) * per_image


def profile(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> Profile:
    """Count the parameters and per-image multiply-adds of ``model`` for an input of ``input_size`` (C, H, W).

    The model's weights are not used or changed; the measuring pass runs in eval mode on the meta device.
    """
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != 3 or min(input_size) < 1:
        raise ValueError(f"input_size={input_size!r} must be (C, H, W), e.g. (3, 224, 224)")
    names = {m: n for n, m in model.named_modules()}
    rows: list[LayerCost] = []

    def hook(m: nn.Module, inputs: tuple, out: object) -> None:
        if isinstance(out, Tensor):
            unit = isinstance(m, UNIT_TYPES)  # all its parameters: a layer it calls twice (CBAM) is one layer
            params = sum(p.numel() for p in m.parameters(recurse=unit))
            cost = LayerCost(names[m], type(m).__name__, params, _macs(m, inputs, out), tuple(out.shape[1:]), unit)
            rows.append(cost)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _COUNTED)]
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    meta = {k: torch.empty_like(v, device="meta") for k, v in tensors}
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            x = torch.empty((1, *input_size), device="meta")
            torch.func.functional_call(model, meta, (x,), strict=False)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    activations = sum(math.prod(c.output_shape) for c in rows if not c.unit)
    # Fold each unit's layers into its row (they run first: a forward hook fires when its module returns).
    layers: list[LayerCost] = []
    pending: list[LayerCost] = []
    for c in rows:
        if c.unit:
            inner = [p for p in pending if p.name.startswith(f"{c.name}." if c.name else "")]  # "": a bare unit
            pending = [p for p in pending if p not in inner]
            layers += pending
            pending = []
            macs = c.macs + sum(p.macs for p in inner)
            layers.append(LayerCost(c.name, c.kind, c.params, macs, c.output_shape, unit=True))
        else:
            pending.append(c)
    layers += pending
    return Profile(
        params=sum(p.numel() for p in model.parameters()),
        macs=sum(c.macs for c in layers),
        activations=activations,
        input_size=input_size,
        layers=layers,
    )


@dataclass(frozen=True)
class Overhead:
    """An SE model's complexity beside its plain twin's."""

    se_model: str
    plain_model: str
    input_size: tuple[int, int, int]
    se_params: int
    plain_params: int
    se_macs: int
    plain_macs: int

    @property
    def params_pct(self) -> float:
        return 100.0 * (self.se_params / self.plain_params - 1)

    @property
    def macs_pct(self) -> float:
        return 100.0 * (self.se_macs / self.plain_macs - 1)

    def to_dict(self) -> dict:
        return {**self.__dict__, "params_pct": self.params_pct, "macs_pct": self.macs_pct}


def overhead(
    name: str,
    input_size: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    options: dict[str, Any] | None = None,
) -> Overhead:
    """Profile ``name`` and its twin (either may be given) at ``input_size`` (the model's default if None), built
    with ``options`` (`senet.create_model`'s): the SE model with all of them, the plain one without the SE ones."""
    entry = get_entry(name)
    se_name, plain_name = (entry.name, entry.twin) if entry.has_se else (entry.twin, entry.name)
    size = input_size or entry.input_size
    counts = []
    for n in (se_name, plain_name):
        with torch.device("meta"):  # no weights are allocated
            model = build_model(
                n, num_classes=num_classes, in_chans=size[0], **get_entry(n).shared_options(options or {})
            )
        counts.append(profile(model, size))
    se, plain = counts
    return Overhead(se_name, plain_name, tuple(size), se.params, plain.params, se.macs, plain.macs)
