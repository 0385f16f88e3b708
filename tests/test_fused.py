"""The fast SE paths against the plain reference: forward and backward, NCHW and channels_last, train and eval.

Reference = the paper's equations written out with separate operations: z = mean(u), s = σ(W2 δ(W1 z)),
out = relu(s·u + shortcut). Fused = what senet runs: `SqueezeExcite.forward(u, shortcut)` (one addcmul), the
residual merge of the blocks, and the rewrites of `senet.optimize_for_inference`.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import fast_first
from torch import nn

import senet
from senet.models import ResidualBlock
from senet.models.resnet import BasicBlock, Bottleneck, ResNet, ResNetSpec
from senet.optimize import _NarrowSqueezeBottleneck, fold_batchnorm

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def reference_gate(se: senet.SqueezeExcite, u: torch.Tensor) -> torch.Tensor:
    z = u.mean(dim=(2, 3))
    return torch.sigmoid(se.fc2(torch.relu(se.fc1(z))))[:, :, None, None]


def _grads(tensors_and_params):
    return [t.grad.clone() for t in tensors_and_params]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("train", [True, False])
def test_se_scale_and_residual_add_match_reference_forward_and_backward(fmt, train):
    se = senet.SqueezeExcite(32, 4).train(train)
    u0 = torch.randn(3, 32, 7, 5).contiguous(memory_format=FORMATS[fmt])
    sc0 = torch.randn(3, 32, 7, 5).contiguous(memory_format=FORMATS[fmt])
    g = torch.randn(3, 32, 7, 5)
    results = []
    for fused in (True, False):
        se.zero_grad()
        u, sc = u0.clone().requires_grad_(), sc0.clone().requires_grad_()
        out = se(u, sc) if fused else u * reference_gate(se, u) + sc
        out.backward(g)
        results.append((out.detach(), _grads([u, sc, *se.parameters()])))
    (y, grads), (y_ref, grads_ref) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _reference_merge(self: ResidualBlock, out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """The unfused merge: scale, add and ReLU as three separate, out-of-place operations."""
    assert self.se_position in ("standard", None)
    if self.se_position == "standard":
        out = out * reference_gate(self.se, out)
    return torch.relu(out + shortcut) if self.post_act else out + shortcut


def _calibrate(model: nn.Module, size: int = 64) -> nn.Module:
    """Give BN running statistics from data, so that eval-mode activations are of a sane scale."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, size, size))
    return model


def _small_resnet(block: str, se: bool) -> nn.Module:
    """Two stages of one block each: every kind of merge (projection and identity shortcuts) at a small cost."""
    cfg = senet.SEConfig(r=4) if se else None
    if block == "bottleneck":
        return ResNet(
            ResNetSpec("test", Bottleneck, (2, 1), (64, 128), strides=(1, 2)), cfg, num_classes=10, in_chans=3
        )
    spec = ResNetSpec("test", BasicBlock, (2, 1), (16, 32), strides=(1, 2), stem="cifar", stem_width=16)
    return ResNet(spec, cfg, num_classes=10, in_chans=3)


@pytest.mark.parametrize(("block", "se"), [("bottleneck", True), ("bottleneck", False), ("basic", True)])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("train", [True, False])
def test_block_merge_matches_reference_forward_and_backward(monkeypatch, block, se, fmt, train):
    # float64 makes the comparison exact to ~1e-12 (train-mode BN over a small batch amplifies float32 rounding
    # through deep stacks); the float32 unit test is above.
    model = _calibrate(_small_resnet(block, se)).double().to(memory_format=FORMATS[fmt]).train(train)
    x0 = torch.randn(2, 3, 32, 32, dtype=torch.float64).contiguous(memory_format=FORMATS[fmt])
    results = []
    for reference in (False, True):
        if reference:
            monkeypatch.setattr(ResidualBlock, "_merge", _reference_merge)
        m = copy.deepcopy(model)  # the same BN statistics before each pass (train mode updates them)
        x = x0.clone().requires_grad_()
        y = m(x)
        y.square().mean().backward()
        results.append((y.detach(), x.grad, {n: p.grad for n, p in m.named_parameters()}))
    (y, gx, gp), (y_ref, gx_ref, gp_ref) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-9, atol=1e-12)
    for n in gp_ref:
        torch.testing.assert_close(gp[n], gp_ref[n], rtol=1e-9, atol=1e-12, msg=n)


