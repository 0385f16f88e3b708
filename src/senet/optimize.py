"""Make a trained network cheaper to run without changing what it computes (inference only).

`optimize_for_inference` applies, to a copy of the model:

1. **BatchNorm folding.** In eval mode a BN after a convolution is the affine map y·γ/σ + (β − μγ/σ); it is folded
   into the convolution's weights and bias, and the BN becomes the identity. Which BN follows which convolution is
   read off one forward pass on an example input (the convolution's output must feed that BN and nothing else), so
   this works for any network, senet's or not.
2. **SE from the narrow side of a bottleneck.** In a bottleneck whose SE unit rescales the output of its last 1×1
   convolution u = W h + b (BN folded in), the paper's squeeze (eq. 2) is the mean of u over H×W, and the first
   excitation FC (W1, b1) is linear too, so

       W1 · mean(u) + b1 = (W1 W) · mean(h) + (W1 b + b1).

   The block pools h, which has 4× fewer channels than u (the expansion of the bottleneck), and multiplies by the
   product W1 W, computed once here: a (C/r, C/4) matrix, 4× smaller than W1, where pooling u and applying W1
   would read the whole map and the whole of W1 at every call. The gate is the same function, equal up to float
   rounding. (The product is recomputed when weights are loaded into the optimized model with
   ``load_state_dict``; optimize trained weights, not weights that will still change in place.)
3. **Memory layout.** ``layout="auto"`` times the model in NCHW and channels_last on the example input and keeps
   the faster.
4. **Compilation** (optional): ``compile=True`` wraps the result in `torch.compile`.

Finally the result is checked against the original model on the example input (relative error below ``rtol``).
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import SqueezeExcite
from .models.resnet import Bottleneck

__all__ = ["fold_batchnorm", "optimize_for_inference"]

LAYOUTS = ("auto", "nchw", "channels_last")


def _graph_uses(root: torch.autograd.graph.Node | None) -> dict[torch.autograd.graph.Node, int]:
    """How many operations consume each autograd node's output, over the graph that produced ``root``."""
    uses: dict[torch.autograd.graph.Node, int] = {}
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for nxt, _ in node.next_functions:
            if nxt is not None:
                uses[nxt] = uses.get(nxt, 0) + 1
                stack.append(nxt)
    return uses


def _conv_bn_pairs(model: nn.Module, x: Tensor) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """The (convolution, BN) pairs where the BN's input is the output of the convolution and nothing else uses it.

    One forward pass with autograd on: hooks record the tensor (and its autograd node) that each convolution
    returned and each BN received; the autograd graph says how many operations consumed each convolution's output.
    An in-place operation in between (a ReLU) gives the BN's input another node, so it does not pair. Modules called
    more than once are left alone.
    """
    calls: list[tuple[nn.Module, Tensor, object]] = []  # (module, tensor returned / received, its autograd node)

    def conv_hook(m: nn.Module, inputs: tuple, out: Tensor) -> None:
        calls.append((m, out, out.grad_fn))

    def bn_hook(m: nn.Module, inputs: tuple) -> None:
        calls.append((m, inputs[0], inputs[0].grad_fn))

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(bn_hook))
    try:
        with torch.enable_grad():
            out = model(x.detach().requires_grad_())
    finally:
        for h in handles:
            h.remove()
    uses = _graph_uses(out.grad_fn if isinstance(out, Tensor) else None)
    count: dict[nn.Module, int] = {}
    for m, _, _ in calls:
        count[m] = count.get(m, 0) + 1
    return [
        (conv, bn)
        for (conv, y, node), (bn, bn_in, bn_node) in itertools.pairwise(calls)
        if isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn_in is y
        and node is not None
        and bn_node is node
        and uses.get(node) == 1
        and count[conv] == count[bn] == 1
        and bn.running_mean is not None
    ]


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv ← BN ∘ conv: W·γ/σ per output channel, bias (b − μ)·γ/σ + β, with σ = sqrt(running_var + eps)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    bias = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        bias = bias + bn.bias
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)


