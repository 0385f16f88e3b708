"""The Triton kernels of `senet.fused` against the unfused reference, forward and backward.

The kernels run here through Triton's interpreter (``TRITON_INTERPRET=1``) on CPU tensors: the same kernel code the
GPU runs, with numpy doing each block's arithmetic. benchmarks/se_cuda.py repeats these checks on a GPU.
"""

import pytest
import torch
from conftest import fast_first, slow

import senet
from senet import fused

pytest.importorskip("triton")

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
# One rounding of the result (the kernels and torch both compute in float32 and round once; the interpreter's
# bfloat16 conversion may round the other way), and float32 sums taken in another order.
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (1e-3, 1e-3), torch.bfloat16: (8e-3, 8e-3)}


@pytest.fixture
def interpreter():
    """conftest.py sets TRITON_INTERPRET=1 before anything imports triton; skip where something else decided."""
    if not fused.available("cpu"):
        pytest.skip("TRITON_INTERPRET=1 was not set before triton was imported")


def _reference(u, s, shortcut, relu):
    """The paper's eq. 4, the residual addition and the ReLU as separate float64 operations."""
    y = u.double() * s.double().reshape(*u.shape[:2], 1, 1)
    if shortcut is not None:
        y = y + shortcut.double()
    return torch.relu(y) if relu else y


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("dtype", fast_first([torch.float32, torch.float16, torch.bfloat16]), ids=str)
@pytest.mark.parametrize("fmt", FORMATS)
def test_scale_add_matches_the_reference_forward_and_backward(interpreter, fmt, dtype, residual, relu):
    torch.manual_seed(0)
    shape = (3, 40, 5, 7)  # channels and positions that do not fill the kernels' tiles
    u0 = torch.randn(shape).to(dtype).contiguous(memory_format=FORMATS[fmt])
    s0 = torch.rand(3, 40, 1, 1).to(dtype)
    r0 = torch.randn(shape).to(dtype).contiguous(memory_format=FORMATS[fmt]) if residual else None
    g = torch.randn(shape).to(dtype)
    results = []
    for run in (fused.scale_add, _reference):
        u, s = u0.clone().requires_grad_(), s0.clone().requires_grad_()
        r = r0.clone().requires_grad_() if residual else None
        y = run(u, s, r, relu=relu) if run is fused.scale_add else run(u, s, r, relu)
        y.backward(g.to(y.dtype))
        results.append((y, u.grad, s.grad, r.grad if residual else None))
    (y, du, ds, dr), (y_ref, du_ref, ds_ref, dr_ref) = results
    rtol, atol = TOL[dtype]
    assert y.dtype == dtype and y.stride() == u0.stride()  # the layout of u is kept
    torch.testing.assert_close(y.double(), y_ref, rtol=rtol, atol=atol)
    # autograd rounds the float64 reference's gradients to the inputs' dtype.
    torch.testing.assert_close(du.double(), du_ref.double(), rtol=rtol, atol=atol)
    torch.testing.assert_close(ds.double(), ds_ref.double(), rtol=rtol, atol=atol * 35)  # a sum over 35 positions
    if residual:
        torch.testing.assert_close(dr, dr_ref, rtol=0, atol=0)  # passed on (masked) exactly
    else:
        assert dr is None and dr_ref is None


