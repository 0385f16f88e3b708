"""SE-BN-Inception, SE-Inception-v3, SE-Inception-ResNet-v2, SE-MobileNet, SE-ShuffleNet, SE-VGG-16: complexity
against the paper (docs/reference.md §2, paper Tables 2 and 3), outputs against torchvision and timm, and where
each SE unit sits."""

import math

import pytest
import timm
import torch
import torchvision
from _interop import trained_like
from conftest import slow

import senet
from senet.cli import main
from senet.models.inception import MaxPoolCeil
from senet.models.mobile import channel_shuffle


def prof(name, size=None, **options):
    size = size or senet.get_entry(name).input_size
    with torch.device("meta"):
        return senet.profile(senet.create_model(name, **options), size)


def se_units(model):
    return [m for m in model.modules() if isinstance(m, senet.SqueezeExcite)]


# ---------------------------------------------------------------------------------------------------------------------
# Complexity. "paper" figures are the paper's (Tables 2, 3), rounded as printed; "counted" ones are docs/reference.md's.

# (SE model, plain params counted, plain GMACs counted, paper GMACs plain, paper GMACs SE)
PAPER = [
    ("se_bn_inception", 11.295e6, 2.033, 2.03, 2.04),
    ("se_vgg16_bn", 138.358e6, 15.470, 15.47, 15.48),
    ("se_mobilenet", 4.232e6, 0.569, 0.569, 0.572),
]


@pytest.mark.parametrize(("name", "params", "gmacs", "paper_plain", "paper_se"), PAPER)
def test_params_and_macs_match_the_paper_within_1pct(name, params, gmacs, paper_plain, paper_se):
    se, plain = prof(name), prof(senet.get_entry(name).twin)
    assert plain.params == pytest.approx(params, rel=0.01)
    assert plain.macs / 1e9 == pytest.approx(gmacs, rel=0.001)
    assert plain.macs / 1e9 == pytest.approx(paper_plain, rel=0.01)
    assert se.macs / 1e9 == pytest.approx(paper_se, rel=0.01)
    assert se.macs - plain.macs == se.se_macs > 0


def test_bn_inception_params_exact():
    assert prof("bn_inception").params == 11_285_224  # the released SE-BN-Inception's convolutions have no bias
    assert prof("bn_inception", conv_bias=True).params == 11_295_240  # pretrainedmodels' bninception: 11.295M


@slow
def test_inception_v3_and_inception_resnet_v2_count_as_torchvision_and_timm():
    with torch.device("meta"):
        tv = torchvision.models.inception_v3(aux_logits=False, init_weights=False)
        tm = timm.create_model("inception_resnet_v2")
    size = (3, 299, 299)
    for ours, ref, params, gmacs in [
        ("inception_v3", tv, 23.835e6, 5.713),
        ("inception_resnet_v2", tm, 55.843e6, 13.156),
    ]:
        p, q = prof(ours), senet.profile(ref, size)
        assert p.input_size == size  # registered at 299²
        assert (p.params, p.macs) == (q.params, q.macs)
        assert p.params == pytest.approx(params, rel=1e-4) and p.macs / 1e9 == pytest.approx(gmacs, rel=1e-4)


def test_mobile_params_paper_table3():
    # MobileNet 4.2M → 4.7M with r = 16 in all 13 blocks.
    assert prof("mobilenet").params == 4_231_976
    assert prof("se_mobilenet").params / 1e6 == pytest.approx(4.7, rel=0.01)
    # ShuffleNet 1× (g = 3): the paper's 1.8M and 2.4M are our counts truncated to one decimal (1.87M, 2.48M);
    # the SE increase, 0.62M, is the paper's 0.6M.
    plain, se = prof("shufflenet").params, prof("se_shufflenet").params
    assert (math.floor(plain / 1e5), math.floor(se / 1e5)) == (18, 24)
    assert (se - plain) / 1e6 == pytest.approx(0.6, abs=0.05)


@pytest.mark.parametrize(("groups", "mmacs"), [(1, 143), (2, 140), (3, 137), (4, 133), (8, 137)])
def test_shufflenet_complexity_shufflenet_table1(groups, mmacs):
    # The ShuffleNet paper rounds to 1M; the SE paper's "140" is that table's budget for ShuffleNet 1× (~140 MFLOPs).
    assert prof("shufflenet", groups=groups).macs / 1e6 == pytest.approx(mmacs, abs=1.5)


def test_se_shufflenet_macs_paper_table3():
    assert prof("se_shufflenet").macs / 1e9 == pytest.approx(0.142, rel=0.01)


@pytest.mark.parametrize(("width", "mparams", "mmacs"), [(0.75, 2.6, 325), (0.5, 1.3, 149), (0.25, 0.5, 41)])
def test_mobilenet_width_multiplier_mobilenet_table6(width, mparams, mmacs):
    p = prof("mobilenet", width_mult=width)
    assert round(p.params / 1e6, 1) == mparams
    assert p.macs / 1e6 == pytest.approx(mmacs, abs=1.5)


