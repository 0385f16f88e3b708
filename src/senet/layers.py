"""The Squeeze-and-Excitation block (Hu et al., "Squeeze-and-Excitation Networks", TPAMI 2019, §3).

`SqueezeExcite` is the one SE module of senet; every model builds its SE units from it. `SEConfig` describes
how a network uses it (reduction ratio per stage, which stages, where in the block: paper §6.5 and Fig. 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GATES", "INITS", "POSITIONS", "ROUNDINGS", "SQUEEZES", "SEConfig", "SqueezeExcite", "reduced_width"]

SQUEEZES = ("avg", "max", "avgmax", "none")
GATES = ("sigmoid", "hard_sigmoid", "tanh", "relu", "sigmoid_x2")
ROUNDINGS = ("floor", "round8")
INITS = ("default", "identity")
# Where the SE unit sits in a residual block (paper Fig. 5 and Table 15):
#   standard   on the residual branch, after its last BN, before the addition (Fig. 3)
#   pre        before the residual unit, on the input of the residual branch (SE-PRE)
#   post       after the addition with the identity branch, after its ReLU (SE-POST)
#   identity   on the identity branch, in parallel to the residual unit (SE-Identity)
#   after_3x3  inside a bottleneck, after the 3×3 convolution (SE_3×3)
POSITIONS = ("standard", "pre", "post", "identity", "after_3x3")


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, options))}")
    return value


def reduced_width(channels: int, r: float = 16, rounding: str = "floor") -> int:
    """Width C/r of the excitation bottleneck.

    ``"floor"`` is the paper's and the released models' rule, floor(C/r) with a minimum of 1; ``"round8"`` is the
    rule of timm and mmpretrain: C/r rounded to the nearest multiple of 8, at least 8 (C = 64, r = 16: 4 vs 8).
    """
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
        raise ValueError(f"reduction ratio r={r!r} must be a positive number (the paper uses r=16)")
    if r > channels:
        raise ValueError(f"reduction ratio r={r!r} exceeds the {channels} channels it reduces; use r <= {channels}")
    _choice("rounding", rounding, ROUNDINGS)
    if rounding == "floor":
        return max(1, int(channels // r))
    return max(8, int(channels / r + 4) // 8 * 8)


class _Sigmoid2x(nn.Module):
    """2·σ(z): a gate in (0, 2) that is exactly 1 at z = 0, so an SE unit can start as the identity."""

    def forward(self, z: Tensor) -> Tensor:
        return 2.0 * torch.sigmoid(z)


_GATE_MODULES = {
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid_x2": _Sigmoid2x,
}
# fc2 bias that makes each gate output exactly 1 when fc2's weights are zero (see reset_to_identity).
_IDENTITY_BIAS = {"sigmoid_x2": 0.0, "relu": 1.0, "hard_sigmoid": 3.0}


def _identity_problem(gate: str, bias: bool, prefix: str = "") -> str | None:
    """Why a unit with this gate and fc2 bias cannot start as the identity (None if it can); options named with
    ``prefix`` (``"se_"`` for the create_model options)."""
    if gate not in _IDENTITY_BIAS or not bias:
        return (
            f"an SE unit with {prefix}gate={gate!r} and {prefix}bias={bias} cannot output exactly 1; "
            f"use {prefix}gate='sigmoid_x2' (or 'relu') with {prefix}bias=True"
        )
    if gate == "hard_sigmoid":
        flat = f"{prefix}gate='hard_sigmoid' is flat where it reaches 1 and would never train"
        return f"{flat}; use {prefix}gate='sigmoid_x2'"
    return None


def _mean_hw(u: Tensor) -> Tensor:
    """Global average pooling (eq. 2), (B, C, H, W) → (B, C): the sum over H×W, then a division of the small result.

    The same numbers as ``u.mean((2, 3))`` (which sums, then divides), but its gradient stays a broadcast view until
    autograd adds it into the gradient of ``u``; ``mean``'s backward writes a full (B, C, H, W) tensor first.
    """
    return u.sum((2, 3)) / (u.shape[2] * u.shape[3])


class _GradBox:
    """Hands ∂L/∂(s·u) and the gate from the scale's backward to the squeeze's, which completes ∂L/∂u in one pass.

    u feeds two operations, the squeeze and the scale. Left to autograd, the scale's backward writes g·s, the
    squeeze's writes (or broadcasts) ∂L/∂z / HW, and autograd adds the two: three passes over the map, and on CUDA
    the broadcast addition alone costs as much as several dense ones. The squeeze's backward always runs after the
    scale's (the gate depends on the squeeze), so the scale leaves its part here and the squeeze writes
    ∂L/∂u = g·s + ∂L/∂z / HW at once (``torch.addcmul``, or the Triton kernel where ``kernel`` says so).
    """

    __slots__ = ("g", "kernel", "s")

    def __init__(self) -> None:
        self.g: Tensor | None = None
        self.s: Tensor | None = None
        self.kernel = "torch"

    def take(self, g: Tensor, s: Tensor, kernel: str = "torch") -> bool:
        """Keep ``g`` and ``s`` for the squeeze's backward; False (keep nothing) where it cannot use them."""
        if torch.is_grad_enabled():
            return False  # a double backward: leave it to autograd
        self.g, self.s, self.kernel = g, s, kernel
        return True


