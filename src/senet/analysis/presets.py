"""The SE family on equal terms: each attention unit as a preset of `create_model` options, and its paper's figures.

A preset names a unit with the options its paper uses on ResNet-50 (`PRESETS`); `preset_options` turns it into the
options of one SE model at one input size, filling in the per-stage map sizes that the global GE-θ / GE-θ⁺ gather
and FcaNet's DCT need (`stage_sizes`). `senet ablate attention` and `senet cost --attention` take preset names.

Each paper trained its own ResNet-50 baseline with its own recipe, so its figures (`PaperFigure`) compare a unit
with that paper's own baseline; across papers they do not compare (docs/reference.md §8, docs/attention.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..factory import create_model
from ..layers import UNIT_TYPES
from ..models import get_entry

__all__ = ["PRESETS", "PaperFigure", "Preset", "preset_options", "stage_sizes"]


@dataclass(frozen=True)
class PaperFigure:
    """A unit's ResNet-50 on ImageNet as its paper (or the named source) reports it; errors are top-1, %.

    ``baseline_err`` is the plain ResNet-50 of the same source's table (its own training), never another paper's:
    the gain of a unit is ``baseline_err - err`` within one source only (docs/reference.md §8)."""

    err: float  # ResNet-50 with the unit
    baseline_err: float | None  # the same source's ResNet-50 without it; None where the source gives none
    source: str
    verified: bool = True  # False: not re-read in the primary source (docs/reference.md §8 marks these)


@dataclass(frozen=True)
class Preset:
    """A unit as its paper uses it: ``attention`` with ``options``; ``r`` where the paper's ratio is not 16;
    ``sizes`` names the option that takes each stage's map size (global GE-θ / θ⁺: ``feat_size``; FcaNet:
    ``dct_size``, at least ``min_size``: its frequencies lie on a 7×7 grid, and a smaller map is repeated up to
    it). ``paper`` is its ResNet-50 ImageNet figure; where there is none, ``no_figure`` says why."""

    label: str
    attention: str
    options: dict[str, Any] = field(default_factory=dict)
    r: float | None = None
    sizes: str | None = None
    min_size: int = 1
    paper: PaperFigure | None = None
    no_figure: str = ""


_ECA_T3 = "ECA-Net (Wang et al., CVPR 2020) Table 3"
_GE = "GE (Hu et al., NeurIPS 2018), ResNet-50 vs SE, global extent"
# Figures from docs/reference.md §8, where their sources are discussed; SE's is the SE paper's Table 10 (r = 16).
# Each baseline is the plain ResNet-50 of the table the figure is quoted from: CBAM's and GCNet's are their own
# papers' (ECA T3 re-lists their figures beside ECA's own ResNet-50, which they were not trained against).
# FcaNet's README lists FcaNet-50 (78.52) and no plain ResNet-50, so none is paired with it.
PRESETS: dict[str, Preset] = {
    "se": Preset("SE", "se", paper=PaperFigure(22.28, 23.30, "SE (TPAMI 2019) Table 10, r = 16")),
    "eca": Preset("ECA", "eca", paper=PaperFigure(22.52, 24.80, _ECA_T3)),
    "cbam": Preset("CBAM", "cbam", paper=PaperFigure(22.66, 24.56, "CBAM (Woo et al., ECCV 2018) Table 4", False)),
    "ge_theta_minus": Preset("GE-θ⁻", "ge", paper=PaperFigure(22.14, 23.30, _GE, False)),
    "ge_theta": Preset(
        "GE-θ", "ge", {"variant": "theta"}, sizes="feat_size", paper=PaperFigure(22.00, 23.30, _GE, False)
    ),
    "ge_theta_plus": Preset(
        "GE-θ⁺", "ge", {"variant": "theta_plus"}, sizes="feat_size", paper=PaperFigure(21.88, 23.30, _GE, False)
    ),
    "gc": Preset("GC", "gc", paper=PaperFigure(22.30, 23.12, "GCNet (Cao et al., arXiv 1904.11492), ImageNet", False)),
    "srm": Preset("SRM", "srm", paper=PaperFigure(22.87, None, "SRM (Lee et al., ICCV 2019), ImageNet", False)),
    "coord": Preset("coordinate attention", "coord", r=32, no_figure="its paper reports mobile networks only"),
    "fca": Preset(
        "FcaNet", "fca", sizes="dct_size", min_size=7, paper=PaperFigure(21.48, None, "FcaNet README, FcaNet-50", False)
    ),
    "ese": Preset("eSE", "ese", no_figure="its paper (CenterMask) reports VoVNetV2 only"),
    "simam": Preset("SimAM", "simam", paper=PaperFigure(22.55, None, "SimAM README")),
    "triplet": Preset("triplet attention", "triplet", paper=PaperFigure(22.52, None, "triplet attention README")),
}


def stage_sizes(model: str, input_size: Sequence[int], position: str = "standard") -> dict[int, tuple[int, int]]:
    """The (H, W) of the map each stage's unit sees in ``model`` at ``position`` for an input of ``input_size``
    (C, H, W); measured by a forward pass on the meta device (no arithmetic, no weights).

    Raises ValueError where the units of one stage see maps of different sizes (a unit with a fixed map size,
    such as the global GE-θ, cannot be placed there).
    """
    entry = get_entry(model)
    if not entry.has_se:
        raise ValueError(f"{model!r} has no SE units to place attention in; use its SE twin {entry.twin!r}")
    c, h, w = (int(v) for v in input_size)
    with torch.device("meta"):
        net = create_model(model, in_chans=c, se_position=position)
    seen: dict[int, set[tuple[int, int]]] = {}

    def record(m: nn.Module, inputs: tuple, out: object) -> None:
        seen.setdefault(m.stage, set()).add(tuple(inputs[0].shape[2:]))

    handles = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, UNIT_TYPES)]
    try:
        with torch.no_grad():
            net.eval()(torch.empty(1, c, h, w, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    mixed = {s: sorted(v) for s, v in seen.items() if len(v) > 1}
    if mixed:
        raise ValueError(
            f"{model} at se_position={position!r} and input {h}×{w}: the units of a stage see maps of several sizes "
            f"({mixed}); a unit built for one map size cannot be placed there"
        )
    return {s: next(iter(v)) for s, v in sorted(seen.items())}


def preset_options(model: str, preset: str, input_size: Sequence[int], position: str = "standard") -> dict[str, Any]:
    """The `create_model` options that put the unit of ``preset`` into SE model ``model``, for ``input_size``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown attention preset {preset!r}; choose from {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if p.attention == "se":
        return {}
    unit = dict(p.options)
    if p.sizes:
        sizes = stage_sizes(model, input_size, position)
        hws = [(max(h, p.min_size), max(w, p.min_size)) for h, w in sizes.values()]
        unit[p.sizes] = [list(hw) if hw[0] != hw[1] else hw[0] for hw in hws]
    options: dict[str, Any] = {"attention": p.attention}
    if unit:
        options["attention_options"] = unit
    if p.r is not None:
        options["r"] = p.r
    return options