def test_inplace_writes_into_u_only_when_nothing_can_read_it():
    se = senet.SqueezeExcite(16, 4)
    u0, sc = torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5)
    expected = u0 * reference_gate(se, u0) + sc
    with torch.no_grad():
        u = u0.clone()
        y = se(u, sc, inplace=True)
        assert y.data_ptr() == u.data_ptr()  # no fresh memory
        torch.testing.assert_close(y, expected)
        u = u0.clone()
        y = se(u, inplace=True)
        assert y.data_ptr() == u.data_ptr()
        torch.testing.assert_close(y, u0 * reference_gate(se, u0))
        u = u0.clone()
        se(u, sc)  # inplace=False: u untouched
        assert torch.equal(u, u0)
        handle = se.register_forward_hook(lambda m, inputs, out: None)
        u = u0.clone()
        se(u, sc, inplace=True)  # a hook may read the input after the call
        assert torch.equal(u, u0)
        handle.remove()
    u = u0.clone()
    y = se(u, sc, inplace=True)  # autograd records the call (the FC weights need gradients): u is kept
    assert torch.equal(u, u0) and y.requires_grad
    torch.testing.assert_close(y.detach(), expected)


@pytest.mark.parametrize("where", ["unit", "global"])
def test_inplace_leaves_the_input_a_forward_pre_hook_kept(where):
    """The review's case: a pre-hook on the first SE unit of se_resnet20 keeps the input; in eval under no_grad the
    in-place path must not overwrite it (it did: only forward hooks were checked)."""
    model = senet.create_model("se_resnet20").eval()
    se = next(m for m in model.modules() if isinstance(m, senet.SqueezeExcite))
    kept = {}

    def keep(module, args):
        if module is se:
            kept["u"], kept["copy"] = args[0], args[0].clone()

    register = se.register_forward_pre_hook if where == "unit" else nn.modules.module.register_module_forward_pre_hook
    handle = register(keep)
    try:
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
    finally:
        handle.remove()
    assert torch.equal(kept["u"], kept["copy"])


@pytest.mark.parametrize("position", ["standard", "post", "after_3x3", "pre", "identity"])
def test_every_se_position_gives_the_same_output_with_and_without_gradient_recording(position):
    cfg = senet.SEConfig(r=4, position=position)
    model = ResNet(ResNetSpec("test", Bottleneck, (2, 1), (64, 128), strides=(1, 2)), cfg, num_classes=10, in_chans=3)
    model = _calibrate(model).eval()
    x = torch.randn(2, 3, 32, 32)
    y_grad = model(x)  # recording: every SE unit works out of place
    with torch.inference_mode():
        y_fast = model(x)  # in place where the block owns the map
    torch.testing.assert_close(y_fast, y_grad.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shortcut", [True, False])
def test_training_scale_has_exact_first_and_second_derivatives(fmt, shortcut):
    # While autograd records, SqueezeExcite.scale runs its own backward (fused.ScaleAdd); gradcheck compares it with
    # finite differences, gradgradcheck its backward's own derivatives (double backward, e.g. gradient penalties).
    se = senet.SqueezeExcite(6, 2).double()
    u = torch.randn(2, 6, 3, 4, dtype=torch.float64).contiguous(memory_format=FORMATS[fmt]).requires_grad_()
    s = torch.rand(2, 6, 1, 1, dtype=torch.float64, requires_grad=True)
    sc = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True) if shortcut else None
    out = se.scale(u, s, sc)
    assert type(out.grad_fn).__name__ == "ScaleAddBackward"  # the path under test, not autograd's addcmul
    assert torch.autograd.gradcheck(lambda u, s, sc: se.scale(u, s, sc), (u, s, sc))
    assert torch.autograd.gradgradcheck(lambda u, s, sc: se.scale(u, s, sc), (u, s, sc))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shortcut", fast_first([True, False]))
def test_training_unit_has_exact_first_and_second_derivatives(fmt, shortcut):
    # The whole unit: the scale hands g and s to the squeeze's backward, which writes ∂L/∂u once (GradHandoff);
    # a double backward (gradgradcheck records the first one) leaves ∂L/∂u to autograd instead.
    se = senet.SqueezeExcite(6, 2).double()
    u = torch.randn(2, 6, 3, 4, dtype=torch.float64).contiguous(memory_format=FORMATS[fmt]).requires_grad_()
    sc = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True) if shortcut else None
    out = se(u, sc, relu=True)
    (grad_u,) = torch.autograd.grad(out.sum(), u)
    assert grad_u.stride() == u.stride()  # written once, in u's layout, not a broadcast added by autograd
    assert torch.autograd.gradcheck(lambda u, sc: se(u, sc), (u, sc))
    assert torch.autograd.gradgradcheck(lambda u, sc: se(u, sc), (u, sc))


def test_excite_of_a_squeeze_is_the_excitation():
    se = senet.SqueezeExcite(64, 16)
    u = torch.randn(2, 64, 6, 6)
    torch.testing.assert_close(se.excite(u.mean((2, 3))), se.excitation(u))
    torch.testing.assert_close(se.excitation(u), reference_gate(se, u))


# ---------------------------------------------------------------------------------------------------------------------
# optimize_for_inference


@pytest.fixture(scope="module")
def se_resnet50():
    torch.manual_seed(0)
    return _calibrate(senet.create_model("se_resnet50", layout="v1.5")).eval()


