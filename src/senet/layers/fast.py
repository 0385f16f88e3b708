"""The fast paths of `SqueezeExcite.forward`: the same numbers as eq. 2–4 written out, with less memory traffic.

`choose` picks one per call, in this order, and returns None where the plain equations should run:

* traced (``torch.compile``, ``torch.jit.trace``, export, ``torch.fx.symbolic_trace``): None. A compiler plans
  memory and fuses operations itself, so it gets the pure function; an fx trace records it.
* ``kernel == "triton"`` on a CUDA tensor (`senet.fused.use_triton`): `_triton`, the scale, residual addition and
  ReLU as one kernel (`senet.layers.fused`).
* recording gradients: `_training`. The scale has a written-out backward (`_ScaleAdd`: ∂L/∂s = Σ_HW g·u needs one
  full-size temporary where autograd's needs two), and with average pooling the squeeze's backward completes ∂L/∂u in
  one pass (`_SqueezeMean`, with what the scale hands it through a `GradHandoff`) instead of three.
* ``inplace=True`` and nothing can read ``u`` afterwards: `_in_place`, the result written into ``u``. Fresh memory of
  several MB costs page faults at every call on a CPU. "Nothing can read it": autograd does not need it (no gradient
  is recorded) and no forward hook is registered (a hook may keep the unit's input).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["GradHandoff", "choose", "mean_hw", "scale", "traced"]

Path = Callable[..., Tensor]


def mean_hw(u: Tensor) -> Tensor:
    """Global average pooling (eq. 2), (B, C, H, W) → (B, C): the sum over H×W, then a division of the small result.

    The same numbers as ``u.mean((2, 3))`` (which sums, then divides), but its gradient stays a broadcast view until
    autograd adds it into the gradient of ``u``; ``mean``'s backward writes a full (B, C, H, W) tensor first.
    """
    return u.sum((2, 3)) / (u.shape[2] * u.shape[3])


def traced(u: Tensor) -> bool:
    """Whether a compiler or tracer is recording the operations on ``u`` (it then gets the plain ones). Under
    ``torch.fx.symbolic_trace`` (torchvision's ``create_feature_extractor``) ``u`` is an ``fx.Proxy``, whose
    attributes such as ``requires_grad`` cannot be read as Python values."""
    return isinstance(u, torch.fx.Proxy) or torch.compiler.is_compiling() or torch.jit.is_tracing()


def _hooked(unit: nn.Module) -> bool:
    """Whether a forward hook may see the unit's input after the unit returns: one of the unit's own, or a global one
    (torch keeps those in a private registry; reading it is the only way to know of them)."""
    return bool(unit._forward_hooks) or bool(nn.modules.module._global_forward_hooks)


def _recording(unit: nn.Module, u: Tensor) -> bool:
    return torch.is_grad_enabled() and (u.requires_grad or any(p.requires_grad for p in unit.parameters()))


def _per_channel(u: Tensor, s: Tensor) -> bool:
    return s.shape == (*u.shape[:2], 1, 1)


def choose(unit: nn.Module, u: Tensor, *, inplace: bool) -> Path | None:
    """The path for ``unit(u)`` (see the module docstring), or None for the equations as written."""
    if traced(u):
        return None
    if unit.kernel == "triton" and unit.squeeze_kind != "none":
        from . import fused

        if fused.available(u.device) and u.numel() <= fused.MAX_NUMEL:
            return _triton
    if _recording(unit, u):
        return _training
    if inplace and not _hooked(unit):
        return _in_place
    return None


def _relu(out: Tensor, relu: bool) -> Tensor:
    return torch.relu_(out) if relu else out  # ``out`` is the path's own result


def _in_place(unit: nn.Module, u: Tensor, shortcut: Tensor | None, *, relu: bool) -> Tensor:
    s = unit.excitation(u)
    out = u.mul_(s) if shortcut is None else torch.addcmul(shortcut, u, s, out=u)
    return _relu(out, relu)


def _training(unit: nn.Module, u: Tensor, shortcut: Tensor | None, *, relu: bool) -> Tensor:
    handoff = GradHandoff() if unit.squeeze_kind == "avg" and u.requires_grad else None
    s = unit.excite(_SqueezeMean.apply(u, handoff)) if handoff is not None else unit.excitation(u)
    if not _per_channel(u, s):  # squeeze="none": a gate per position, autograd's own backward
        return _relu(u * s if shortcut is None else torch.addcmul(shortcut, u, s), relu)
    return _relu(_ScaleAdd.apply(u, s, shortcut, handoff), relu)


def _triton(unit: nn.Module, u: Tensor, shortcut: Tensor | None, *, relu: bool) -> Tensor:
    from .fused import scale_add

    training = torch.is_grad_enabled() and u.requires_grad and unit.squeeze_kind == "avg"
    handoff = GradHandoff() if training else None
    s = unit.excite(_SqueezeMean.apply(u, handoff)) if handoff is not None else unit.excitation(u)
    return scale_add(u, s, shortcut, relu=relu, handoff=handoff)


def scale(unit: nn.Module, u: Tensor, s: Tensor, shortcut: Tensor | None, *, inplace: bool = False) -> Tensor:
    """Eq. 4 for a given gate: ``s·u`` (+ ``shortcut``), by the fastest path that computes the same numbers."""
    if not traced(u):
        recording = torch.is_grad_enabled() and (u.requires_grad or s.requires_grad)
        if recording and _per_channel(u, s):
            return _ScaleAdd.apply(u, s, shortcut, None)
        if inplace and not recording and not _hooked(unit):
            return u.mul_(s) if shortcut is None else torch.addcmul(shortcut, u, s, out=u)
    return u * s if shortcut is None else torch.addcmul(shortcut, u, s)


class GradHandoff:
    """Carries the scale's part of ∂L/∂u to the squeeze's backward, which then writes ∂L/∂u in one pass.

    u feeds two operations, the squeeze and the scale. Left to autograd, the scale's backward writes g·s, the
    squeeze's writes (or broadcasts) ∂L/∂z / HW, and autograd adds the two: three passes over the map, and on CUDA
    the broadcast addition alone costs as much as several dense ones. The squeeze's backward always runs after the
    scale's (the gate depends on the squeeze), so the scale's backward leaves ``finish`` here: a function that turns
    the squeeze's part, ∂L/∂z / HW of shape (B, C, 1, 1), into the whole ∂L/∂u = g·s + ∂L/∂z / HW.
    """

    __slots__ = ("finish",)

    def __init__(self) -> None:
        self.finish: Callable[[Tensor], Tensor] | None = None

    @staticmethod
    def accepts() -> bool:
        """False during a double backward (autograd must then see every operation): compute ∂L/∂u yourself."""
        return not torch.is_grad_enabled()


class _SqueezeMean(torch.autograd.Function):
    """Global average pooling whose backward completes ∂L/∂u with what the scale left in a `GradHandoff`."""

    @staticmethod
    def forward(u: Tensor, handoff: GradHandoff) -> Tensor:
        return mean_hw(u)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
        u, ctx.handoff = inputs
        ctx.shape = u.shape

    @staticmethod
    def backward(ctx, dz: Tensor) -> tuple[Tensor, None]:
        B, C, H, W = ctx.shape
        gz = (dz / (H * W))[:, :, None, None]
        finish, ctx.handoff.finish = ctx.handoff.finish, None
        if finish is None:  # the scale's part went to autograd (or nowhere): broadcast as mean's backward does
            return gz.expand(B, C, H, W), None
        return finish(gz), None


class _ScaleAdd(torch.autograd.Function):
    """``s·u + shortcut`` (or ``s·u``) with the backward of eq. 4 written out, for training.

    autograd's own backward of ``addcmul`` with a broadcast gate ``s`` computes ∂L/∂s as sum_HW(g · (u · 1)): two
    full-size temporaries per block (2× the time of one on a 2-core CPU). Here ∂L/∂s = sum_HW(g·u) needs one,
    and ∂L/∂u = g·s; ∂L/∂shortcut = g is passed on as is. Given a `GradHandoff`, ∂L/∂u is left to the squeeze's
    backward instead. The backward is made of differentiable operations, so double backward works (without it).
    """

    @staticmethod
    def forward(u: Tensor, s: Tensor, shortcut: Tensor | None, handoff: GradHandoff | None = None) -> Tensor:
        return u * s if shortcut is None else torch.addcmul(shortcut, u, s)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
        u, s, _, ctx.handoff = inputs
        ctx.layout = torch.contiguous_format if u.is_contiguous() else torch.channels_last
        ctx.save_for_backward(u, s)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        u, s = ctx.saved_tensors
        need_u, need_s, need_shortcut, _ = ctx.needs_input_grad
        handed = need_u and ctx.handoff is not None and ctx.handoff.accepts()
        if handed:
            shape, layout = u.shape, ctx.layout  # not u itself: the closure must not keep it alive

            def finish(gz: Tensor) -> Tensor:  # ∂L/∂u = g·s + ∂L/∂z / HW, written once, in u's layout
                du = torch.empty(shape, dtype=g.dtype, device=g.device, memory_format=layout)
                return torch.addcmul(gz.to(g.dtype), g, s, out=du)

            ctx.handoff.finish = finish
        return (
            g * s if need_u and not handed else None,
            (g * u).sum((2, 3), keepdim=True) if need_s else None,
            g if need_shortcut else None,
            None,
        )
