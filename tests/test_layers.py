"""The SE unit: shapes, gates, the two FC forms, the reduced-width rule, parameter arithmetic, bad input."""

import pytest
import torch
from torch import nn

from senet import SEConfig, SqueezeExcite, reduced_width
from senet.layers import GATES, SQUEEZES


@pytest.mark.parametrize("squeeze", SQUEEZES)
@pytest.mark.parametrize("gate", GATES)
def test_shape_preserved_and_gradients(squeeze, gate):
    se = SqueezeExcite(32, 4, squeeze=squeeze, gate=gate)
    x = torch.randn(3, 32, 5, 7, requires_grad=True)
    y = se(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in se.parameters())


def test_sigmoid_gate_in_open_unit_interval_and_scales_each_channel():
    se = SqueezeExcite(64)
    x = torch.randn(4, 64, 6, 6)
    s = se.excitation(x)
    assert s.shape == (4, 64, 1, 1)
    assert (s > 0).all() and (s < 1).all()
    torch.testing.assert_close(se(x), x * s)
    # The gate is the paper's eq. 3 on the global average: σ(W2 δ(W1 z)).
    z = x.mean((2, 3))
    expected = torch.sigmoid(se.fc2(torch.relu(se.fc1(z))))
    torch.testing.assert_close(s[:, :, 0, 0], expected)


def test_fused_shortcut_equals_scale_then_add():
    se = SqueezeExcite(16, 4)
    x, sc = torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(se(x, sc), se(x) + sc)


def test_fc_and_conv_forms_compute_the_same_function():
    fc = SqueezeExcite(48, 8)
    conv = SqueezeExcite(48, 8, conv=True)
    assert isinstance(conv.fc1, nn.Conv2d) and isinstance(fc.fc1, nn.Linear)
    with torch.no_grad():
        for name in ("fc1", "fc2"):
            getattr(conv, name).weight.copy_(getattr(fc, name).weight[:, :, None, None])
            getattr(conv, name).bias.copy_(getattr(fc, name).bias)
    x = torch.randn(2, 48, 9, 9)
    torch.testing.assert_close(conv(x), fc(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("channels", "r", "rounding", "expected"),
    [(64, 16, "floor", 4), (64, 16, "round8", 8), (256, 16, "floor", 16), (256, 16, "round8", 16),
     (100, 16, "floor", 6), (100, 16, "round8", 8), (20, 16, "floor", 1), (2048, 16, "floor", 128),
     (200, 16, "round8", 16), (96, 3, "floor", 32)],
)  # fmt: skip
def test_reduced_width_rule(channels, r, rounding, expected):
    assert reduced_width(channels, r, rounding) == expected
    assert SqueezeExcite(channels, r, rounding=rounding).reduced == expected


@pytest.mark.parametrize("channels", [64, 256, 2048])
@pytest.mark.parametrize("r", [2, 16])
def test_parameter_count_is_2C2_over_r_plus_biases(channels, r):
    se = SqueezeExcite(channels, r)
    d = channels // r
    assert sum(p.numel() for p in se.parameters()) == 2 * channels * d + d + channels
    no_bias = SqueezeExcite(channels, r, bias=False)
    assert sum(p.numel() for p in no_bias.parameters()) == 2 * channels * channels // r


def test_explicit_reduced_width():
    assert SqueezeExcite(64, reduced=10).reduced == 10
    with pytest.raises(ValueError, match="reduced=0"):
        SqueezeExcite(64, reduced=0)


@pytest.mark.parametrize("r", [0, -1, 65, float("nan"), "16"])
def test_bad_reduction_ratio(r):
    with pytest.raises(ValueError, match="reduction ratio r="):
        SqueezeExcite(64, r)


@pytest.mark.parametrize(("kw", "match"), [({"squeeze": "mean"}, "squeeze="), ({"gate": "softmax"}, "gate=")])
def test_bad_options_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        SqueezeExcite(64, **kw)


def test_max_and_avgmax_squeeze():
    se = SqueezeExcite(8, 2, squeeze="max")
    x = torch.randn(2, 8, 4, 4)
    expected = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.amax((2, 3))))))
    torch.testing.assert_close(se.excitation(x)[:, :, 0, 0], expected)


def test_nosqueeze_gates_every_position():
    se = SqueezeExcite(8, 2, squeeze="none")
    x = torch.randn(2, 8, 4, 5)
    assert se.excitation(x).shape == x.shape


@pytest.mark.parametrize("gate", ["sigmoid_x2", "relu"])
def test_reset_to_identity_is_exact_and_trainable(gate):
    se = SqueezeExcite(32, 4, gate=gate)
    se.reset_to_identity()
    x = torch.randn(2, 32, 5, 5)
    assert torch.equal(se(x), x)
    se(x).sum().backward()
    assert se.fc2.weight.grad.abs().sum() > 0


def test_reset_to_identity_refuses_gates_that_never_reach_one():
    with pytest.raises(ValueError, match="sigmoid_x2"):
        SqueezeExcite(32, gate="sigmoid").reset_to_identity()


def test_channels_last_gives_the_same_output():
    se = SqueezeExcite(32, 4)
    x = torch.randn(2, 32, 7, 7)
    sc = torch.randn(2, 32, 7, 7)
    xc, scc = x.to(memory_format=torch.channels_last), sc.to(memory_format=torch.channels_last)
    torch.testing.assert_close(se(xc, scc), se(x, sc))


def test_seconfig_validates_and_selects_stages():
    cfg = SEConfig(r=(2, 4, 8, 16), stages=(2, 3))
    assert cfg.ratio(3) == 8 and cfg.in_stage(2) and not cfg.in_stage(1)
    with pytest.raises(ValueError, match="4 ratios"):
        cfg.check(3, ("standard",), "test")
    with pytest.raises(ValueError, match="se_position='middle'"):
        SEConfig(position="middle")
    with pytest.raises(ValueError, match=r"stages are numbered 1\.\.4"):
        SEConfig(stages=(5,)).check(4, ("standard",), "test")
