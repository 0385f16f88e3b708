"""The attention units that followed SE, each with SE's call signature, so that a block can hold any of them.

Every unit is built as ``Unit(channels, r=16, **options)`` and called as ``unit(u, shortcut=None, *,
inplace=False, relu=False)``: it returns ``attend(u)``, or ``attend(u) + shortcut`` when a residual block hands it
the identity branch, with a ReLU on the result when ``relu=True`` (`senet.layers.SqueezeExcite` is called the same
way). ``inplace`` is a permission to overwrite ``u``; these units never use it and always write fresh memory.

Where a unit has a bottleneck, ``r`` is its reduction ratio and ``reduced`` an explicit width instead; units
without one (``uses_r = False``) accept ``r`` for the common signature and it changes nothing. Each class
docstring maps the code to its paper: the equations, and what each attribute is in the paper's symbols. Where the
paper, the authors' released code and timm disagree, the class follows the paper (then the authors' code), states
the difference, and offers an option that reproduces timm where timm has the unit
(`senet.weights.convert_timm_unit` moves timm's weights into the senet unit).

`ATTENTION_UNITS` names every unit (``"se"`` is `senet.layers.SqueezeExcite`); `make_attention` builds one by name,
and `senet.layers.SEConfig` (``attention=``) puts one in every block of a network, where SE would sit.
``docs/attention.md`` gives each unit's parameter and MAC cost on ResNet-50 beside the papers' figures.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .se import SqueezeExcite, reduced_width

__all__ = [
    "ATTENTION_UNITS",
    "CBAM",
    "ECA",
    "FCA_TOP16",
    "GC_FUSIONS",
    "GE_VARIANTS",
    "SRM",
    "AttentionUnit",
    "CoordinateAttention",
    "EffectiveSE",
    "GatherExcite",
    "GlobalContext",
    "MultiSpectralAttention",
    "SimAM",
    "TripletAttention",
    "eca_kernel_size",
    "make_attention",
    "unit_class",
    "unit_options",
]


def _check_channels(channels: int) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels={channels!r} must be a positive int (the channels C of the map the unit sees)")
    return channels


def _check_r(r: float) -> float:
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
        raise ValueError(f"reduction ratio r={r!r} must be a positive number (the papers use r=16)")
    return r


def _width(channels: int, r: float, reduced: int | None) -> int:
    """floor(C/r) ≥ 1 as in `senet.layers.reduced_width`, or ``reduced`` when given."""
    if reduced is None:
        return reduced_width(channels, _check_r(r))
    if isinstance(reduced, bool) or not isinstance(reduced, int) or reduced < 1:
        raise ValueError(f"reduced={reduced!r} must be a positive int (or leave it None to use r)")
    return reduced


def _check_odd(name: str, k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"{name}={k!r} must be a positive odd int, so that the padding (k-1)/2 keeps the size")
    return k


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{name}={value!r} must be a positive int or a pair (H, W) of them")
    return pair  # type: ignore[return-value]


class AttentionUnit(nn.Module):
    """What the units share: SE's call signature, the residual addition and the optional ReLU.

    Subclasses implement `attend` and `map_macs`. ``uses_r`` says whether ``r`` changes the unit; ``no_identity``
    says why a unit cannot start as the identity map (empty where it can, and the subclass overrides
    `reset_to_identity`); ``stage_options`` are the options a network may give one value per stage (`SEConfig`).
    """

    uses_r: ClassVar[bool] = True
    no_identity: ClassVar[str] = ""
    stage_options: ClassVar[tuple[str, ...]] = ()
    fuses_relu: ClassVar[bool] = False  # a block applies its own ReLU after the unit (SqueezeExcite.fuses_relu)

    @classmethod
    def ratio_used(cls, options: Mapping[str, object]) -> bool:
        """Whether a unit built with ``options`` has a bottleneck that ``r`` sets."""
        return cls.uses_r

    @classmethod
    def identity_problem(cls, options: Mapping[str, object]) -> str | None:
        """Why a unit built with ``options`` cannot start as the identity map; None where it can."""
        return f"{cls.__name__} cannot start as the identity: {cls.no_identity}" if cls.no_identity else None

    def attend(self, u: Tensor) -> Tensor:
        """The unit's output for the map ``u`` (B, C, H, W), without the residual addition."""
        raise NotImplementedError

    def map_macs(self, c: int, h: int, w: int) -> int:
        """Multiply-adds per image outside the unit's convolutions and linear layers, for a (C, H, W) input.

        The count extends the one `senet.complexity` uses for SE (a squeeze and a scale: one per element each) to
        every unit: one per element of the map for each pass over it (a mean, max or sum over positions or
        channels, an elementwise product or sum with a map-sized operand, the final rescale), the exact
        multiply-adds of matrix products that are not layers, and nothing for nonlinearities and normalisation.
        """
        raise NotImplementedError

    def forward(
        self, u: Tensor, shortcut: Tensor | None = None, *, inplace: bool = False, relu: bool = False
    ) -> Tensor:
        """``attend(u)``, plus ``shortcut`` when given, then ReLU when ``relu``; ``inplace`` is not used."""
        out = self.attend(u)
        if shortcut is not None:
            out = out + shortcut
        return torch.relu(out) if relu else out

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Every layer of the unit as PyTorch initialises it, with the unit's own rule on top where its authors'
        code has one. `senet.create_model` calls it after the family's initialisation, which would otherwise
        reach the unit's convolutions and normalisation layers (a ResNet's fan-out rule gives a 1-channel
        convolution weights of standard deviation √2), so that every unit starts as its authors start it."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def reset_to_identity(self) -> None:
        """Make the unit the identity map while leaving it trainable; ValueError where the unit cannot."""
        raise ValueError(f"{type(self).__name__} cannot start as the identity: {self.no_identity}")


_SIGMOID_GATE = "its sigmoid gate lies in (0, 1) and never outputs exactly 1"