def fold_batchnorm(model: nn.Module, example_input: Tensor) -> int:
    """Fold every BatchNorm2d that directly follows a convolution into it, in place; returns how many.

    ``model`` must be in eval mode (folding uses the running statistics). Each folded BN becomes `nn.Identity`.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs the model in eval mode (BN folding uses running statistics)")
    pairs = _conv_bn_pairs(model, example_input)
    for conv, bn in pairs:
        _fold(conv, bn)
        _replace(model, bn, nn.Identity())
    return len(pairs)


class _NarrowSqueezeBottleneck(Bottleneck):
    """A BN-folded `Bottleneck` whose SE unit squeezes the input h of the last 1×1 convolution instead of its output.

    u = conv3(h) = W h + b and fc1(z) = W1 z + b1, so fc1(mean_HW(u)) = (W1 W) · mean_HW(h) + (W1 b + b1) (module
    docstring): the block pools h (C/4 channels instead of C) and multiplies by the (C/r, C/4) product ``se_w``
    instead of W1 (C/r, C). Both terms of what the squeeze and fc1 read shrink at every batch size. The product is
    recomputed when weights are loaded with ``load_state_dict``; after changing weights in place, call `fold_fc1`.
    """

    se_w: Tensor
    se_b: Tensor

    @classmethod
    def convert(cls, block: Bottleneck) -> None:
        """Turn ``block`` (BN folded, eligible) into this class in place, computing the folded fc1."""
        block.__class__ = cls
        block.register_buffer("se_w", torch.empty(0), persistent=False)
        block.register_buffer("se_b", torch.empty(0), persistent=False)
        block.fold_fc1()
        # loading weights into the optimized model (its state_dict holds conv3 and fc1, not the product) refolds
        block.register_load_state_dict_post_hook(_refold)

    @torch.no_grad()
    def fold_fc1(self) -> None:
        """(Re)compute ``se_w`` = W1 W and ``se_b`` = W1 b + b1 from the current weights, in float64 on the CPU."""
        w, b = self.conv3.weight, self.conv3.bias
        w1 = self.se.fc1.weight.flatten(1).cpu().double()
        b1 = self.se.fc1.bias
        se_b = w1 @ b.cpu().double() + (b1.cpu().double() if b1 is not None else 0.0)
        self.se_w = (w1 @ w.flatten(1).cpu().double()).to(w.device, w.dtype)
        self.se_b = se_b.to(w.device, w.dtype)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        h = self.act2(self.conv2(self.act1(self.conv1(x))))
        u = self.conv3(h)
        a = F.linear(h.mean((2, 3)), self.se_w, self.se_b)  # = fc1(u.mean((2, 3))), (B, C/r)
        s = self.se.excite_reduced(a[:, :, None, None] if self.se.conv else a)  # as fc1 would give it
        return self.act(self.se.scale(u, s, shortcut, inplace=True))


def _refold(block: _NarrowSqueezeBottleneck, incompatible_keys: object) -> None:
    block.fold_fc1()


def _narrow_squeeze_eligible(block: nn.Module) -> bool:
    return (
        type(block) is Bottleneck
        and block.se_position == "standard"
        and type(block.se) is SqueezeExcite  # a subclass may change the excitation that fc1 is folded into
        and block.se.squeeze_kind == "avg"
        and isinstance(block.bn1, nn.Identity)
        and isinstance(block.bn2, nn.Identity)
        and isinstance(block.bn3, nn.Identity)
        and block.conv3.kernel_size == (1, 1)
        and block.conv3.stride == (1, 1)
        and block.conv3.groups == 1
        and block.conv3.bias is not None
    )


def _time(model: nn.Module, x: Tensor, repeats: int = 5) -> float:
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _default_input(model: nn.Module) -> Tensor:
    from .models import get_entry

    name = getattr(model, "model_name", "")
    if not name:
        raise ValueError(
            f"optimize_for_inference needs example_input for a {type(model).__name__} (not a senet model built by "
            "create_model); pass a batch shaped like real inputs, e.g. torch.randn(1, 3, 224, 224)"
        )
    c, h, w = get_entry(name).input_size
    p = next(model.parameters(), None)
    return torch.randn(1, getattr(model, "in_chans", c), h, w, device=p.device if p is not None else "cpu")


def _relative_error(a: Tensor, b: Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def _outputs(out: object) -> Iterator[Tensor]:
    if isinstance(out, Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for o in out:
            yield from _outputs(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _outputs(o)


def optimize_for_inference(
    model: nn.Module,
    example_input: Tensor | None = None,
    *,
    layout: str = "auto",
    compile: bool = False,
    narrow_squeeze: bool = True,
    rtol: float = 1e-5,
) -> nn.Module:
    """A faster copy of ``model`` for inference: BN folded, SE squeezed on the narrow side, the faster layout.

    Args:
        model: any network; left unchanged (the result is a copy, in eval mode, without gradients).
        example_input: a batch shaped like the real inputs (decides the layout and checks the result); by default
            one random image of the size a senet model was designed for.
        layout: ``"auto"`` (time both, keep the faster), ``"nchw"`` or ``"channels_last"``.
        compile: wrap the result in `torch.compile` (the first call compiles; later calls are fast).
        narrow_squeeze: compute SE-bottleneck squeezes from the last 1×1 convolution's input, fc1 folded into that
            convolution's weights (module docstring).
        rtol: the largest relative error max|y − y₀| / max|y₀| accepted against the original model.

    Returns:
        The optimized model, in the chosen memory layout: feed it inputs in that layout (``x.contiguous(
        memory_format=torch.channels_last)``) for full speed; other layouts still give the same result.

    Raises:
        ValueError: on a bad ``layout``, or when the result differs from the original by more than ``rtol``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS}")
    x = _default_input(model) if example_input is None else example_input
    if not isinstance(x, Tensor):
        raise TypeError(f"example_input must be a Tensor, got {type(x).__name__}")
    original = model
    was_training = original.training
    original.eval()
    try:
        with torch.no_grad():
            reference = [t.detach().clone() for t in _outputs(original(x))]
        fast = copy.deepcopy(original).eval()
    finally:
        original.train(was_training)
    for p in fast.parameters():
        p.requires_grad_(False)
    fold_batchnorm(fast, x)
    if narrow_squeeze:
        for m in fast.modules():
            if _narrow_squeeze_eligible(m):
                _NarrowSqueezeBottleneck.convert(m)
    if layout == "auto":
        cl = copy.deepcopy(fast).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        layout = "channels_last" if _time(cl, x_cl) < _time(fast, x) else "nchw"
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    fast = fast.to(memory_format=fmt)
    with torch.no_grad():
        got = list(_outputs(fast(x.contiguous(memory_format=fmt))))
    errors = [_relative_error(g, r) for g, r in zip(got, reference, strict=True)]
    if max(errors, default=0.0) > rtol:
        raise ValueError(
            f"the optimized model differs from the original by a relative {max(errors):.2e} > rtol={rtol:g}; "
            "a rewrite does not fit this network (try narrow_squeeze=False) or rtol is too tight for its dtype"
        )
    fast.memory_format = layout
    return torch.compile(fast) if compile else fast