class _SqueezeMean(torch.autograd.Function):
    """Global average pooling whose backward completes ∂L/∂u with what the scale left in a `_GradBox`."""

    @staticmethod
    def forward(u: Tensor, box: _GradBox) -> Tensor:
        return _mean_hw(u)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
        u, ctx.box = inputs
        ctx.shape = u.shape
        ctx.layout = torch.contiguous_format if u.is_contiguous() else torch.channels_last

    @staticmethod
    def backward(ctx, dz: Tensor) -> tuple[Tensor, None]:
        box, (B, C, H, W) = ctx.box, ctx.shape
        gz = (dz / (H * W))[:, :, None, None]
        g, s = box.g, box.s
        box.g = box.s = None
        if g is None:  # the scale's part went to autograd (or nowhere): broadcast as mean's backward does
            return gz.expand(B, C, H, W), None
        if box.kernel == "triton":
            from .fused import scale_add

            return scale_add(g, s, None, bias=gz), None
        du = torch.empty((B, C, H, W), dtype=g.dtype, device=g.device, memory_format=ctx.layout)  # u's layout
        return torch.addcmul(gz.to(g.dtype), g, s, out=du), None


class _ScaleAdd(torch.autograd.Function):
    """``s·u + shortcut`` (or ``s·u``) with the backward of eq. 4 written out, for training.

    autograd's own backward of ``addcmul`` with a broadcast gate ``s`` computes ∂L/∂s as sum_HW(g · (u · 1)): two
    full-size temporaries per block (2× the time of one on a 2-core CPU). Here ∂L/∂s = sum_HW(g·u) needs one,
    and ∂L/∂u = g·s; ∂L/∂shortcut = g is passed on as is. Given a `_GradBox` (from `SqueezeExcite.forward`), ∂L/∂u
    is left to the squeeze's backward instead. The backward is made of differentiable operations, so double
    backward works (without the box).
    """

    @staticmethod
    def forward(u: Tensor, s: Tensor, shortcut: Tensor | None, box: _GradBox | None = None) -> Tensor:
        return u * s if shortcut is None else torch.addcmul(shortcut, u, s)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
        u, s, _, ctx.box = inputs
        ctx.save_for_backward(u, s)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        u, s = ctx.saved_tensors
        need_u, need_s, need_shortcut, _ = ctx.needs_input_grad
        handed = need_u and ctx.box is not None and ctx.box.take(g, s)
        return (
            g * s if need_u and not handed else None,
            (g * u).sum((2, 3), keepdim=True) if need_s else None,
            g if need_shortcut else None,
            None,
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation unit: rescale each channel of ``u`` by a gate computed from the whole map.

    With ``u`` of shape (B, C, H, W), following the paper's equations:

    * squeeze (eq. 2): ``z_c = F_sq(u_c)``, global average pooling by default (``squeeze``: ``"avg"``,
      ``"max"``, ``"avgmax"`` = (avg + max) / 2, or ``"none"`` for the paper's NoSqueeze ablation, Table 16,
      where the two FCs become 1×1 convolutions applied at every position);
    * excitation (eq. 3): ``s = σ(W2 δ(W1 z))`` with ``W1`` of shape (C/r, C) as ``fc1``, ``δ`` = ReLU,
      ``W2`` of shape (C, C/r) as ``fc2`` and ``σ`` chosen by ``gate`` (the paper's Table 12 compares sigmoid,
      tanh and ReLU; ``"hard_sigmoid"`` is MobileNetV3's; ``"sigmoid_x2"`` = 2σ is 1 at zero, used to insert SE
      into a trained network without changing its function);
    * scale (eq. 4): ``x̃_c = s_c · u_c``.

    Args:
        channels: C, the channels of the map the unit rescales.
        r: reduction ratio; the bottleneck has ``reduced_width(C, r, rounding)`` channels (paper: r = 16).
        reduced: an explicit bottleneck width instead of ``r``.
        rounding: ``"floor"`` (paper, floor(C/r) ≥ 1) or ``"round8"`` (timm, nearest multiple of 8, ≥ 8).
        bias: biases in the two FCs (the released models have them).
        conv: hold W1, W2 as 1×1 convolutions (as the seed code and the Caffe models) rather than linear layers;
            the two forms compute the same function.

    ``forward(u, shortcut)`` with a shortcut returns ``s·u + shortcut`` in one fused operation (the "Axpy" layer of
    the original Caffe models), which is how residual blocks call it.
    """

    def __init__(
        self,
        channels: int,
        r: float = 16,
        *,
        reduced: int | None = None,
        rounding: str = "floor",
        squeeze: str = "avg",
        gate: str = "sigmoid",
        bias: bool = True,
        conv: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels={channels!r} must be a positive int")
        if reduced is None:
            reduced = reduced_width(channels, r, rounding)
        elif not isinstance(reduced, int) or not 1 <= reduced <= channels:
            raise ValueError(f"reduced={reduced!r} must be an int in [1, {channels}] (or leave it None to use r)")
        self.channels = channels
        self.reduced = reduced
        self.squeeze = _choice("squeeze", squeeze, SQUEEZES)
        self.gate_name = _choice("gate", gate, tuple(_GATE_MODULES))
        self.conv = bool(conv or squeeze == "none")
        if self.conv:
            self.fc1 = nn.Conv2d(channels, reduced, 1, bias=bias)
            self.fc2 = nn.Conv2d(reduced, channels, 1, bias=bias)
        else:
            self.fc1 = nn.Linear(channels, reduced, bias=bias)
            self.fc2 = nn.Linear(reduced, channels, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.gate = _GATE_MODULES[gate]()

    def extra_repr(self) -> str:
        return f"{self.channels}, reduced={self.reduced}, squeeze={self.squeeze!r}, gate={self.gate_name!r}"

    def _squeeze(self, u: Tensor) -> Tensor:
        if self.squeeze == "avg":
            return _mean_hw(u)  # (B, C)
        if self.squeeze == "max":
            return u.amax((2, 3))
        if self.squeeze == "avgmax":
            return 0.5 * (_mean_hw(u) + u.amax((2, 3)))
        return u  # "none": excite every position

    def excitation(self, u: Tensor) -> Tensor:
        """The gate ``s`` for ``u``: (B, C, 1, 1), or (B, C, H, W) for ``squeeze="none"``."""
        return self.excite(self._squeeze(u))

    def excite(self, z: Tensor) -> Tensor:
        """Excitation (eq. 3) of a squeezed descriptor ``z`` (B, C): the gate, (B, C, 1, 1).

        The FCs run on the (B, C) matrix, one matrix product each, never on a (B, C, 1, 1) map; a (B, C, H, W)
        ``z`` (``squeeze="none"``) gets a gate per position. `senet.optimize_for_inference` enters one step later, at
        `excite_reduced`, with fc1 multiplied into the weights of the convolution that produced ``u``.
        """
        if self.conv and z.ndim == 2:
            z = z[:, :, None, None]  # the 1×1-convolution form works on (B, C, 1, 1)
        return self.excite_reduced(self.fc1(z))

    def excite_reduced(self, a: Tensor) -> Tensor:
        """The rest of the excitation after fc1: the gate ``σ(W2 δ(a))`` for ``a = W1 z + b1``, (B, C, 1, 1)."""
        if self.conv and a.ndim == 2:
            a = a[:, :, None, None]
        s = self.gate(self.fc2(self.act(a)))
        return s if s.ndim == 4 else s[:, :, None, None]

    kernel = "torch"  # "triton": the scale runs as one Triton kernel on CUDA in eager mode (senet.fused.use_triton)

    def forward(
        self, u: Tensor, shortcut: Tensor | None = None, *, inplace: bool = False, relu: bool = False
    ) -> Tensor:
        """``s·u``, or ``s·u + shortcut`` in one pass over memory (the original models' "Axpy" layer).

        ``inplace=True`` lets the unit write the result into ``u`` (as ``nn.ReLU(inplace=True)`` does) when nothing
        can read ``u`` afterwards: autograd does not need it (no gradient is being recorded through the unit) and
        no forward hook is registered (a hook may read the unit's input after it returns). Blocks pass it for
        their own intermediate maps: fresh memory of several MB costs page faults at every call on CPU.
        ``relu=True`` applies ReLU to the result (fused into the same kernel on the Triton path).
        """
        box = None
        if self.squeeze == "avg" and torch.is_grad_enabled() and u.requires_grad and not self._traced():
            box = _GradBox()  # training: the squeeze's backward will complete ∂L/∂u (compilers get plain operations)
        s = self.excite(_SqueezeMean.apply(u, box)) if box is not None else self.excitation(u)
        if self.kernel == "triton" and not self._traced() and s.shape == (*u.shape[:2], 1, 1):
            from . import fused

            if fused.available(u.device) and u.numel() <= fused.MAX_NUMEL:
                return fused.scale_add(u, s, shortcut, relu=relu, box=box)
        out = self._scale(u, s, shortcut, inplace=inplace, box=box)
        return torch.relu_(out) if relu else out

    def scale(self, u: Tensor, s: Tensor, shortcut: Tensor | None = None, *, inplace: bool = False) -> Tensor:
        """Scale (eq. 4), ``s·u``, fused with the residual addition when ``shortcut`` is given; see `forward`."""
        return self._scale(u, s, shortcut, inplace=inplace)

    def _scale(
        self, u: Tensor, s: Tensor, shortcut: Tensor | None, *, inplace: bool, box: _GradBox | None = None
    ) -> Tensor:
        if inplace and self._may_overwrite(u, s):
            return u.mul_(s) if shortcut is None else torch.addcmul(shortcut, u, s, out=u)
        if self._recording(u, s) and not self._traced() and s.shape == (*u.shape[:2], 1, 1):
            return _ScaleAdd.apply(u, s, shortcut, box)  # training: the lean backward
        return u * s if shortcut is None else torch.addcmul(shortcut, u, s)

    @staticmethod
    def _recording(u: Tensor, s: Tensor) -> bool:
        return torch.is_grad_enabled() and (u.requires_grad or s.requires_grad)

    @staticmethod
    def _traced() -> bool:
        return torch.compiler.is_compiling() or torch.jit.is_tracing()

    def _may_overwrite(self, u: Tensor, s: Tensor) -> bool:
        if self._traced():
            return False  # a compiler or exporter plans memory itself; give it the pure function
        hooked = bool(self._forward_hooks) or bool(nn.modules.module._global_forward_hooks)
        return not self._recording(u, s) and not hooked

    @torch.no_grad()
    def reset_to_identity(self) -> None:
        """Make the unit the identity map (gate exactly 1) while leaving it trainable; needs a gate that reaches 1.

        fc2's weights become zero and its bias the value where the gate is 1. Gradients still reach fc2, so
        training moves the gates away from 1 from the first step.
        """
        problem = _identity_problem(self.gate_name, self.fc2.bias is not None)
        if problem:
            raise ValueError(problem)
        self.fc2.weight.zero_()
        self.fc2.bias.fill_(_IDENTITY_BIAS[self.gate_name])


@dataclass(frozen=True)
class SEConfig:
    """How a network uses SE: the unit's options, where it sits in each block and in which stages.

    ``r`` is one ratio for every stage or one per stage (the paper's Table 10 uses one; a per-stage r is common
    in mobile networks). ``stages`` lists the 1-based stages that get SE (paper Table 13: SE in conv2_x only is
    ``stages=(1,)``); None means all. ``init="identity"`` asks `senet.create_model` to start every unit as the
    identity after the family's own initialisation (gate exactly 1, see `SqueezeExcite.reset_to_identity`), so a
    fresh SE network computes what its plain twin with the same weights computes and the gates move away from 1 as
    it trains; it needs ``gate="sigmoid_x2"`` (or ``"relu"``). Networks built directly from an SEConfig are left
    as their family initialises them.
    """

    r: float | tuple[float, ...] = 16
    reduced: int | None = None
    rounding: str = "floor"
    squeeze: str = "avg"
    gate: str = "sigmoid"
    bias: bool = True
    conv: bool = False
    position: str = "standard"
    stages: tuple[int, ...] | None = None
    init: str = "default"

    def __post_init__(self) -> None:
        _choice("se_position", self.position, POSITIONS)
        _choice("se_squeeze", self.squeeze, SQUEEZES)
        _choice("se_gate", self.gate, GATES)
        _choice("se_rounding", self.rounding, ROUNDINGS)
        _choice("se_init", self.init, INITS)
        problem = _identity_problem(self.gate, self.bias, prefix="se_") if self.init == "identity" else None
        if problem:
            raise ValueError(f"se_init='identity': {problem}")
        if isinstance(self.r, list):
            object.__setattr__(self, "r", tuple(self.r))
        if self.stages is not None:
            stages = (self.stages,) if isinstance(self.stages, int) else tuple(self.stages)
            if not all(isinstance(s, int) and not isinstance(s, bool) for s in stages):
                raise ValueError(f"se_stages={self.stages!r} must be stage numbers such as (1, 2, 3, 4)")
            object.__setattr__(self, "stages", stages)

    @classmethod
    def from_options(
        cls,
        *,
        r: float | Sequence[float] = 16,
        se_reduced: int | None = None,
        se_rounding: str = "floor",
        se_squeeze: str = "avg",
        se_gate: str = "sigmoid",
        se_bias: bool = True,
        se_conv: bool = False,
        se_position: str = "standard",
        se_stages: Sequence[int] | int | None = None,
        se_init: str = "default",
    ) -> SEConfig:
        """Build from the flat ``create_model`` options (``r``, ``se_position``, ``se_stages``, ...)."""
        return cls(
            r=tuple(r) if isinstance(r, (list, tuple)) else r,
            reduced=se_reduced,
            rounding=se_rounding,
            squeeze=se_squeeze,
            gate=se_gate,
            bias=se_bias,
            conv=se_conv,
            position=se_position,
            stages=se_stages if se_stages is None or isinstance(se_stages, int) else tuple(se_stages),
            init=se_init,
        )

    def check(self, num_stages: int, positions: Sequence[str], family: str) -> None:
        """Raise ValueError unless this config fits a ``family`` network of ``num_stages`` stages."""
        if self.position not in positions:
            raise ValueError(
                f"se_position={self.position!r} is not available in {family}; choose one of {', '.join(positions)}"
            )
        if isinstance(self.r, tuple) and len(self.r) != num_stages:
            raise ValueError(f"r={self.r!r} gives {len(self.r)} ratios for a network of {num_stages} stages")
        if self.stages is not None:
            bad = [s for s in self.stages if not 1 <= s <= num_stages]
            if bad:
                raise ValueError(f"se_stages={self.stages!r}: stages are numbered 1..{num_stages}; got {bad}")

    def ratio(self, stage: int) -> float:
        return self.r[stage - 1] if isinstance(self.r, tuple) else self.r

    def in_stage(self, stage: int) -> bool:
        return self.stages is None or stage in self.stages

    def make(self, channels: int, stage: int) -> SqueezeExcite:
        """The SE unit for a block of ``stage`` (1-based) rescaling ``channels`` channels."""
        return SqueezeExcite(
            channels,
            self.ratio(stage),
            reduced=self.reduced,
            rounding=self.rounding,
            squeeze=self.squeeze,
            gate=self.gate,
            bias=self.bias,
            conv=self.conv,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def se_for_block(se: SEConfig | None, stage: int) -> SEConfig | None:
    """The config a block of ``stage`` should use: None where SE is off for that stage."""
    return se if se is not None and se.in_stage(stage) else None


def global_pool(x: Tensor) -> Tensor:
    """Global average pooling to (B, C)."""
    return F.adaptive_avg_pool2d(x, 1).flatten(1)
