"""The SE unit's fused operations: autograd functions with written-out backwards, and Triton kernels for CUDA.

Everything here computes the numbers of eq. 2 and 4 (`senet.layers.se`) with less memory traffic; `senet.layers.fast`
decides per call which of them `SqueezeExcite.forward` uses. This module owns the functions and the state they share
(`GradHandoff`); the rest of senet only calls them.

* Training on the torch path: `SqueezeMean` (eq. 2) and `ScaleAdd` (eq. 4), whose backwards together write ∂L/∂u in
  one pass, the scale's part handed to the squeeze's backward through a `GradHandoff`.
* On CUDA, opt-in (`use_triton`): ``relu(s·u + shortcut)`` in one pass, and its backward (`scale_add`).

In eager PyTorch the block's tail is two kernels forward (``addcmul``, then the in-place ReLU: five passes over
the map). Here it is one forward kernel (read u and the shortcut, write the output: three passes) and one backward
kernel, which reads g, the output (for the ReLU mask) and u once, writes ∂L/∂shortcut (the masked g) and reduces
∂L/∂s = Σ_HW g·u on the way. Inside `SqueezeExcite.forward` it leaves ∂L/∂u to the squeeze's backward (through a
`GradHandoff`), which writes g·s + ∂L/∂z / HW with the forward kernel (a per-channel bias in place of the shortcut);
alone, it writes g·s itself.

Measured on an H200 (docs/performance.md): SE-ResNet-50 inference at batch 256 takes 0.99× ResNet-50's time with
the kernels against 1.26× without; at small batches the launches cost more than they save, training gains nothing,
and torch.compile's own kernels for the same operations are as fast or faster. So the kernels are opt-in
(`use_triton`), and under `torch.compile` (and in export) the SE unit hands the compiler the plain operations.

Triton's interpreter (``TRITON_INTERPRET=1``, set before triton is imported) runs the same kernels on CPU tensors,
which is how the tests check them on machines without a GPU.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "GradHandoff",
    "KernelChoice",
    "ScaleAdd",
    "SqueezeMean",
    "available",
    "mean_hw",
    "scale_add",
    "use_triton",
]


def mean_hw(u: Tensor) -> Tensor:
    """Global average pooling (eq. 2), (B, C, H, W) → (B, C): the sum over H×W, then a division of the small result.

    The same numbers as ``u.mean((2, 3))`` (which sums, then divides), but its gradient stays a broadcast view until
    autograd adds it into the gradient of ``u``; ``mean``'s backward writes a full (B, C, H, W) tensor first.
    """
    return u.sum((2, 3)) / (u.shape[2] * u.shape[3])


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


class SqueezeMean(torch.autograd.Function):
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


class ScaleAdd(torch.autograd.Function):
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


@functools.cache
def _triton():
    """The triton module, or None where it cannot be imported."""
    try:
        import triton
        import triton.language
    except ImportError:
        return None
    return triton


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(device: torch.device | str = "cuda") -> bool:
    """Whether the kernels can run on ``device``: triton importable, and a CUDA device (or the interpreter)."""
    device = torch.device(device)
    if _triton() is None:
        return False
    return _interpreting() or (device.type == "cuda" and torch.cuda.is_available())


@functools.cache
def _kernels():
    triton = _triton()
    tl = triton.language

    @triton.jit
    def forward(u_ptr, s_ptr, r_ptr, bias_ptr, o_ptr, C, HW, stride_b, stride_c, stride_hw,
                HAS_RES: tl.constexpr, HAS_BIAS: tl.constexpr, RELU: tl.constexpr,
                BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
        b = tl.program_id(0)
        hw = tl.program_id(1) * BLOCK_HW + tl.arange(0, BLOCK_HW)
        c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = (hw[:, None] < HW) & (c[None, :] < C)
        offs = b * stride_b + hw[:, None] * stride_hw + c[None, :] * stride_c
        s = tl.load(s_ptr + b * C + c, mask=c < C, other=0.0).to(tl.float32)
        y = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32) * s[None, :]
        if HAS_RES:
            y += tl.load(r_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            y += tl.load(bias_ptr + b * C + c, mask=c < C, other=0.0).to(tl.float32)[None, :]
        if RELU:
            y = tl.maximum(y, 0.0)
        tl.store(o_ptr + offs, y.to(o_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def backward(g_ptr, o_ptr, u_ptr, s_ptr, du_ptr, dr_ptr, ds_ptr, C, HW, HW_PER, stride_b, stride_c, stride_hw,
                 RELU: tl.constexpr, NEED_U: tl.constexpr, NEED_R: tl.constexpr,
                 BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
        # Program (b, channel block, split) covers positions [split * HW_PER, (split + 1) * HW_PER) and writes its
        # part of Σ g·u to ds[b, split, :]; the caller sums the splits (a deterministic order, no atomics).
        b = tl.program_id(0)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        split = tl.program_id(2)
        s = tl.load(s_ptr + b * C + c, mask=c < C, other=0.0).to(tl.float32)
        acc = tl.zeros([BLOCK_C], dtype=tl.float32)
        for start in range(split * HW_PER, tl.minimum((split + 1) * HW_PER, HW), BLOCK_HW):
            hw = start + tl.arange(0, BLOCK_HW)
            mask = (hw[:, None] < HW) & (c[None, :] < C)
            offs = b * stride_b + hw[:, None] * stride_hw + c[None, :] * stride_c
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            if RELU:
                g = tl.where(tl.load(o_ptr + offs, mask=mask, other=0.0) > 0, g, 0.0)
            if NEED_R:
                tl.store(dr_ptr + offs, g.to(dr_ptr.dtype.element_ty), mask=mask)
            if NEED_U:
                tl.store(du_ptr + offs, (g * s[None, :]).to(du_ptr.dtype.element_ty), mask=mask)
            acc += tl.sum(g * tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32), axis=0)
        tl.store(ds_ptr + (b * tl.num_programs(2) + split) * C + c, acc, mask=c < C)

    return forward, backward


def _strides(t: Tensor) -> tuple[int, int, int]:
    """(batch, channel, position) strides of a (B, C, H, W) map laid out as NCHW or channels_last."""
    return t.stride(0), t.stride(1), (t.stride(3) if t.shape[3] > 1 else t.stride(2))


def _dense(t: Tensor) -> Tensor:
    """``t`` itself if it is contiguous in one of the two layouts the kernels index, else a channels_last copy."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous(memory_format=torch.channels_last)