def test_se_vgg16_placement_and_its_macs():
    """SE after each of the 13 conv → BN → ReLU (paper §3.3). senet.profile counts the squeeze and the scale, one
    multiply-add per element each: 15.498 G. The paper's 15.48 is the same network with one per element."""
    se, plain = prof("se_vgg16_bn"), prof("vgg16_bn")
    stages = [(64, 2, 224), (128, 2, 112), (256, 3, 56), (512, 3, 28), (512, 3, 14)]  # (C, convs, side)
    elements = sum(c * s * s * n for c, n, s in stages)
    fc_weights = sum(n * 2 * c * (c // 16) for c, n, s in stages)
    assert len(se.layers) - len(plain.layers) == 13
    assert se.se_macs == 2 * elements + fc_weights
    assert round(se.macs / 1e9, 2) == 15.50
    assert round((plain.macs + elements + fc_weights) / 1e9, 2) == 15.48
    assert plain.params == 138_357_544 + 2 * 4224  # torchvision's vgg16 + the BN weights and biases


# ---------------------------------------------------------------------------------------------------------------------
# The same functions as the reference implementations: tests/test_family_weights.py converts each reference's weights
# with senet.load_weights and compares the outputs in float64. Here, Inception-v3's auxiliary head in training mode.


@slow
def test_inception_v3_aux_head_matches_torchvision_in_training():
    ref = torchvision.models.inception_v3(aux_logits=True, init_weights=False, dropout=0.0)
    ref = trained_like(ref, torch.randn(2, 3, 299, 299)).train()
    model = senet.load_weights(senet.create_model("inception_v3", aux_logits=True, drop_rate=0.0), ref.state_dict())
    assert model.min_size == 299  # the auxiliary head's 5×5 convolution needs Mixed_6e at 17×17
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        out, expected = model.train()(x), ref(x)
    assert isinstance(out, senet.models.inception.InceptionOutputs)
    torch.testing.assert_close(out.logits, expected.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.aux_logits, expected.aux_logits, rtol=1e-4, atol=1e-4)
    assert model.eval()(x[:1]).shape == (1, 1000)  # no auxiliary output in eval mode


# ---------------------------------------------------------------------------------------------------------------------
# Where the SE units sit.


def test_se_bn_inception_units_match_the_released_model():
    with torch.device("meta"):
        model = senet.create_model("se_bn_inception")
    # SE on every module's concatenation, reductions 3c and 4e included; bottlenecks as in SE-BN-Inception.prototxt.
    assert [u.channels for u in se_units(model)] == [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
    assert [u.reduced for u in se_units(model)] == [16, 20, 36, 36, 36, 38, 38, 66, 64, 64]


def test_se_inception_module_rescales_the_concatenation():
    model = senet.create_model("se_inception_v3").eval()
    module = model.blocks.Mixed_5b
    x = torch.randn(2, 192, 9, 9)
    with torch.no_grad():
        cat = torch.cat([b(x) for b in module.branches], 1)
        torch.testing.assert_close(module(x), cat * module.se.excitation(cat))
    assert len(se_units(model)) == 11


def _close_gate(se):
    """Make an SE unit's gate 0 everywhere: it then removes what it rescales."""
    with torch.no_grad():
        se.fc2.weight.zero_()
        se.fc2.bias.fill_(-1e4)


@pytest.mark.parametrize("position", ["standard", "identity", "pre", "post"])
def test_se_inception_resnet_unit_gates_the_residual_branch(position):
    with torch.device("meta"):  # the network's structure; one unit of it computes (55M parameters in all)
        model = senet.create_model("se_inception_resnet_v2", se_position=position)
    unit = model.blocks.block35_1.to_empty(device="cpu")
    for m in unit.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()  # convolutions, BN (statistics too), the SE unit's FCs
    unit.eval()
    _close_gate(unit.se)
    x = torch.randn(2, 320, 5, 5).relu()
    with torch.no_grad():
        out = unit(x)
        branch = unit.up(unit.branches(x))
    if position == "standard":  # the residual is removed, the identity kept
        torch.testing.assert_close(out, x)
    elif position == "identity":  # the identity is removed, the scaled residual kept
        torch.testing.assert_close(out, (0.17 * branch).relu())
    elif position == "pre":  # the branch sees zeros, the identity is kept
        torch.testing.assert_close(out, (x + 0.17 * unit.up(unit.branches(torch.zeros_like(x)))).relu())
    else:  # after the addition: everything removed
        torch.testing.assert_close(out, torch.zeros_like(out))
    assert len(se_units(model)) == 40  # one per unit; none in the Inception modules Mixed_5b, 6a, 7a
    assert not any(isinstance(m, senet.SqueezeExcite) for m in model.blocks.Mixed_6a.modules())


def test_se_inception_resnet_v2_last_unit_is_linear_with_scale_1():
    with torch.device("meta"):
        model = senet.create_model("se_inception_resnet_v2")
    last = model.blocks.block8_10
    assert last.scale == 1.0 and isinstance(last.act, torch.nn.Identity)
    assert model.blocks.block8_9.scale == 0.2 and isinstance(model.blocks.block8_9.act, torch.nn.ReLU)


def test_se_mobilenet_positions():
    with torch.device("meta"):
        standard = senet.create_model("se_mobilenet")
        after = senet.create_model("se_mobilenet", se_position="after_3x3")
    outs = [64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]
    assert [u.channels for u in se_units(standard)] == outs  # after each pointwise conv → BN → ReLU
    assert [u.channels for u in se_units(after)] == [32, *outs[:-1]]  # after each depthwise conv → BN → ReLU


@pytest.mark.parametrize("position", ["standard", "post", "after_3x3"])
def test_se_shufflenet_unit_gates(position):
    model = senet.create_model("se_shufflenet", se_position=position).eval()
    down, unit = model.layer1[0], model.layer1[1]  # 24 → 240 channels at stride 2, then 240 → 240
    expected_channels = {"standard": (216, 240), "post": (240, 240), "after_3x3": (60, 60)}[position]
    assert (down.se.channels, unit.se.channels) == expected_channels
    for u in (down, unit):
        _close_gate(u.se)
    x = torch.randn(2, 24, 8, 8).relu()
    with torch.no_grad():
        y = down(x)
        pooled = torch.nn.functional.avg_pool2d(x, 3, 2, 1)
        if position == "post":
            torch.testing.assert_close(y, torch.zeros_like(y))
        elif position == "standard":  # the branch is removed, the pooled shortcut kept
            torch.testing.assert_close(y, torch.cat([pooled, torch.zeros(2, 216, 4, 4)], 1))
        y = torch.randn(2, 240, 4, 4).relu()
        if position == "standard":
            torch.testing.assert_close(unit(y), y)


def test_se_vgg16_has_a_unit_after_every_convolution():
    with torch.device("meta"):
        model = senet.create_model("se_vgg16_bn")
    names = [n for n, _ in model.features.named_children()][:7]
    assert names == ["conv1_1", "se1_1", "conv1_2", "se1_2", "pool1", "conv2_1", "se2_1"]
    assert [type(m).__name__ for m in model.features.conv1_1] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert len(se_units(model)) == 13


@pytest.mark.parametrize(
    ("name", "stage_units"),
    [("se_bn_inception", (3, 5, 2)), ("se_inception_v3", (3, 5, 3)), ("se_inception_resnet_v2", (10, 20, 10)),
     ("se_mobilenet", (1, 2, 2, 6, 2)), ("se_shufflenet", (4, 8, 4)), ("se_vgg16_bn", (2, 2, 3, 3, 3))],
)  # fmt: skip
def test_se_stages_and_per_stage_ratio(name, stage_units):
    stages = len(stage_units)
    with torch.device("meta"):
        model = senet.create_model(name, se_stages=(stages,), r=tuple(2 ** (i + 1) for i in range(stages)))
    units = se_units(model)
    assert len(units) == stage_units[-1]
    assert all(u.reduced == u.channels // 2**stages for u in units)
    with pytest.raises(ValueError, match=f"stages are numbered 1..{stages}"):
        senet.create_model(name, se_stages=(stages + 1,))


# ---------------------------------------------------------------------------------------------------------------------
# Details of the architectures and errors.


def test_bn_inception_reduction_pooling_is_caffes_on_even_maps_and_takes_odd_ones():
    x = torch.randn(1, 4, 14, 14)
    torch.testing.assert_close(MaxPoolCeil()(x), torch.nn.functional.max_pool2d(x, 3, 2, ceil_mode=True))
    assert MaxPoolCeil()(torch.randn(1, 4, 25, 13)).shape[-2:] == (13, 7)  # ⌈n/2⌉, as the strided convolutions
    model = senet.create_model("bn_inception", num_classes=3).eval()
    assert model(torch.randn(1, 3, 200, 200)).shape == (1, 3)  # a 25×25 map enters 3c: Caffe's pooling fails there


def test_channel_shuffle():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [("se_bn_inception", {"se_position": "pre"}, "not available in BN-Inception; choose one of standard"),
     ("se_inception_resnet_v2", {"se_position": "after_3x3"}, "standard, pre, post, identity"),
     ("shufflenet", {"groups": 5}, r"groups=5 is not one of \(1, 2, 3, 4, 8\)"),
     ("mobilenet", {"width_mult": 0}, "width_mult=0 must be a number in"),
     ("se_vgg16_bn", {"r": (16, 16)}, "gives 2 ratios for a network of 5 stages")],
)  # fmt: skip
def test_bad_options(name, options, message):
    with pytest.raises(ValueError, match=message):
        senet.create_model(name, **options)


@slow
def test_senet_profile_prints_every_family(capsys):
    assert main(["profile", "se_bn_inception", "se_mobilenet", "shufflenet", "se_vgg16_bn"]) == 0
    out = capsys.readouterr().out
    for header in ("inception (224×224", "mobile (224×224", "vgg (224×224"):
        assert header in out
    assert "se_shufflenet" in out and "shufflenet" in out
