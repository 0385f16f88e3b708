"""The fast paths of `SqueezeExcite.forward`: the same numbers as eq. 2–4 written out, with less memory traffic.

`choose` picks one per call, in this order, and returns None where the plain equations should run:

* traced (``torch.compile``, ``torch.jit.trace``, export, ``torch.fx.symbolic_trace``): None. A compiler plans
  memory and fuses operations itself, so it gets the pure function; an fx trace records it.
* ``kernel == "triton"`` on a CUDA tensor (`senet.fused.use_triton`): `_triton`, the scale, residual addition and
  ReLU as one kernel (`senet.layers.fused`).
* recording gradients: `_training`. The scale has a written-out backward (`fused.ScaleAdd`: ∂L/∂s = Σ_HW g·u needs one
  full-size temporary where autograd's needs two), and with average pooling the squeeze's backward completes ∂L/∂u in
  one pass (`fused.SqueezeMean`, with what the scale hands it through a `fused.GradHandoff`) instead of three.
* ``inplace=True`` and nothing can read ``u`` afterwards: `_in_place`, the result written into ``u``. Fresh memory of
  several MB costs page faults at every call on a CPU. "Nothing can read it": autograd does not need it (no gradient
  is recorded) and no forward hook or forward pre-hook is registered (a hook may keep the unit's input).

The fused operations themselves (autograd functions, kernels, the `GradHandoff` between them) live in
`senet.layers.fused`, which imports nothing else of senet: the imports run se → fast → fused.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from . import fused
from .fused import GradHandoff, mean_hw

__all__ = ["choose", "mean_hw", "scale", "traced"]

Path = Callable[..., Tensor]


def traced(u: Tensor) -> bool:
    """Whether a compiler or tracer is recording the operations on ``u`` (it then gets the plain ones). Under
    ``torch.fx.symbolic_trace`` (torchvision's ``create_feature_extractor``) ``u`` is an ``fx.Proxy``, whose
    attributes such as ``requires_grad`` cannot be read as Python values."""
    return isinstance(u, torch.fx.Proxy) or torch.compiler.is_compiling() or torch.jit.is_tracing()


def _hooked(unit: nn.Module) -> bool:
    """Whether a hook may keep the unit's input and read it after the unit returns: a forward pre-hook or forward
    hook, of the unit's own or a global one (torch keeps those in a private registry; reading it is the only way to
    know of them)."""
    module = nn.modules.module
    return any(
        (unit._forward_pre_hooks, unit._forward_hooks, module._global_forward_pre_hooks, module._global_forward_hooks)
    )


def _recording(unit: nn.Module, u: Tensor) -> bool:
    return torch.is_grad_enabled() and (u.requires_grad or any(p.requires_grad for p in unit.parameters()))


def _per_channel(u: Tensor, s: Tensor) -> bool:
    return s.shape == (*u.shape[:2], 1, 1)


def choose(unit: nn.Module, u: Tensor, *, inplace: bool) -> Path | None:
    """The path for ``unit(u)`` (see the module docstring), or None for the equations as written."""
    if traced(u):
        return None
    triton = unit.kernel == "triton" and unit.squeeze_kind != "none"
    if triton and fused.available(u.device) and u.numel() <= fused.MAX_NUMEL:
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
    s = unit.excite(fused.SqueezeMean.apply(u, handoff)) if handoff is not None else unit.excitation(u)
    if not _per_channel(u, s):  # squeeze="none": a gate per position, autograd's own backward
        return _relu(u * s if shortcut is None else torch.addcmul(shortcut, u, s), relu)
    return _relu(fused.ScaleAdd.apply(u, s, shortcut, handoff), relu)


def _triton(unit: nn.Module, u: Tensor, shortcut: Tensor | None, *, relu: bool) -> Tensor:
    training = torch.is_grad_enabled() and u.requires_grad and unit.squeeze_kind == "avg"
    handoff = GradHandoff() if training else None
    s = unit.excite(fused.SqueezeMean.apply(u, handoff)) if handoff is not None else unit.excitation(u)
    return fused.scale_add(u, s, shortcut, relu=relu, handoff=handoff)


def scale(unit: nn.Module, u: Tensor, s: Tensor, shortcut: Tensor | None, *, inplace: bool = False) -> Tensor:
    """Eq. 4 for a given gate: ``s·u`` (+ ``shortcut``), by the fastest path that computes the same numbers."""
    if not traced(u):
        recording = torch.is_grad_enabled() and (u.requires_grad or s.requires_grad)
        if recording and _per_channel(u, s):
            return fused.ScaleAdd.apply(u, s, shortcut, None)
        if inplace and not recording and not _hooked(unit):
            return u.mul_(s) if shortcut is None else torch.addcmul(shortcut, u, s, out=u)
    return u * s if shortcut is None else torch.addcmul(shortcut, u, s)