@pytest.fixture(scope="module")
def example():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def fast_nchw(se_resnet50, example):
    return senet.optimize_for_inference(se_resnet50, example, layout="nchw")


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_optimized_model_equals_eager_within_1e5(se_resnet50, example, fast_nchw, layout):
    fast = fast_nchw if layout == "nchw" else senet.optimize_for_inference(se_resnet50, example, layout=layout)
    assert fast.memory_format == layout
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # all 53 BNs folded
    assert sum(isinstance(m, _NarrowSqueezeBottleneck) for m in fast.modules()) == 16
    assert type(se_resnet50.layer1[0].bn3) is nn.BatchNorm2d  # the original is untouched
    with torch.no_grad():
        ref = se_resnet50(example)
        for x_in in (example, example.contiguous(memory_format=torch.channels_last)):
            y = fast(x_in)
            assert ((y - ref).abs().max() / ref.abs().max()).item() < 1e-5
        assert fast(torch.randn(1, 3, 96, 96)).shape == (1, 1000)  # another shape: the squeeze side is per call


def test_narrow_squeeze_equals_pooling_the_block_output(se_resnet50, example, fast_nchw):
    """W1 mean(W h + b) + b1 = (W1 W) mean(h) + W1 b + b1: the gate from the 1×1 convolution's input is u's gate."""
    slow = senet.optimize_for_inference(se_resnet50, example, layout="nchw", narrow_squeeze=False)
    assert type(slow.layer1[1]) is Bottleneck
    for name in ("layer1", "layer4"):  # the largest maps and the largest FCs
        fast_block, slow_block = getattr(fast_nchw, name)[1], getattr(slow, name)[1]
        assert fast_block.se_w.shape == (fast_block.se.reduced, fast_block.conv3.in_channels)  # (C/r, C/4), not W1
        with torch.no_grad():
            h = torch.randn(2, fast_block.conv3.in_channels, 7, 7)
            u = slow_block.conv3(h)
            torch.testing.assert_close(  # fc1 folded into the convolution: the same gate from the narrow side
                fast_block.se.excite_reduced(F.linear(h.mean((2, 3)), fast_block.se_w, fast_block.se_b)),
                slow_block.se.excitation(u),
                rtol=1e-5,
                atol=1e-6,
            )
    with torch.no_grad():
        torch.testing.assert_close(fast_nchw(example), slow(example), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"se_bias": False}, {"se_conv": True}])
def test_narrow_squeeze_with_fcs_without_bias_or_as_convolutions(options):
    torch.manual_seed(0)
    model = _calibrate(senet.create_model("se_resnet50", layout="v1.5", **options)).eval()
    x = torch.randn(2, 3, 64, 64)
    fast = senet.optimize_for_inference(model, x, layout="nchw")
    assert sum(isinstance(m, _NarrowSqueezeBottleneck) for m in fast.modules()) == 16
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)


def test_loading_weights_into_an_optimized_model_refolds_fc1(se_resnet50, example, fast_nchw):
    fast = copy.deepcopy(fast_nchw)
    other = copy.deepcopy(se_resnet50)
    with torch.no_grad():
        for m in other.modules():
            if isinstance(m, senet.SqueezeExcite):
                m.fc1.weight.mul_(-0.5)  # other gates: a stale product would give the old network's outputs
    other_fast = senet.optimize_for_inference(other, example, layout="nchw")
    fast.load_state_dict(other_fast.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fast(example), other(example), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(fast(example), se_resnet50(example), rtol=1e-3, atol=1e-3)


class _ConvUsedTwice(nn.Module):
    """conv → BN, and the convolution's raw output also added to the result: folding that BN would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.bn3 = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        out = self.bn(y) + y
        return self.bn3(self.relu(self.bn2(self.conv2(out))))  # bn3 follows an in-place ReLU, not a conv


def test_fold_batchnorm_only_where_the_conv_output_feeds_the_bn_alone():
    model = _ConvUsedTwice()
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 8, 8))
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = model(x)
    folded = copy.deepcopy(model)
    assert fold_batchnorm(folded, x) == 1  # conv2 → bn2 only
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn3, nn.BatchNorm2d)
    assert isinstance(folded.bn2, nn.Identity) and folded.conv2.bias is not None
    with torch.no_grad():
        torch.testing.assert_close(folded(x), ref, rtol=1e-5, atol=1e-6)
    # a non-senet model works with an explicit example input
    fast = senet.optimize_for_inference(model, x, layout="nchw")
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref, rtol=1e-5, atol=1e-6)


def test_optimize_for_inference_rejects_bad_arguments(se_resnet50):
    with pytest.raises(ValueError, match="layout='nhwc'"):
        senet.optimize_for_inference(se_resnet50, layout="nhwc")
    with pytest.raises(ValueError, match="example_input"):
        senet.optimize_for_inference(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(TypeError, match="example_input must be a Tensor"):
        senet.optimize_for_inference(se_resnet50, [1, 2, 3])
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)), torch.randn(1, 3, 4, 4))