def _like(t: Tensor, ref: Tensor) -> Tensor:
    """``t`` in the memory layout of ``ref`` (the kernels index both with ``ref``'s strides)."""
    if t.stride() == ref.stride():
        return t
    fmt = torch.contiguous_format if ref.is_contiguous() else torch.channels_last
    return t.contiguous(memory_format=fmt)


# Tiles (BLOCK_HW, BLOCK_C, num_warps) per direction and layout (channels_last?), wide along the contiguous
# dimension; benchmarks/se_cuda.py --tiles times alternatives. The backward splits H×W over more programs until
# there are at least MIN_PROGRAMS (small batches, late stages).
TILES = {
    ("forward", True): (32, 128, 4),
    ("forward", False): (512, 8, 4),
    ("backward", True): (32, 64, 4),
    ("backward", False): (128, 16, 4),
}
MIN_PROGRAMS = 1024
MAX_NUMEL = 2**31 - 1  # the kernels index with 32-bit offsets


def _tiles(direction: str, u: Tensor) -> tuple[int, int, int]:
    block_hw, block_c, warps = TILES[direction, not u.is_contiguous()]
    return block_hw, min(block_c, _triton().next_power_of_2(u.shape[1])), warps


class _ScaleAddReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, s, shortcut, relu, bias, handoff):
        u = _dense(u)
        B, C, H, W = u.shape
        s2 = s.reshape(B, C).contiguous()
        dtype = torch.promote_types(u.dtype, s.dtype)
        if shortcut is not None:
            dtype = torch.promote_types(dtype, shortcut.dtype)
            shortcut = _like(shortcut, u)
        bias2 = None if bias is None else bias.reshape(B, C).contiguous()
        out = torch.empty_like(u, dtype=dtype)
        block_hw, block_c, warps = _tiles("forward", u)
        cdiv = _triton().cdiv
        grid = (B, cdiv(H * W, block_hw), cdiv(C, block_c))
        forward, _ = _kernels()
        forward[grid](u, s2, u if shortcut is None else shortcut, s2 if bias2 is None else bias2, out, C, H * W,
                      *_strides(u), HAS_RES=shortcut is not None, HAS_BIAS=bias2 is not None, RELU=relu,
                      BLOCK_HW=block_hw, BLOCK_C=block_c, num_warps=warps)  # fmt: skip
        ctx.relu, ctx.handoff = relu, handoff
        ctx.s_shape, ctx.s_dtype = s.shape, s.dtype
        ctx.shortcut_dtype = None if shortcut is None else shortcut.dtype
        ctx.save_for_backward(u, s2, out if relu else None)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        u, s2, out = ctx.saved_tensors
        need_u, need_s, need_r = ctx.needs_input_grad[:3]
        g = _like(_dense(g), u)
        B, C, H, W = u.shape
        # With a handoff, ∂L/∂u is left to the squeeze's backward, which needs the (ReLU-masked) g: the kernel writes
        # it as ∂L/∂shortcut, or into a buffer of its own where there is no shortcut and a ReLU masks g.
        handed = need_u and ctx.handoff is not None and ctx.handoff.accepts()
        masked = ctx.relu and handed and not need_r
        du = torch.empty_like(u) if need_u and not handed else None
        dr = torch.empty_like(g) if (need_r and ctx.shortcut_dtype is not None) or masked else None
        block_hw, block_c, warps = _tiles("backward", u)
        cdiv = _triton().cdiv
        hw, blocks_c = H * W, cdiv(C, block_c)
        splits = max(1, min(cdiv(hw, block_hw), cdiv(MIN_PROGRAMS, B * blocks_c)))
        hw_per = cdiv(cdiv(hw, splits), block_hw) * block_hw
        splits = cdiv(hw, hw_per)
        ds = torch.empty(B, splits, C, device=u.device, dtype=torch.float32)
        _, backward = _kernels()
        backward[(B, blocks_c, splits)](
            g, g if out is None else out, u, s2, g if du is None else du, g if dr is None else dr, ds,
            C, hw, hw_per, *_strides(u), RELU=ctx.relu, NEED_U=du is not None, NEED_R=dr is not None,
            BLOCK_HW=block_hw, BLOCK_C=block_c, num_warps=warps,
        )  # fmt: skip
        if handed:
            g_u = g if dr is None else dr
            ctx.handoff.finish = lambda gz: scale_add(g_u, s2, None, bias=gz)  # g·s + ∂L/∂z / HW, one kernel
        ds = ds.sum(1) if splits > 1 else ds.squeeze(1)
        ds = ds.to(ctx.s_dtype).reshape(ctx.s_shape) if need_s else None
        return du, ds, (dr if need_r else None), None, None, None