# ---------------------------------------------------------------------------------------------------------------------
# ECA


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA's kernel size k = ψ(C) = |log2(C)/γ + b/γ|_odd, the odd number nearest to (log2 C + b)/γ.

    A value halfway between two odd numbers (an even integer: C = 128 or 2048 with γ=2, b=1) goes up, as in the
    authors' code and timm (``t = floor(...)``, then ``t + 1`` if t is even); k is at least 1. For the stage
    widths of ResNet-50 (256, 512, 1024, 2048) this gives 5, 5, 5, 7.
    """
    _check_channels(channels)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise ValueError(f"gamma={gamma!r} must be a positive number (the paper uses gamma=2, b=1)")
    t = math.floor((math.log2(channels) + b) / gamma)
    return max(1, t if t % 2 else t + 1)


class ECA(AttentionUnit):
    """Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020, §3.2–3.3).

    SE's two FCs are replaced by one 1-D convolution across the channels of the pooled descriptor, without a
    reduction: ``ω = σ(C1D_k(y))`` with ``y = GAP(u)`` (B, C), and the output ``ω_c · u_c``. Each channel's gate
    sees its k neighbours through one shared kernel of k weights (the paper's local cross-channel interaction).

    Attributes, in the paper's symbols: ``conv`` is C1D_k, a ``nn.Conv1d(1, 1, k)`` without bias, zero-padded by
    (k−1)/2 at both ends of the channel axis; ``k_size`` is k, by default ψ(C) (`eca_kernel_size`, γ=2, b=1).

    Args:
        r: not used (ECA has no reduction); accepted for the common signature.
        k_size: an explicit odd kernel size instead of ψ(C). The released ECA-ResNet-50 used k = 3, 5, 5, 7 for
            its four stages, not ψ(C) (docs/attention.md).
        gamma, b: γ and b of ψ(C).

    timm's ``EcaModule(channels)`` computes the same ψ(C) but never less than 3 (C < 8 gives k = 1 here, 3 there);
    ``EcaModule(None, kernel_size=k)`` matches ``ECA(C, k_size=k)`` for any C.
    """

    uses_r = False
    no_identity = _SIGMOID_GATE
    stage_options = ("k_size",)

    def __init__(
        self, channels: int, r: float = 16, *, k_size: int | None = None, gamma: float = 2, b: float = 1
    ) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        _check_r(r)
        self.k_size = eca_kernel_size(channels, gamma, b) if k_size is None else _check_odd("k_size", k_size)
        self.conv = nn.Conv1d(1, 1, self.k_size, padding=(self.k_size - 1) // 2, bias=False)

    def extra_repr(self) -> str:
        return f"{self.channels}, k_size={self.k_size}"

    def excitation(self, u: Tensor) -> Tensor:
        """The gate ω (B, C, 1, 1)."""
        y = u.mean((2, 3))[:, None, :]  # (B, 1, C): the channels are the conv's length axis
        return torch.sigmoid(self.conv(y)).view(u.shape[0], -1, 1, 1)

    def attend(self, u: Tensor) -> Tensor:
        return u * self.excitation(u)

    def map_macs(self, c: int, h: int, w: int) -> int:
        return 2 * c * h * w  # pooling and scale, as SE's


# ---------------------------------------------------------------------------------------------------------------------
# CBAM


class CBAM(AttentionUnit):
    """Convolutional Block Attention Module (Woo et al., ECCV 2018, §3): channel attention, then spatial attention.

    * eq. 1: ``F' = M_c(F) ⊗ F`` and ``F'' = M_s(F') ⊗ F'``, the two gates applied in sequence;
    * eq. 2: ``M_c(F) = σ(W1(W0(F_avg)) + W1(W0(F_max)))``, one MLP shared by the average- and max-pooled
      descriptors (B, C), with a ReLU after W0: ``fc1`` is W0 (C/r × C), ``fc2`` is W1 (C × C/r);
    * eq. 3: ``M_s(F') = σ(f^{k×k}([AvgPool(F'); MaxPool(F')]))``, pooling across channels to a (B, 2, H, W) map:
      ``spatial`` is f^{k×k} (2 → 1, no bias, k = 7 in the paper) and ``spatial_bn`` the BatchNorm that the
      authors' code and timm put after it (eq. 3 does not write it).

    Args:
        r: reduction ratio of the MLP, width floor(C/r) (paper: r = 16).
        reduced: an explicit MLP width instead of ``r``.
        bias: biases in the MLP. Eq. 2 has none, nor has timm; the authors' code uses ``nn.Linear`` with biases,
            and the 28.09M quoted for CBAM-ResNet-50 (attributed to the CBAM paper's Table 4; not re-read
            there) matches a count with them (docs/attention.md).
        kernel_size: k of the spatial convolution (the paper compares 3 and 7).

    timm's ``CbamModule(C)`` is this unit with ``reduced=round(C/16)`` (equal for C a multiple of 16) and
    ``bias=False``; the authors' code concatenates [max; avg] rather than eq. 3's [avg; max] (a permutation of
    the spatial convolution's two input channels).
    """

    no_identity = _SIGMOID_GATE

    def __init__(
        self, channels: int, r: float = 16, *, reduced: int | None = None, bias: bool = False, kernel_size: int = 7
    ) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        self.reduced = _width(channels, r, reduced)
        k = _check_odd("kernel_size", kernel_size)
        self.fc1 = nn.Linear(channels, self.reduced, bias=bias)
        self.fc2 = nn.Linear(self.reduced, channels, bias=bias)
        self.spatial = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)
        self.spatial_bn = nn.BatchNorm2d(1)

    def extra_repr(self) -> str:
        return f"{self.channels}, reduced={self.reduced}"

    def _mlp(self, z: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(z)))

    def channel_gate(self, u: Tensor) -> Tensor:
        """M_c (eq. 2), (B, C, 1, 1)."""
        return torch.sigmoid(self._mlp(u.mean((2, 3))) + self._mlp(u.amax((2, 3))))[:, :, None, None]

    def spatial_gate(self, f: Tensor) -> Tensor:
        """M_s (eq. 3), (B, 1, H, W)."""
        pooled = torch.cat([f.mean(1, keepdim=True), f.amax(1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return torch.sigmoid(self.spatial_bn(self.spatial(pooled)))

    def attend(self, u: Tensor) -> Tensor:
        f = u * self.channel_gate(u)  # F'
        return f * self.spatial_gate(f)  # F''

    def map_macs(self, c: int, h: int, w: int) -> int:
        return 6 * c * h * w  # avg and max over positions, scale; mean and max over channels, scale


# ---------------------------------------------------------------------------------------------------------------------
# Gather-Excite

GE_VARIANTS = ("theta_minus", "theta", "theta_plus")


class GatherExcite(AttentionUnit):
    """Gather-Excite (Hu, Shen, Albanie, Sun, Vedaldi, NeurIPS 2018, §3).

    A gather operator ξ_G aggregates each channel over a spatial extent; the excite operator ξ_E redistributes the
    result to every position: ``ξ_E(u, ξ_G(u)) = u ⊙ σ(interp(ξ_G(u)))``, with nearest-neighbour interpolation
    back to H × W (none is needed at global extent, where the gate is (B, C, 1, 1)). The extent ratio e is the
    side of the region one gathered value summarises, in positions; ``extent=None`` is the global extent.

    Variants (``variant``):

    * ``"theta_minus"``, GE-θ⁻, no parameters: ξ_G is average pooling, over the whole map at global extent and
      otherwise with a (2e−1)×(2e−1) window at stride e (zero padding e−1, not counted in the mean), as timm does;
      the window shape at local extents is timm's, not checked against the paper's text;
    * ``"theta"``, GE-θ: ξ_G is learned. At global extent, one depth-wise convolution whose kernel covers the whole
      map (``feat_size``) followed by BN, as in the authors' prototxt (RN50-GEP); at extent e, log2(e) depth-wise
      3×3 convolutions of stride 2, each with BN, a ReLU between them (timm's layout);
    * ``"theta_plus"``, GE-θ⁺: the GE-θ gather, a ReLU, then SE's excitation on the gathered map, 1×1 convolutions
      C → C/r → C with biases and a ReLU between (``mlp.fc1``, ``mlp.fc2``), before the sigmoid (RN50-GEPP).

    Args:
        r: reduction ratio of the θ⁺ excitation (the prototxt's 256 → 16 is r = 16); not used by θ⁻ and θ.
        reduced: an explicit θ⁺ width instead of ``r``.
        extent: 2, 4, 8 (the paper's) or another power of two; None for the global extent.
        feat_size: the map size (H, W) that the global θ/θ⁺ gather covers; the unit then accepts only maps of that
            size (in ResNet-50 at 224²: 56, 28, 14, 7 per stage).
        gather_relu: θ⁺ only. The authors' GE-θ⁺ has a ReLU between gather and excite (True, the default); timm's
            has none (False reproduces it).

    timm's ``GatherExcite`` (1.0.31) can only be built with ``extra_params=False, use_mlp=False`` (GE-θ⁻):
    its other constructor paths pass ``*dd`` where ``**dd`` was meant and raise TypeError. Its global-extent θ is
    a same-padded ``feat_size`` convolution that keeps H × W, not the paper's global gather.
    """

    no_identity = _SIGMOID_GATE
    stage_options = ("extent", "feat_size")

    @classmethod
    def ratio_used(cls, options: Mapping[str, object]) -> bool:
        return options.get("variant") == "theta_plus"  # only GE-θ⁺ has a bottleneck

    def __init__(
        self,
        channels: int,
        r: float = 16,
        *,
        variant: str = "theta_minus",
        extent: int | None = None,
        feat_size: int | Sequence[int] | None = None,
        reduced: int | None = None,
        gather_relu: bool | None = None,
    ) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        if variant not in GE_VARIANTS:
            raise ValueError(f"variant={variant!r} is not one of {', '.join(map(repr, GE_VARIANTS))}")
        if extent is not None and (
            isinstance(extent, bool) or not isinstance(extent, int) or extent < 2 or extent & (extent - 1)
        ):
            raise ValueError(f"extent={extent!r} must be a power of two >= 2 (the paper uses 2, 4, 8) or None (global)")
        learned = variant != "theta_minus"
        if feat_size is not None and not (learned and extent is None):
            raise ValueError(
                f"feat_size={feat_size!r} is only used by the global gather of variant 'theta' or 'theta_plus'; "
                "leave it None"
            )
        if learned and extent is None and feat_size is None:
            raise ValueError(
                f"variant={variant!r} at global extent needs feat_size=(H, W), the map size its depth-wise kernel "
                "covers; or give an extent"
            )
        if gather_relu is not None and variant != "theta_plus":
            raise ValueError(f"gather_relu={gather_relu!r} only applies to variant='theta_plus'; leave it None")
        if reduced is not None and variant != "theta_plus":
            raise ValueError(f"reduced={reduced!r} only applies to variant='theta_plus'; leave it None")
        _check_r(r)
        self.variant, self.extent = variant, extent
        self.feat_size = _pair("feat_size", feat_size) if feat_size is not None else None
        self.gather = self._gather(channels, extent, self.feat_size) if learned else None
        self.gather_relu = variant == "theta_plus" and gather_relu is not False
        self.mlp = None
        if variant == "theta_plus":
            width = _width(channels, r, reduced)
            self.mlp = nn.Sequential(
                OrderedDict(fc1=nn.Conv2d(channels, width, 1), act=nn.ReLU(), fc2=nn.Conv2d(width, channels, 1))
            )

    @staticmethod
    def _gather(channels: int, extent: int | None, feat_size: tuple[int, int] | None) -> nn.Sequential:
        if extent is None:  # one depth-wise kernel over the whole map: (B, C, 1, 1)
            conv = nn.Conv2d(channels, channels, feat_size, groups=channels, bias=False)
            return nn.Sequential(OrderedDict(conv1=conv, norm1=nn.BatchNorm2d(channels)))
        layers: list[tuple[str, nn.Module]] = []
        steps = extent.bit_length() - 1  # log2(e) convolutions of stride 2
        for i in range(1, steps + 1):
            conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False)
            layers += [(f"conv{i}", conv), (f"norm{i}", nn.BatchNorm2d(channels))]
            if i < steps:
                layers.append((f"act{i}", nn.ReLU()))
        return nn.Sequential(OrderedDict(layers))

    def extra_repr(self) -> str:
        return f"{self.channels}, variant={self.variant!r}, extent={self.extent}"

    def gathered(self, u: Tensor) -> Tensor:
        """ξ_G(u): (B, C, 1, 1) at global extent, (B, C, ⌈H/e⌉, ⌈W/e⌉) otherwise; θ⁺'s excitation included."""
        if self.gather is None:
            if self.extent is None:
                return u.mean((2, 3), keepdim=True)
            e = self.extent
            return F.avg_pool2d(u, 2 * e - 1, stride=e, padding=e - 1, count_include_pad=False)
        if self.feat_size is not None and tuple(u.shape[2:]) != self.feat_size:
            raise ValueError(self._size_error(tuple(u.shape[2:])))
        g = self.gather(u)
        if self.mlp is not None:
            g = self.mlp(torch.relu(g) if self.gather_relu else g)
        return g

    def _size_error(self, got: tuple[int, ...]) -> str:
        """What a map of another size than ``feat_size`` gets: the sizes, and the fix for a unit or a network."""
        stage = getattr(self, "stage", None)  # set by the network that holds the unit (`SEConfig.make`)
        if stage is None:
            return (
                f"this global GE-{self.variant} was built for {self.feat_size} maps (feat_size) and got {got}; "
                f"build it with feat_size={got}"
            )
        return (
            f"the global GE-{self.variant} units of stage {stage} were built for {self.feat_size} maps "
            f"(attention_options feat_size, one map size per stage) and got {got}: the network was built for another "
            "input size; build it for this one, e.g. with senet.analysis.presets.preset_options(model, preset, "
            "input_size), which fills in each stage's map size"
        )

    def excitation(self, u: Tensor) -> Tensor:
        """The gate σ(interp(ξ_G(u))): (B, C, 1, 1) at global extent, else (B, C, H, W)."""
        g = self.gathered(u)
        if g.shape[2:] != (1, 1):
            g = F.interpolate(g, size=u.shape[2:], mode="nearest")
        return torch.sigmoid(g)

    def attend(self, u: Tensor) -> Tensor:
        return u * self.excitation(u)

    def map_macs(self, c: int, h: int, w: int) -> int:
        scale = c * h * w
        if self.gather is not None:  # θ and θ⁺ gather with convolutions, counted as layers
            return scale
        if self.extent is None:
            return 2 * scale  # global average pooling and scale, as SE's
        e = self.extent  # each gathered value sums a (2e−1)² window (its padded positions included)
        return c * math.ceil(h / e) * math.ceil(w / e) * (2 * e - 1) ** 2 + scale


# ---------------------------------------------------------------------------------------------------------------------
# Global context

GC_FUSIONS = ("add", "scale", "both")


class _GCTransform(nn.Module):
    """GC's transform, ``W_v2 ReLU(LN(W_v1 c))``, on the context vector c (B, C) → (B, C)."""

    def __init__(self, channels: int, width: int, ln_eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, width)  # W_v1
        self.norm = nn.LayerNorm(width, eps=ln_eps)
        self.fc2 = nn.Linear(width, channels)  # W_v2

    def forward(self, c: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.norm(self.fc1(c))))


class GlobalContext(AttentionUnit):
    """Global context block (Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
    arXiv 1904.11492, 2019, §4).

    ``z_i = x_i + W_v2 ReLU(LN(W_v1 Σ_j α_j x_j))`` with ``α_j = exp(W_k x_j) / Σ_m exp(W_k x_m)``:

    * context modelling: ``conv_attn`` is W_k (a 1×1 convolution C → 1), softmax over the H·W positions gives
      α, and the context is the α-weighted mean of the positions (``context="avg"``: plain average pooling, the
      paper's ablation);
    * transform: a bottleneck C → C/r → C with LayerNorm and ReLU (``mlp_add``: fc1 = W_v1, norm = LN,
      fc2 = W_v2);
    * fusion: ``"add"`` broadcasts the result to every position (the paper's choice); ``"scale"`` multiplies by
      σ of a second transform (``mlp_scale``), as SE does; ``"both"`` scales, then adds.

    Initialisation follows the authors' code: W_k Kaiming-normal (fan-in), the last layer of each transform zero,
    so a fresh ``fusion="add"`` unit is the identity map.

    Args:
        r: reduction ratio of the transform, width floor(C/r) (paper: r = 16).
        reduced: an explicit transform width instead of ``r``.
        attn_bias: a bias on W_k. Softmax ignores it (its gradient is zero); the authors' code and timm have one,
            so loading their weights needs True.
        ln_eps: LayerNorm ε: 1e-5 in the authors' code (PyTorch's default), 1e-6 in timm.

    timm's ``GlobalContext(C)`` defaults differ: ``fuse_scale=True, fuse_add=False`` (fusion ``"scale"``),
    ``rd_ratio=1/8`` (width round(C/8)), LayerNorm ε 1e-6 and ``attn_bias``; with those options this unit
    computes its function.
    """

    @classmethod
    def identity_problem(cls, options: Mapping[str, object]) -> str | None:
        fusion = options.get("fusion", "add")
        if fusion == "add":
            return None
        return (
            f"GlobalContext with fusion={fusion!r} cannot start as the identity: the scale fusion's sigmoid gate "
            "never outputs exactly 1; use fusion='add'"
        )

    def __init__(
        self, channels: int, r: float = 16, *, reduced: int | None = None, fusion: str = "add",
        context: str = "attention", attn_bias: bool = False, ln_eps: float = 1e-5,
    ) -> None:  # fmt: skip
        super().__init__()
        self.channels = _check_channels(channels)
        if fusion not in GC_FUSIONS:
            raise ValueError(f"fusion={fusion!r} is not one of {', '.join(map(repr, GC_FUSIONS))}")
        if context not in ("attention", "avg"):
            raise ValueError(f"context={context!r} is not one of 'attention', 'avg'")
        if context == "avg" and attn_bias:
            raise ValueError("attn_bias=True needs context='attention' (average pooling has no W_k)")
        if isinstance(ln_eps, bool) or not isinstance(ln_eps, (int, float)) or not ln_eps > 0:
            raise ValueError(f"ln_eps={ln_eps!r} must be a positive number (1e-5 in the authors' code, 1e-6 in timm)")
        self.reduced = _width(channels, r, reduced)
        self.fusion, self.context = fusion, context
        self.conv_attn = nn.Conv2d(channels, 1, 1, bias=attn_bias) if context == "attention" else None
        self.mlp_add = _GCTransform(channels, self.reduced, ln_eps) if fusion in ("add", "both") else None
        self.mlp_scale = _GCTransform(channels, self.reduced, ln_eps) if fusion in ("scale", "both") else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' initialisation (see the class docstring)."""
        super().reset_parameters()
        if self.conv_attn is not None:
            nn.init.kaiming_normal_(self.conv_attn.weight, mode="fan_in", nonlinearity="relu")
            if self.conv_attn.bias is not None:
                nn.init.zeros_(self.conv_attn.bias)
        for mlp in (self.mlp_add, self.mlp_scale):
            if mlp is not None:
                nn.init.zeros_(mlp.fc2.weight)
                nn.init.zeros_(mlp.fc2.bias)

    def extra_repr(self) -> str:
        return f"{self.channels}, reduced={self.reduced}, fusion={self.fusion!r}, context={self.context!r}"

    def context_vector(self, u: Tensor) -> Tensor:
        """Σ_j α_j x_j (or the mean for ``context="avg"``): (B, C)."""
        if self.conv_attn is None:
            return u.mean((2, 3))
        alpha = torch.softmax(self.conv_attn(u).flatten(1), dim=1)  # (B, H·W)
        return torch.bmm(u.flatten(2), alpha[:, :, None])[:, :, 0]

    def attend(self, u: Tensor) -> Tensor:
        c = self.context_vector(u)
        out = u
        if self.mlp_scale is not None:
            out = out * torch.sigmoid(self.mlp_scale(c))[:, :, None, None]
        if self.mlp_add is not None:
            out = out + self.mlp_add(c)[:, :, None, None]
        return out

    def map_macs(self, c: int, h: int, w: int) -> int:
        context = c * h * w  # the α-weighted sum (a matrix product), or the mean for context="avg"
        return context + c * h * w * ((self.mlp_add is not None) + (self.mlp_scale is not None))  # each fusion

    @torch.no_grad()
    def reset_to_identity(self) -> None:
        """Zero W_v2 and its bias: the added term is 0, and W_v2 still receives a gradient (needs fusion='add')."""
        problem = self.identity_problem({"fusion": self.fusion})
        if problem:
            raise ValueError(problem)
        nn.init.zeros_(self.mlp_add.fc2.weight)
        nn.init.zeros_(self.mlp_add.fc2.bias)


# ---------------------------------------------------------------------------------------------------------------------
# SRM


class SRM(AttentionUnit):
    """Style-based Recalibration Module (Lee, Kim, Nam, ICCV 2019, §3).

    * style pooling (§3.1): the style vector t_c = (μ_c, σ_c), each channel's mean and standard deviation over
      the H·W positions (B, C, 2);
    * style integration (§3.2): a channel-wise fully-connected layer ``z_c = w_c · t_c`` (``cfc``, C × 2: one
      weight per channel and statistic, no bias), BatchNorm (``bn``), and the gate ``g_c = σ(ẑ_c)``;
    * the output ``g_c · u_c``.

    ``cfc`` starts at zero as in the authors' code.

    Args:
        r: not used (SRM has no reduction); accepted for the common signature.
        unbiased: σ with the n − 1 divisor, as the authors' code (``Tensor.std``) computes it; the default is the
            population σ of the paper's definition. With ``unbiased=True`` a 1×1 map has no σ (the authors' code
            returns NaN there; this unit raises ValueError).
    """

    uses_r = False
    no_identity = _SIGMOID_GATE

    def __init__(self, channels: int, r: float = 16, *, unbiased: bool = False) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        _check_r(r)
        self.unbiased = bool(unbiased)
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm1d(channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, unbiased={self.unbiased}"

    def style(self, u: Tensor) -> Tensor:
        """Style pooling: (μ, σ) per channel, (B, C, 2)."""
        if self.unbiased and u.shape[2] * u.shape[3] < 2:
            raise ValueError("SRM(unbiased=True) needs at least 2 positions for σ; got a 1×1 map; use unbiased=False")
        std, mean = torch.std_mean(u, dim=(2, 3), correction=1 if self.unbiased else 0)
        return torch.stack([mean, std], dim=2)

    def excitation(self, u: Tensor) -> Tensor:
        """The gate g (B, C, 1, 1)."""
        z = (self.style(u) * self.cfc).sum(2)  # (B, C)
        return torch.sigmoid(self.bn(z))[:, :, None, None]

    def attend(self, u: Tensor) -> Tensor:
        return u * self.excitation(u)

    def map_macs(self, c: int, h: int, w: int) -> int:
        return 3 * c * h * w + 2 * c  # mean, squared deviations, scale; the channel-wise FC

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.cfc.zero_()  # as the authors' code


# ---------------------------------------------------------------------------------------------------------------------
# Coordinate attention


class CoordinateAttention(AttentionUnit):
    """Coordinate attention (Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
    §3.2–3.3).

    * coordinate information embedding (§3.2): pool each channel along one axis at a time,
      ``z^h_c(h) = mean_w u_c(h, w)`` (B, C, H, 1) and ``z^w_c(w) = mean_h u_c(h, w)`` (B, C, 1, W);
    * coordinate attention generation (§3.3): ``f = δ(F1([z^h, z^w]))`` on the two concatenated along the spatial
      axis, with F1 a shared 1×1 convolution C → C/r (``conv1``), BN (``bn1``) and δ = h-swish; f splits back into
      f^h and f^w, and ``g^h = σ(F_h(f^h))``, ``g^w = σ(F_w(f^w))`` (``conv_h``, ``conv_w``: C/r → C);
    * the output ``y_c(i, j) = u_c(i, j) · g^h_c(i) · g^w_c(j)``.

    Args:
        r: reduction ratio; the width is max(8, floor(C/r)) as in the authors' code. The paper uses r = 32 (pass
            ``r=32``); 16 is this library's common default.
        reduced: an explicit width instead.
        bias: biases in the three 1×1 convolutions (the authors' code has them).

    timm's ``CoordAttn(C)`` uses ``bias=False`` and the width ``make_divisible(C·(1/16)·(2/3), 8)``; with
    ``reduced`` set to that width and ``bias=False`` this unit computes its function.
    """

    no_identity = _SIGMOID_GATE

    def __init__(self, channels: int, r: float = 16, *, reduced: int | None = None, bias: bool = True) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        self.reduced = max(8, int(channels // _check_r(r))) if reduced is None else _width(channels, r, reduced)
        self.conv1 = nn.Conv2d(channels, self.reduced, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(self.reduced)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(self.reduced, channels, 1, bias=bias)
        self.conv_w = nn.Conv2d(self.reduced, channels, 1, bias=bias)

    def extra_repr(self) -> str:
        return f"{self.channels}, reduced={self.reduced}"

    def gates(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(g^h, g^w): (B, C, H, 1) and (B, C, 1, W)."""
        h, w = u.shape[2:]
        z = torch.cat([u.mean(3, keepdim=True), u.mean(2, keepdim=True).transpose(2, 3)], dim=2)  # (B, C, H+W, 1)
        f_h, f_w = torch.split(self.act(self.bn1(self.conv1(z))), [h, w], dim=2)
        return torch.sigmoid(self.conv_h(f_h)), torch.sigmoid(self.conv_w(f_w.transpose(2, 3)))

    def attend(self, u: Tensor) -> Tensor:
        g_h, g_w = self.gates(u)
        return u * g_w * g_h

    def map_macs(self, c: int, h: int, w: int) -> int:
        return 4 * c * h * w  # a mean along W and one along H; two gate products


# ---------------------------------------------------------------------------------------------------------------------
# FcaNet

# The paper's "top-16" frequencies (u, v) on the 7×7 DCT grid, u along H and v along W, best first, as in the
# authors' code (`get_freq_indices("top16")`); channel group i (C/16 channels) uses the i-th.
FCA_TOP16 = (
    (0, 0), (0, 1), (6, 0), (0, 5), (0, 2), (1, 0), (1, 2), (4, 0),
    (5, 0), (1, 6), (3, 0), (0, 4), (0, 6), (0, 3), (3, 5), (2, 2),
)  # fmt: skip


def _dct_1d(freq: int, size: int) -> Tensor:
    """The orthonormal DCT-II basis vector of frequency ``freq`` on ``size`` points, float64."""
    pos = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
    return basis * math.sqrt(2) if freq else basis


class MultiSpectralAttention(AttentionUnit):
    """FcaNet's multi-spectral channel attention (Qin, Zhang, Zhang, Li, "FcaNet: Frequency Channel Attention
    Networks", ICCV 2021, §3).

    The paper shows global average pooling is the lowest-frequency (0, 0) component of the 2-D DCT, and squeezes
    with several frequencies instead: the channels are split into n groups, and group i is reduced with the
    2-D DCT basis function B^{u_i, v_i} of its frequency, ``Freq^i = Σ_{h,w} X^i_{:,h,w} B^{u_i,v_i}_{h,w}``.
    The descriptor ``Freq`` (B, C) goes through SE's excitation, ``σ(fc2(ReLU(fc1(Freq))))`` (``fc1``: C → C/r,
    ``fc2``: C/r → C, no biases as in the authors' code), and scales u.

    The basis is fixed (a buffer ``dct``, (C, h, w), rebuilt from the options and not saved in the state dict),
    with the authors' orthonormal scaling (the paper's formula leaves the constants out). The frequencies are given
    on a 7×7 grid and scaled by ⌊h/7⌋, ⌊w/7⌋ to the DCT size (h, w); a map of another size is first adaptively
    average-pooled to (h, w) (a smaller map, e.g. 1×1, is repeated up to it).

    Args:
        r: reduction ratio of the excitation (paper: r = 16).
        reduced: an explicit width instead.
        dct_size: (h, w), at least 7; the authors use the stage's map size in ResNet-50 at 224²: 56, 28, 14, 7.
        frequencies: (u, v) pairs on the 7×7 grid; the paper's top-16 by default. C must be at least their
            number n. Channel c uses frequency ⌊c·n/C⌋: groups of C/n channels in order, as in the authors' code,
            which asserts that n divides C; where it does not (ShuffleNet's 216 channels, say) the groups here
            differ in size by one.
    """

    no_identity = _SIGMOID_GATE
    stage_options = ("dct_size",)

    def __init__(
        self,
        channels: int,
        r: float = 16,
        *,
        reduced: int | None = None,
        dct_size: int | Sequence[int] = 7,
        frequencies: Sequence[tuple[int, int]] = FCA_TOP16,
    ) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        self.reduced = _width(channels, r, reduced)
        self.dct_size = _pair("dct_size", dct_size)
        if min(self.dct_size) < 7:
            raise ValueError(f"dct_size={dct_size!r} must be at least 7: the frequencies are placed on a 7×7 grid")
        freqs = [tuple(f) for f in frequencies]
        if not freqs or not all(len(f) == 2 and all(isinstance(x, int) and 0 <= x < 7 for x in f) for f in freqs):
            raise ValueError(f"frequencies={frequencies!r} must be (u, v) pairs of ints in [0, 7)")
        if channels < len(freqs):
            raise ValueError(
                f"channels={channels} are fewer than the {len(freqs)} frequencies, one per channel group; give at "
                f"most {channels} frequencies"
            )
        self.frequencies = tuple(freqs)
        self.register_buffer("dct", self._basis(channels, self.dct_size, self.frequencies), persistent=False)
        self.fc1 = nn.Linear(channels, self.reduced, bias=False)
        self.fc2 = nn.Linear(self.reduced, channels, bias=False)

    @staticmethod
    def _basis(channels: int, size: tuple[int, int], freqs: Sequence[tuple[int, int]]) -> Tensor:
        h, w = size
        rows = torch.stack([torch.outer(_dct_1d(u * (h // 7), h), _dct_1d(v * (w // 7), w)) for u, v in freqs])
        group = torch.arange(channels) * len(freqs) // channels  # channel c → frequency ⌊c·n/C⌋
        return rows[group].to(torch.get_default_dtype())  # (C, h, w)

    def extra_repr(self) -> str:
        return f"{self.channels}, reduced={self.reduced}, dct_size={self.dct_size}, n_freq={len(self.frequencies)}"

    def squeeze(self, u: Tensor) -> Tensor:
        """The multi-spectral descriptor Freq (B, C)."""
        x = u if tuple(u.shape[2:]) == self.dct_size else F.adaptive_avg_pool2d(u, self.dct_size)
        return torch.einsum("bchw,chw->bc", x, self.dct.to(x.dtype))

    def excitation(self, u: Tensor) -> Tensor:
        """The gate (B, C, 1, 1)."""
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(self.squeeze(u)))))[:, :, None, None]

    def attend(self, u: Tensor) -> Tensor:
        return u * self.excitation(u)

    def map_macs(self, c: int, h: int, w: int) -> int:
        dh, dw = self.dct_size
        pool = 0 if (h, w) == (dh, dw) else c * max(h * w, dh * dw)  # adaptive pooling to the DCT size
        return pool + c * dh * dw + c * h * w  # the DCT-weighted sums (a matrix product) and the scale


# ---------------------------------------------------------------------------------------------------------------------
# effective SE


class EffectiveSE(AttentionUnit):
    """Effective Squeeze-Excitation, eSE (Lee & Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation",
    CVPR 2020, §3, VoVNetV2).

    SE with one FC and no reduction: ``A = σ_h(W_C(F_gap(u)))`` and the output ``A ⊗ u``, where W_C (``fc``) is a
    C × C fully-connected layer with bias and σ_h the hard sigmoid ``min(max(z + 3, 0), 6) / 6``.

    Args:
        r: not used (eSE has no reduction); accepted for the common signature.

    timm's ``EffectiveSEModule(C)`` is this unit (its ``fc`` is a 1×1 convolution).
    """

    uses_r = False
    no_identity = "its hard-sigmoid gate reaches 1 only where it is flat (zero gradient), so it would never train"

    def __init__(self, channels: int, r: float = 16) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        _check_r(r)
        self.fc = nn.Linear(channels, channels)

    def extra_repr(self) -> str:
        return f"{self.channels}"

    def excitation(self, u: Tensor) -> Tensor:
        """The gate A (B, C, 1, 1)."""
        return F.hardsigmoid(self.fc(u.mean((2, 3))))[:, :, None, None]

    def attend(self, u: Tensor) -> Tensor:
        return u * self.excitation(u)

    def map_macs(self, c: int, h: int, w: int) -> int:
        return 2 * c * h * w  # pooling and scale, as SE's


# ---------------------------------------------------------------------------------------------------------------------
# SimAM


class SimAM(AttentionUnit):
    """SimAM, a parameter-free attention (Yang, Zhang, Li, Xie, ICML 2021, §3).

    Each neuron t of a channel gets the minimal energy of eq. 5, ``e*_t = 4(σ̂² + λ) / ((t − μ̂)² + 2σ̂² + 2λ)``,
    with μ̂ and σ̂² the channel's mean and variance over its M = H·W positions (σ̂² divides by M − 1, as in the
    authors' code); the output is ``sigmoid(1/e*) ⊙ u`` (a 3-D, per-position gate), where
    ``1/e* = (t − μ̂)² / (4(σ̂² + λ)) + 1/2``.

    Args:
        r: not used (SimAM has no parameters); accepted for the common signature.
        lam: λ of eq. 5; 1e-4 is the authors' module default.

    A 1×1 map has M − 1 = 0; there (t − μ̂) = 0, so the gate is σ(1/2) whatever σ̂², and this unit divides by
    max(M − 1, 1) to give exactly that (the authors' code computes 0/0 = NaN).
    """

    uses_r = False
    no_identity = "it has no parameters, and its gate sigmoid(1/e*) ≥ sigmoid(1/2) is never exactly 1"

    def __init__(self, channels: int, r: float = 16, *, lam: float = 1e-4) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        _check_r(r)
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0:
            raise ValueError(f"lam={lam!r} must be a positive number (λ of eq. 5; the authors' default is 1e-4)")
        self.lam = float(lam)

    def extra_repr(self) -> str:
        return f"{self.channels}, lam={self.lam}"

    def excitation(self, u: Tensor) -> Tensor:
        """The gate sigmoid(1/e*) (B, C, H, W)."""
        n = max(u.shape[2] * u.shape[3] - 1, 1)
        d = (u - u.mean((2, 3), keepdim=True)).square()  # (t − μ̂)²
        variance = d.sum((2, 3), keepdim=True) / n
        return torch.sigmoid(d / (4 * (variance + self.lam)) + 0.5)

    def attend(self, u: Tensor) -> Tensor:
        return u * self.excitation(u)

    def map_macs(self, c: int, h: int, w: int) -> int:
        return 6 * c * h * w  # mean, deviation, its square, variance sum, the energy's multiply-add, scale


# ---------------------------------------------------------------------------------------------------------------------
# Triplet attention


class _ZPoolGate(nn.Module):
    """One triplet branch's gate on a (B, 2, P, Q) Z-pooled map: σ(BN(conv_{k×k}(·))), (B, 1, P, Q)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.bn(self.conv(z)))


def _zpool(u: Tensor, dim: int) -> Tensor:
    """Z-pool along ``dim``: [max; mean] stacked as 2 channels in front of the two remaining axes."""
    return torch.stack([u.amax(dim), u.mean(dim)], dim=1)


class TripletAttention(AttentionUnit):
    """Triplet attention (Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend", WACV 2021, §3).

    Three branches, each gating u by a 2-D attention over one pair of its axes; the output averages them:
    ``y = (u ⊙ g_cw + u ⊙ g_hc + u ⊙ g_hw) / 3``. In each branch Z-pool reduces the third axis to
    [max; mean] (two channels) and a k×k convolution (2 → 1, no bias), BN and σ give the gate:

    * ``cw``: pooled over H, a gate over the (C, W) plane, (B, C, 1, W) (the paper's H-rotated branch);
    * ``hc``: pooled over W, a gate over the (H, C) plane, (B, C, H, 1) (the W-rotated branch);
    * ``hw``: pooled over C, a spatial gate over (H, W), (B, 1, H, W), as CBAM's.

    The paper rotates u so that each pair of axes becomes the spatial plane; the same gates are computed here on
    the pooled maps, and broadcasting does the rotation back (the planes keep the authors' orientation, so
    their weights load unchanged: key ``cw.conv.conv.weight`` is ``cw.conv.weight`` here).

    Args:
        r: not used (triplet attention has no reduction); accepted for the common signature.
        kernel_size: k (paper: 7; its README also lists k = 3).
        spatial: keep the (H, W) branch; False is the paper's two-branch ablation (the mean of two).
    """

    uses_r = False
    no_identity = _SIGMOID_GATE

    def __init__(self, channels: int, r: float = 16, *, kernel_size: int = 7, spatial: bool = True) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        _check_r(r)
        k = _check_odd("kernel_size", kernel_size)
        self.cw = _ZPoolGate(k)
        self.hc = _ZPoolGate(k)
        self.hw = _ZPoolGate(k) if spatial else None

    def extra_repr(self) -> str:
        return f"{self.channels}, spatial={self.hw is not None}"

    def excitation(self, u: Tensor) -> Tensor:
        """The averaged gate (B, C, H, W)."""
        g_cw = self.cw(_zpool(u, 2)).transpose(1, 2)  # (B, 1, C, W) → (B, C, 1, W)
        g_hc = self.hc(_zpool(u, 3).transpose(2, 3)).permute(0, 3, 2, 1)  # plane (H, C): (B, 1, H, C) → (B, C, H, 1)
        if self.hw is None:
            return (g_cw + g_hc) / 2
        return (g_cw + g_hc + self.hw(_zpool(u, 1))) / 3

    def attend(self, u: Tensor) -> Tensor:
        return u * self.excitation(u)

    def map_macs(self, c: int, h: int, w: int) -> int:
        branches = 2 if self.hw is None else 3  # each: Z-pool's max and mean over one axis, then the gates' sum
        return (2 * branches + branches + 1) * c * h * w  # (branches − 1) sums, the mean's division, scale


# ---------------------------------------------------------------------------------------------------------------------
# The registry

ATTENTION_UNITS: dict[str, type[nn.Module]] = {
    "se": SqueezeExcite,
    "eca": ECA,
    "cbam": CBAM,
    "ge": GatherExcite,
    "gc": GlobalContext,
    "srm": SRM,
    "coord": CoordinateAttention,
    "fca": MultiSpectralAttention,
    "ese": EffectiveSE,
    "simam": SimAM,
    "triplet": TripletAttention,
}


def unit_options(name: str) -> tuple[str, ...]:
    """The keyword options of the unit called ``name`` (all but ``channels`` and ``r``)."""
    params = inspect.signature(unit_class(name).__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def unit_class(name: str) -> type[nn.Module]:
    """The class of the unit called ``name``; ValueError naming the valid names (and close matches)."""
    if not isinstance(name, str) or name not in ATTENTION_UNITS:
        hints = difflib.get_close_matches(str(name), ATTENTION_UNITS, n=3, cutoff=0.5)
        close = f"close matches: {', '.join(hints)}; " if hints else ""
        raise ValueError(f"unknown attention unit {name!r}; {close}valid names: {', '.join(ATTENTION_UNITS)}")
    return ATTENTION_UNITS[name]


def make_attention(name: str, channels: int, r: float = 16, **options: object) -> nn.Module:
    """The attention unit ``name`` (a key of `ATTENTION_UNITS`) for ``channels`` channels.

    ``r`` is the reduction ratio where the unit has one (``uses_r``; SE always does) and is otherwise accepted and
    unused. ``options`` are the unit's keyword options; an unknown one raises TypeError naming the valid ones.
    """
    cls = unit_class(name)
    valid = unit_options(name)
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise TypeError(
            f"attention unit {name!r} has no option {unknown[0]!r}; its options are: {', '.join(valid) or 'none'}"
        )
    return cls(channels, r, **options)
