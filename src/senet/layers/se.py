"""The Squeeze-and-Excitation unit (Hu et al., "Squeeze-and-Excitation Networks", TPAMI 2019, §3).

`SqueezeExcite` is the one SE module of senet; every model builds its SE units from it. Its forward is the paper's
three equations, squeeze (eq. 2), excitation (eq. 3) and scale (eq. 4); where a faster computation of the same
numbers applies (training, in-place inference, Triton kernels on CUDA), `senet.layers.fast` chooses and runs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from . import fast
from .fused import KernelChoice

__all__ = ["GATES", "ROUNDINGS", "SQUEEZES", "SqueezeExcite", "check_choice", "reduced_width"]

SQUEEZES = ("avg", "max", "avgmax", "none")
GATES = ("sigmoid", "hard_sigmoid", "tanh", "relu", "sigmoid_x2")
ROUNDINGS = ("floor", "round8")


def check_choice(name: str, value: str, options: Sequence[str]) -> str:
    """``value`` if it is one of ``options``, else ValueError naming them."""
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
    check_choice("rounding", rounding, ROUNDINGS)
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


def identity_problem(gate: str, bias: bool, prefix: str = "") -> str | None:
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


class SqueezeExcite(KernelChoice, nn.Module):
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
    the original Caffe models), which is how residual blocks call it. ``kernel`` says whether the scale runs as the
    Triton kernel on CUDA (``"triton"``, set by ``use_kernel`` or `senet.fused.use_triton`) or as torch operations.
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
        self.squeeze_kind = check_choice("squeeze", squeeze, SQUEEZES)
        self.gate_name = check_choice("gate", gate, GATES)
        self.conv = bool(conv or squeeze == "none")
        if self.conv:
            self.fc1 = nn.Conv2d(channels, reduced, 1, bias=bias)
            self.fc2 = nn.Conv2d(reduced, channels, 1, bias=bias)
        else:
            self.fc1 = nn.Linear(channels, reduced, bias=bias)
            self.fc2 = nn.Linear(reduced, channels, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.gate = _GATE_MODULES[gate]()

    @property
    def fuses_relu(self) -> bool:
        """Whether ``forward(u, shortcut, relu=True)`` runs the ReLU in the same kernel (the Triton path), so that a
        block should ask the unit for it rather than apply its own ReLU after the addition."""
        return self.kernel == "triton"

    def extra_repr(self) -> str:
        return f"{self.channels}, reduced={self.reduced}, squeeze={self.squeeze_kind!r}, gate={self.gate_name!r}"

    # -- the paper's equations -------------------------------------------------------------------------------------

    def squeeze(self, u: Tensor) -> Tensor:
        """Squeeze (eq. 2): the channel descriptor z, (B, C); the map itself for ``squeeze="none"``."""
        if self.squeeze_kind == "avg":
            return fast.mean_hw(u)
        if self.squeeze_kind == "max":
            return u.amax((2, 3))
        if self.squeeze_kind == "avgmax":
            return 0.5 * (fast.mean_hw(u) + u.amax((2, 3)))
        return u  # "none": excite every position

    def excite(self, z: Tensor) -> Tensor:
        """Excitation (eq. 3) of a squeezed descriptor ``z`` (B, C): the gate s = σ(W2 δ(W1 z)), (B, C, 1, 1).

        The FCs run on the (B, C) matrix, one matrix product each, never on a (B, C, 1, 1) map; a (B, C, H, W)
        ``z`` (``squeeze="none"``) gets a gate per position. `senet.optimize_for_inference` enters one step later, at
        `excite_reduced`, with fc1 multiplied into the weights of the convolution that produced ``u``.
        """
        if self.conv and self.squeeze_kind != "none":
            z = z[:, :, None, None]  # the 1×1-convolution form works on (B, C, 1, 1)
        return self.excite_reduced(self.fc1(z))

    def excite_reduced(self, a: Tensor) -> Tensor:
        """The rest of the excitation after fc1: the gate ``σ(W2 δ(a))`` for ``a = W1 z + b1``, (B, C, 1, 1).

        ``a`` is (B, C/r) from a linear fc1, (B, C/r, 1, 1) from a convolution, (B, C/r, H, W) with
        ``squeeze="none"``; the shape follows from the unit's form, not from the tensor (an fx trace cannot read it).
        """
        s = self.gate(self.fc2(self.act(a)))
        return s if self.conv else s[:, :, None, None]

    def excitation(self, u: Tensor) -> Tensor:
        """The gate ``s`` for the map ``u`` (eq. 2, then 3): (B, C, 1, 1), or (B, C, H, W) for ``squeeze="none"``."""
        return self.excite(self.squeeze(u))

    def scale(self, u: Tensor, s: Tensor, shortcut: Tensor | None = None, *, inplace: bool = False) -> Tensor:
        """Scale (eq. 4), ``s·u``; ``s·u + shortcut`` in one operation when a shortcut is given (see `forward`)."""
        return fast.scale(self, u, s, shortcut, inplace=inplace)

    def forward(
        self, u: Tensor, shortcut: Tensor | None = None, *, inplace: bool = False, relu: bool = False
    ) -> Tensor:
        """``s·u``, or ``s·u + shortcut`` in one pass over memory (the original models' "Axpy" layer).

        ``inplace=True`` lets the unit write the result into ``u`` (as ``nn.ReLU(inplace=True)`` does) where nothing
        can read ``u`` afterwards (see `senet.layers.fast`); blocks pass it for their own intermediate maps.
        ``relu=True`` applies ReLU to the result (fused into the same kernel where `fuses_relu`).
        """
        path = fast.choose(self, u, inplace=inplace)
        if path is not None:  # the same numbers, computed with less memory traffic
            return path(self, u, shortcut, relu=relu)
        s = self.excite(self.squeeze(u))  # eq. 2 and 3
        out = u * s if shortcut is None else torch.addcmul(shortcut, u, s)  # eq. 4 (+ the residual addition)
        return torch.relu_(out) if relu else out  # ``out`` is a fresh tensor

    @torch.no_grad()
    def reset_to_identity(self) -> None:
        """Make the unit the identity map (gate exactly 1) while leaving it trainable; needs a gate that reaches 1.

        fc2's weights become zero and its bias the value where the gate is 1. Gradients still reach fc2, so
        training moves the gates away from 1 from the first step.
        """
        problem = identity_problem(self.gate_name, self.fc2.bias is not None)
        if problem:
            raise ValueError(problem)
        self.fc2.weight.zero_()
        self.fc2.bias.fill_(_IDENTITY_BIAS[self.gate_name])