def test_scale_add_equals_torch_bit_for_bit_in_float16(interpreter):
    """The eager path (addcmul, then ReLU) rounds once from float32, as the kernel does: the same bits."""
    torch.manual_seed(1)
    u = torch.randn(2, 24, 6, 6, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    s, r = torch.rand(2, 24, 1, 1, dtype=torch.float16), torch.randn(2, 24, 6, 6, dtype=torch.float16)
    assert torch.equal(fused.scale_add(u, s, r, relu=True), torch.relu(torch.addcmul(r, u, s)))


@pytest.mark.parametrize("min_programs", [1, 1024])
def test_scale_add_takes_mixed_layouts_and_broadcast_gradients(interpreter, monkeypatch, min_programs):
    """A shortcut in the other layout, a gate given as (B, C), and an expanded gradient (from ``.sum()``); the
    backward as one program per sample and channel block looping over all positions, and split over positions."""
    monkeypatch.setattr(fused, "MIN_PROGRAMS", min_programs)
    monkeypatch.setitem(fused.TILES, ("backward", True), (4, 64, 4))  # 3 steps over 12 positions, or 3 splits
    torch.manual_seed(2)
    u = torch.randn(2, 16, 4, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    r = torch.randn(2, 16, 4, 3).requires_grad_()  # NCHW
    s = torch.rand(2, 16).requires_grad_()
    fused.scale_add(u, s, r, relu=True).sum().backward()
    grads = [t.grad.clone() for t in (u, s, r)]
    for t in (u, s, r):
        t.grad = None
    torch.relu(torch.addcmul(r, u, s[:, :, None, None])).sum().backward()
    for a, b in zip(grads, (u.grad, s.grad, r.grad), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_scale_add_rejects_bad_shapes(interpreter):
    u = torch.randn(2, 8, 3, 3)
    with pytest.raises(ValueError, match="not one value per"):
        fused.scale_add(u, torch.rand(2, 4, 1, 1))
    with pytest.raises(ValueError, match="shortcut of shape"):
        fused.scale_add(u, torch.rand(2, 8, 1, 1), torch.randn(2, 8, 3, 4))
    with pytest.raises(ValueError, match="32-bit offsets"):
        fused.scale_add(torch.empty(1, 1, 1, 1).expand(2**16, 2**15, 1, 2), torch.empty(1).expand(2**31))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        fused.scale_add(u[0], torch.rand(8))


def test_scale_add_refuses_a_cpu_tensor_outside_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="needs triton and a CUDA device"):
        fused.scale_add(torch.randn(1, 2, 2, 2), torch.rand(1, 2))


@pytest.mark.parametrize("relu, residual", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_se_unit_with_the_kernels_matches_the_reference(interpreter, fmt, relu, residual):
    """The whole unit in training: the squeeze's backward completes ∂L/∂u with the kernel (g·s + ∂L/∂z / HW),
    from the ReLU-masked g the tail's backward left (as ∂L/∂shortcut, in a buffer of its own, or g itself)."""
    torch.manual_seed(5)
    se = fused.use_triton(senet.SqueezeExcite(24, 4))
    u0 = torch.randn(2, 24, 5, 3).contiguous(memory_format=FORMATS[fmt])
    r0 = torch.randn(2, 24, 5, 3).contiguous(memory_format=FORMATS[fmt]) if residual else None
    g = torch.randn(2, 24, 5, 3)
    results = []
    for ours in (True, False):
        se.zero_grad()
        u = u0.clone().requires_grad_()
        r = r0.clone().requires_grad_() if residual else None
        if ours:
            y = se(u, r, relu=relu)
        else:  # the paper's equations, separate operations
            y = u * torch.sigmoid(se.fc2(torch.relu(se.fc1(u.mean((2, 3))))))[:, :, None, None]
            y = y + r if residual else y
            y = torch.relu(y) if relu else y
        y.backward(g)
        results.append([y.detach(), u.grad, *(p.grad for p in se.parameters())] + ([r.grad] if residual else []))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
@slow
def test_se_resnet_with_the_kernels_trains_like_the_torch_path(interpreter, fmt):
    """A whole SE-ResNet (CIFAR, basic blocks, SE with the ReLU fused): outputs and every gradient agree."""
    torch.manual_seed(3)
    model = senet.create_model("se_resnet20", num_classes=10).to(memory_format=FORMATS[fmt])
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=FORMATS[fmt])
    y = torch.tensor([1, 7])
    results = []
    for enabled in (True, False):
        fused.use_triton(model, enabled)
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss, grads), (loss_ref, grads_ref) = results
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert all(m.kernel == "torch" for m in model.modules() if isinstance(m, senet.SqueezeExcite))


def test_se_unit_takes_the_torch_path_under_torch_compile(interpreter):
    """The compiler gets the plain operations (and fuses them itself); the kernel is never traced."""
    torch.manual_seed(4)
    se = fused.use_triton(senet.SqueezeExcite(16, 4))
    u, r = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    compiled = torch.compile(lambda u, r: se(u, r, relu=True), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(u, r), se(u, r, relu=True), rtol=1e-6, atol=1e-6)


def test_use_triton_needs_triton(monkeypatch):
    monkeypatch.setattr(fused, "_triton", lambda: None)
    with pytest.raises(RuntimeError, match="needs triton"):
        fused.use_triton(senet.SqueezeExcite(16))
    assert not fused.available("cuda")