def scale_add(
    u: Tensor,
    s: Tensor,
    shortcut: Tensor | None = None,
    *,
    relu: bool = False,
    bias: Tensor | None = None,
    handoff=None,
) -> Tensor:
    """``relu(s·u + shortcut + bias)`` (ReLU, shortcut and bias optional) in one Triton kernel, differentiable.

    Args:
        u: the map, (B, C, H, W), NCHW or channels_last (other layouts are copied to channels_last first).
        s: the gate, (B, C, 1, 1) or (B, C).
        shortcut: a map of ``u``'s shape, or None.
        relu: apply ReLU to the result.
        bias: one value per (sample, channel), (B, C, 1, 1) or (B, C), or None; not differentiated.
        handoff: a `GradHandoff` from `SqueezeExcite.forward`: its squeeze's backward then
            completes ∂L/∂u.

    The arithmetic is done in float32 and rounded once to the promoted dtype of u, s and the shortcut, as
    ``torch.addcmul`` does, so results match the eager operations to the last bit or within one rounding.
    """
    if u.ndim != 4:
        raise ValueError(f"u must be a (B, C, H, W) map, got shape {tuple(u.shape)}")
    for name, t in (("s", s), ("bias", bias)):
        if t is not None and t.numel() != u.shape[0] * u.shape[1]:
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} is not one value per (sample, channel) of u {tuple(u.shape)}"
            )
    if u.numel() > MAX_NUMEL:
        raise ValueError(f"u has {u.numel()} elements, more than the kernels' 32-bit offsets reach ({MAX_NUMEL})")
    if shortcut is not None and shortcut.shape != u.shape:
        raise ValueError(f"shortcut of shape {tuple(shortcut.shape)} must have u's shape {tuple(u.shape)}")
    if not available(u.device):
        raise RuntimeError(f"senet.fused needs triton and a CUDA device; u is on {u.device} (use the torch path)")
    return _ScaleAddReLU.apply(u, s, shortcut, relu, None if bias is None else bias.detach(), handoff)


class KernelChoice:
    """What `use_triton` switches: a unit whose scale can run as the Triton kernel (`senet.SqueezeExcite`).

    ``kernel`` is ``"torch"`` (the default) or ``"triton"``; `senet.layers.fast.choose` reads it, `use_kernel` sets it.
    """

    kernel = "torch"

    def use_kernel(self, kernel: str) -> None:
        """Run the scale through ``kernel``: ``"triton"`` (on CUDA, in eager mode) or ``"torch"``."""
        if kernel not in ("torch", "triton"):
            raise ValueError(f"kernel={kernel!r} must be 'torch' or 'triton'")
        self.kernel = kernel


def use_triton(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Run every `senet.SqueezeExcite` in ``model`` through the Triton kernels (on CUDA, in eager mode); returns it.

    Raises RuntimeError where triton cannot be imported. Units run the torch operations on CPU tensors, under
    `torch.compile` and in export whatever this says.
    """
    if enabled and _triton() is None:
        raise RuntimeError("senet.fused.use_triton needs triton (pip install triton, on Linux with a CUDA GPU)")
    for m in model.modules():
        if isinstance(m, KernelChoice):
            m.use_kernel("triton" if enabled else "torch")
    return model
