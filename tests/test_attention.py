"""senet.attention: the units after SE — shapes, exact parameter counts, gradients, SE's call semantics, the identity
start, parity with timm's modules in float64, option errors and the registry."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from senet.layers import SqueezeExcite
from senet.layers.attention import (
    ATTENTION_UNITS,
    CBAM,
    ECA,
    FCA_TOP16,
    SRM,
    CoordinateAttention,
    EffectiveSE,
    GatherExcite,
    GlobalContext,
    MultiSpectralAttention,
    SimAM,
    TripletAttention,
    eca_kernel_size,
    make_attention,
    unit_options,
)
from senet.weights import ConversionError, convert_timm_unit

timm_layers = pytest.importorskip("timm.layers")
from timm.layers.cbam import CbamModule  # noqa: E402
from timm.layers.coord_attn import CoordAttn  # noqa: E402
from timm.layers.create_conv2d import create_conv2d  # noqa: E402
from timm.layers.eca import EcaModule  # noqa: E402
from timm.layers.gather_excite import GatherExcite as TimmGatherExcite  # noqa: E402
from timm.layers.global_context import GlobalContext as TimmGlobalContext  # noqa: E402
from timm.layers.helpers import make_divisible  # noqa: E402
from timm.layers.mlp import ConvMlp  # noqa: E402
from timm.layers.squeeze_excite import EffectiveSEModule  # noqa: E402


def log2(n: int) -> int:
    return n.bit_length() - 1


# Each case: a builder (C, H, W) → unit, and its parameter count written out by hand from the paper's layers.
# Widths: floor(C/16); triplet and CBAM's spatial convolution are 7×7 (49 weights per input map) plus BN's γ, β.
CASES = {
    "se": (lambda c, h, w: SqueezeExcite(c), lambda c, h, w: 2 * c * (c // 16) + c // 16 + c),
    "eca": (lambda c, h, w: ECA(c), lambda c, h, w: eca_kernel_size(c)),
    "eca_k5": (lambda c, h, w: ECA(c, k_size=5), lambda c, h, w: 5),
    "cbam": (lambda c, h, w: CBAM(c), lambda c, h, w: 2 * c * (c // 16) + 2 * 49 + 2),
    "cbam_bias": (lambda c, h, w: CBAM(c, bias=True), lambda c, h, w: 2 * c * (c // 16) + c // 16 + c + 2 * 49 + 2),
    "ge_theta_minus": (lambda c, h, w: GatherExcite(c), lambda c, h, w: 0),
    "ge_theta_minus_e4": (lambda c, h, w: GatherExcite(c, extent=4), lambda c, h, w: 0),
    "ge_theta_global": (
        lambda c, h, w: GatherExcite(c, variant="theta", feat_size=(h, w)),
        lambda c, h, w: c * h * w + 2 * c,
    ),
    "ge_theta_e8": (
        lambda c, h, w: GatherExcite(c, variant="theta", extent=8),
        lambda c, h, w: log2(8) * (9 * c + 2 * c),
    ),
    "ge_theta_plus_e2": (
        lambda c, h, w: GatherExcite(c, variant="theta_plus", extent=2),
        lambda c, h, w: (9 * c + 2 * c) + 2 * c * (c // 16) + c // 16 + c,
    ),
    "ge_theta_plus_global": (
        lambda c, h, w: GatherExcite(c, variant="theta_plus", feat_size=(h, w)),
        lambda c, h, w: c * h * w + 2 * c + 2 * c * (c // 16) + c // 16 + c,
    ),
    # W_k (C, no bias) and one transform: W_v1 (C/r·C + C/r), LN (2·C/r), W_v2 (C·C/r + C)
    "gc": (lambda c, h, w: GlobalContext(c), lambda c, h, w: c + 2 * c * (c // 16) + 3 * (c // 16) + c),
    "gc_both": (
        lambda c, h, w: GlobalContext(c, fusion="both", attn_bias=True),
        lambda c, h, w: c + 1 + 2 * (2 * c * (c // 16) + 3 * (c // 16) + c),
    ),
    "srm": (lambda c, h, w: SRM(c), lambda c, h, w: 2 * c + 2 * c),
    # conv1 (C·m + m), BN (2m), conv_h and conv_w (m·C + C each), m = max(8, C/r)
    "coord": (
        lambda c, h, w: CoordinateAttention(c),
        lambda c, h, w: 3 * c * max(8, c // 16) + 3 * max(8, c // 16) + 2 * c,
    ),
    "fca": (lambda c, h, w: MultiSpectralAttention(c), lambda c, h, w: 2 * c * (c // 16)),
    "ese": (lambda c, h, w: EffectiveSE(c), lambda c, h, w: c * c + c),
    "simam": (lambda c, h, w: SimAM(c), lambda c, h, w: 0),
    "triplet": (lambda c, h, w: TripletAttention(c), lambda c, h, w: 3 * (2 * 49 + 2)),
    "triplet_two_branch_k3": (
        lambda c, h, w: TripletAttention(c, kernel_size=3, spatial=False),
        lambda c, h, w: 2 * (2 * 9 + 2),
    ),
}
SIZES = [(16, 1, 1), (48, 7, 5), (32, 9, 14)]


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@torch.no_grad()
def randomize(module: nn.Module) -> nn.Module:
    """Random weights everywhere, and random running statistics in every BN (so eval mode is not the identity)."""
    for p in module.parameters():
        p.copy_(torch.randn_like(p) * 0.5)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.2)
            m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
    return module


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", CASES)
def test_output_shape_and_parameter_count(case, size):
    c, h, w = size
    build, count = CASES[case]
    unit = build(c, h, w).float().eval()  # float32: float64 depth-wise convolutions are slow on CPU
    assert sum(p.numel() for p in unit.parameters()) == count(c, h, w)
    u = torch.randn(2, c, h, w, dtype=torch.float32)
    y = unit(u)
    assert y.shape == u.shape and y.dtype == u.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("case", CASES)
def test_backward_reaches_every_parameter_and_the_input(case):
    c, h, w = 64, 9, 6  # a bottleneck of 4 and a batch of 8: no ReLU is dead for the whole batch
    unit = randomize(CASES[case][0](c, h, w)).float().train()
    u = torch.randn(8, c, h, w, dtype=torch.float32, requires_grad=True)
    unit(u, torch.randn_like(u), relu=True).square().sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0
    for name, p in unit.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gc_attention_bias_gets_no_gradient_because_softmax_ignores_it():
    unit = randomize(GlobalContext(32, attn_bias=True))
    unit(torch.randn(2, 32, 5, 5)).sum().backward()
    assert unit.conv_attn.bias.grad.abs().item() < 1e-12
    assert unit.conv_attn.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("case", CASES)
def test_shortcut_relu_and_inplace_semantics(case):
    c, h, w = 16, 5, 7
    unit = randomize(CASES[case][0](c, h, w)).float().eval()
    u, s = torch.randn(2, c, h, w, dtype=torch.float32), torch.randn(2, c, h, w, dtype=torch.float32)
    u0 = u.clone()
    same = dict(rtol=0, atol=1e-6)  # SE fuses s·u + shortcut into one addcmul: equal up to rounding
    with torch.no_grad():
        y = unit(u)
        torch.testing.assert_close(unit(u, s), y + s, **same)
        torch.testing.assert_close(unit(u, s, relu=True), torch.relu(y + s), **same)
        torch.testing.assert_close(unit(u, relu=True), torch.relu(y), **same)
        got = unit(u.clone(), s, inplace=True)  # a permission: the result is the same either way
        torch.testing.assert_close(got, y + s, **same)
    assert not torch.equal(y, u)  # the unit does something
    if case != "se":  # SE may write into u when allowed; these units never do
        assert torch.equal(u, u0)


@pytest.mark.parametrize("shape", [(2, 32, 6, 5), (2, 32, 1, 1)])
def test_gc_reset_to_identity_is_exact_and_trainable(shape):
    unit = randomize(GlobalContext(32)).train()
    unit.reset_to_identity()
    u = torch.randn(shape, requires_grad=True)
    y = unit(u)
    assert (y - u).abs().max().item() == 0
    y.square().sum().backward()
    assert unit.mlp_add.fc2.weight.grad.abs().sum() > 0  # training moves it away from the identity


def test_gc_starts_as_the_identity_as_the_authors_initialise_it():
    u = torch.randn(2, 32, 4, 4)
    assert (GlobalContext(32)(u) - u).abs().max().item() == 0
    assert (GlobalContext(32, fusion="scale")(u) - u / 2).abs().max().item() == 0  # σ(0) = 1/2 everywhere


@pytest.mark.parametrize(
    "unit, reason",
    [
        (ECA(16), "sigmoid"),
        (CBAM(16), "sigmoid"),
        (GatherExcite(16), "sigmoid"),
        (GlobalContext(16, fusion="scale"), "fusion='add'"),
        (GlobalContext(16, fusion="both"), "fusion='add'"),
        (SRM(16), "sigmoid"),
        (CoordinateAttention(16), "sigmoid"),
        (MultiSpectralAttention(16), "sigmoid"),
        (EffectiveSE(16), "flat"),
        (SimAM(16), "no parameters"),
        (TripletAttention(16), "sigmoid"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None,
)
def test_reset_to_identity_refused_with_the_reason(unit, reason):
    with pytest.raises(ValueError, match=f"{type(unit).__name__}.*cannot start as the identity.*{reason}"):
        unit.reset_to_identity()


# ---------------------------------------------------------------------------------------------------------------------
# The paper's functions, computed independently of the units' code


def test_eca_kernel_size_follows_psi_and_the_gate_is_a_zero_padded_local_sum():
    # ψ(C) = nearest odd of (log2 C + 1)/2: 4.5→5, 5→5, 5.5→5, 6→7 (ties up); small C
    assert [eca_kernel_size(c) for c in (256, 512, 1024, 2048)] == [5, 5, 5, 7]
    assert [eca_kernel_size(c) for c in (1, 4, 8, 64, 128)] == [1, 1, 3, 3, 5]
    unit = randomize(ECA(10, k_size=3))
    u = torch.randn(2, 10, 3, 4)
    y = u.mean((2, 3))
    wts = unit.conv.weight.view(3)
    padded = F.pad(y, (1, 1))
    gate = torch.sigmoid(sum(wts[j] * padded[:, j : j + 10] for j in range(3)))
    assert torch.allclose(unit(u), u * gate[:, :, None, None], rtol=0, atol=1e-14)


def test_simam_gate_is_sigmoid_of_the_inverse_minimal_energy():
    lam = 0.1
    u = torch.randn(2, 3, 5, 4)
    mu = u.mean((2, 3), keepdim=True)
    var = ((u - mu) ** 2).sum((2, 3), keepdim=True) / (5 * 4 - 1)
    energy = 4 * (var + lam) / ((u - mu) ** 2 + 2 * var + 2 * lam)  # eq. 5
    assert torch.allclose(SimAM(3, lam=lam)(u), u * torch.sigmoid(1 / energy), rtol=0, atol=1e-13)
    one = torch.randn(2, 3, 1, 1)
    assert torch.equal(SimAM(3)(one), one * torch.sigmoid(torch.tensor(0.5)))  # (t − μ̂) = 0 at a 1×1 map


def test_srm_style_pooling_population_and_unbiased():
    u = torch.randn(2, 4, 3, 5)
    flat = u.flatten(2)
    mean = flat.mean(2)
    pop = ((flat - mean[..., None]) ** 2).mean(2).sqrt()
    assert torch.allclose(SRM(4).style(u), torch.stack([mean, pop], 2), rtol=0, atol=1e-14)
    assert torch.allclose(SRM(4, unbiased=True).style(u)[..., 1], pop * math.sqrt(15 / 14), rtol=0, atol=1e-14)
    assert torch.equal(SRM(4).style(torch.randn(2, 4, 1, 1))[..., 1], torch.zeros(2, 4))


def test_fca_dct_basis_is_orthonormal_and_the_dc_component_is_scaled_average_pooling():
    unit = MultiSpectralAttention(16, dct_size=7)
    basis = unit.dct.flatten(1)  # one basis function per channel, 16 distinct frequencies
    assert torch.allclose(basis @ basis.T, torch.eye(16), rtol=0, atol=1e-13)
    dc = MultiSpectralAttention(16, dct_size=(7, 14), frequencies=[(0, 0)] * 16)
    u = torch.randn(2, 16, 7, 14)
    assert torch.allclose(dc.squeeze(u), u.mean((2, 3)) * math.sqrt(7 * 14), rtol=0, atol=1e-13)
    # frequencies scale with the DCT size: (1, 0) on 7×7 is (2, 0) on 14×14
    big = MultiSpectralAttention(16, dct_size=14, frequencies=[(1, 0)] * 16)
    rows = torch.cos(math.pi * 2 * (torch.arange(14) + 0.5) / 14) * math.sqrt(2 / 14) / math.sqrt(14)
    assert torch.allclose(big.dct[0], rows[:, None].expand(14, 14), rtol=0, atol=1e-15)
    assert FCA_TOP16[0] == (0, 0) and len(set(FCA_TOP16)) == 16


def test_fca_channel_groups_follow_the_authors_order_and_differ_by_one_where_16_does_not_divide_c():
    even = MultiSpectralAttention(32, dct_size=7).dct.flatten(1)
    assert all(torch.equal(even[2 * i], even[2 * i + 1]) for i in range(16))  # groups of C/16 in order
    uneven = MultiSpectralAttention(24, dct_size=7).dct.flatten(1)  # channel c → frequency ⌊16c/24⌋
    groups = [min(i for i in range(24) if torch.equal(uneven[i], uneven[c])) for c in range(24)]
    assert [groups.count(g) for g in sorted(set(groups))] == [2, 1] * 8


def test_triplet_equals_the_rotate_and_permute_formulation():
    unit = randomize(TripletAttention(6)).eval()
    u = torch.randn(2, 6, 5, 4)

    def branch(gate, x):  # the paper's form: Z-pool over dim 1 of the rotated map, [max; mean]
        z = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        return x * gate(z)

    rot_h = branch(unit.cw, u.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
    rot_w = branch(unit.hc, u.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
    with torch.no_grad():
        expect = (rot_h + rot_w + branch(unit.hw, u)) / 3
        assert torch.allclose(unit(u), expect, rtol=0, atol=1e-13)


def test_gc_context_is_the_softmax_weighted_mean():
    unit = randomize(GlobalContext(8, r=4))
    u = torch.randn(2, 8, 3, 3)
    logits = (unit.conv_attn.weight.view(8)[None, :, None, None] * u).sum(1).flatten(1)
    alpha = logits.exp() / logits.exp().sum(1, keepdim=True)
    expect = (u.flatten(2) * alpha[:, None, :]).sum(2)
    assert torch.allclose(unit.context_vector(u), expect, rtol=0, atol=1e-13)
    with torch.no_grad():
        unit.conv_attn.weight.zero_()
    assert torch.allclose(unit.context_vector(u), u.mean((2, 3)), rtol=0, atol=1e-14)  # uniform α: SE's squeeze


def test_ge_theta_minus_global_is_a_parameter_free_se_and_local_extents_gather_ceil_h_over_e():
    u = torch.randn(2, 4, 9, 6)
    assert torch.equal(GatherExcite(4)(u), u * torch.sigmoid(u.mean((2, 3), keepdim=True)))
    for e, (h, w) in [(2, (5, 3)), (4, (3, 2)), (8, (2, 1))]:
        assert GatherExcite(4, extent=e).gathered(u).shape == (2, 4, h, w)
        assert GatherExcite(4, variant="theta", extent=e).gathered(u).shape == (2, 4, h, w)


def test_ge_theta_plus_has_the_authors_relu_between_gather_and_excite():
    unit = randomize(GatherExcite(16, variant="theta_plus", extent=2)).eval()
    u = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        g = unit.gather(u)
        assert (g < 0).any()  # so that the ReLU matters
        assert torch.equal(unit.gathered(u), unit.mlp(torch.relu(g)))
        unit.gather_relu = False  # timm's layout
        assert torch.equal(unit.gathered(u), unit.mlp(g))


# ---------------------------------------------------------------------------------------------------------------------
# Parity with timm in float64


def _parity(ours: nn.Module, theirs: nn.Module, shape) -> float:
    randomize(theirs).eval()
    ours.load_state_dict(convert_timm_unit(ours, theirs.state_dict()))
    ours.eval()
    u = torch.randn(shape)
    with torch.no_grad():
        expect, got = theirs(u), ours(u)
    return ((got - expect).abs().max() / expect.abs().max()).item()


def _timm_ge(c: int, extent: int, plus: bool) -> TimmGatherExcite:
    """timm's GE-θ / GE-θ⁺ at a local extent. timm 1.0.31's constructor raises TypeError on these paths (``*dd``
    for ``**dd``); this builds the modules its constructor means to, with timm's own layers, around its forward."""
    ge = TimmGatherExcite(c, extent=extent, use_mlp=False)
    ge.gather = nn.Sequential()
    steps = int(math.log2(extent))
    for i in range(steps):
        ge.gather.add_module(f"conv{i + 1}", create_conv2d(c, c, kernel_size=3, stride=2, depthwise=True))
        ge.gather.add_module(f"norm{i + 1}", nn.BatchNorm2d(c))
        if i != steps - 1:
            ge.gather.add_module(f"act{i + 1}", nn.ReLU(inplace=True))
    if plus:
        ge.mlp = ConvMlp(c, make_divisible(c / 16, 1, round_limit=0.0), act_layer=nn.ReLU)
    return ge


def _coord_width(c: int) -> int:
    return make_divisible(c * (1 / 16) * (2 / 3), 8, round_limit=0.0)


def _rounded(c: int, ratio: float) -> int:
    """timm's bottleneck width: C·ratio rounded half up, at least 1 (floor(C/r) here: 3 vs 2 for C=40, r=16)."""
    return make_divisible(c * ratio, 1, round_limit=0.0)


PARITY = {
    "eca": lambda c: (ECA(c), EcaModule(c)),
    "eca_k7": lambda c: (ECA(c, k_size=7), EcaModule(None, kernel_size=7)),
    "cbam": lambda c: (CBAM(c, reduced=_rounded(c, 1 / 16)), CbamModule(c)),
    "cbam_bias": lambda c: (CBAM(c, reduced=_rounded(c, 1 / 16), bias=True), CbamModule(c, mlp_bias=True)),
    "ge_theta_minus_global": lambda c: (GatherExcite(c), TimmGatherExcite(c, use_mlp=False)),
    "ge_theta_minus_e2": lambda c: (GatherExcite(c, extent=2), TimmGatherExcite(c, extent=2, use_mlp=False)),
    "ge_theta_minus_e8": lambda c: (GatherExcite(c, extent=8), TimmGatherExcite(c, extent=8, use_mlp=False)),
    "ge_theta_e4": lambda c: (GatherExcite(c, variant="theta", extent=4), _timm_ge(c, 4, plus=False)),
    "ge_theta_plus_e2": lambda c: (
        GatherExcite(c, variant="theta_plus", extent=2, reduced=_rounded(c, 1 / 16), gather_relu=False),
        _timm_ge(c, 2, plus=True),
    ),
    "gc_timm_default": lambda c: (
        GlobalContext(c, reduced=_rounded(c, 1 / 8), fusion="scale", attn_bias=True, ln_eps=1e-6),
        TimmGlobalContext(c),
    ),
    "gc_add": lambda c: (
        GlobalContext(c, reduced=_rounded(c, 1 / 16), attn_bias=True, ln_eps=1e-6),
        TimmGlobalContext(c, fuse_add=True, fuse_scale=False, rd_ratio=1 / 16),
    ),
    "gc_both_avg": lambda c: (
        GlobalContext(c, reduced=_rounded(c, 1 / 16), fusion="both", context="avg", ln_eps=1e-6),
        TimmGlobalContext(c, fuse_add=True, use_attn=False, rd_ratio=1 / 16),
    ),
    "coord": lambda c: (CoordinateAttention(c, reduced=_coord_width(c), bias=False), CoordAttn(c)),
    "coord_bias": lambda c: (CoordinateAttention(c, reduced=_coord_width(c)), CoordAttn(c, bias=True)),
    "ese": lambda c: (EffectiveSE(c), EffectiveSEModule(c)),
}


@pytest.mark.parametrize("shape", [(2, 40, 9, 13), (2, 48, 1, 1), (3, 64, 14, 14)], ids=["9x13", "1x1", "14x14"])
@pytest.mark.parametrize("case", PARITY)
def test_parity_with_timm_float64(case, shape):
    if case.startswith(("ge_theta_e", "ge_theta_plus")):  # float64 depth-wise convolutions run one group at a time
        shape = (shape[0], 16, *shape[2:])
    ours, theirs = PARITY[case](shape[1])
    assert _parity(ours, theirs, shape) <= 1e-10


def test_timm_ge_constructor_is_broken_in_this_timm_where_the_parity_test_builds_around_it():
    # If this starts to pass, timm fixed GatherExcite: build `_timm_ge` through its constructor instead.
    with pytest.raises(TypeError):
        TimmGatherExcite(16, extent=2, extra_params=True)
    with pytest.raises(TypeError):
        TimmGatherExcite(16)  # use_mlp=True by default


@pytest.mark.parametrize(
    "ours, theirs, match",
    [
        (GlobalContext(32, reduced=4, fusion="scale", ln_eps=1e-6), TimmGlobalContext(32),
         "GlobalContext state dict does not fit GlobalContext: 1 not in the model: conv_attn.bias"),
        (CBAM(32), CbamModule(32, mlp_bias=True),
         r"2 not in the model: channel.fc1.bias \(as fc1.bias\), channel.fc2.bias \(as fc2.bias\)"),
        (CBAM(32, bias=True), CbamModule(32), "2 missing from the file: fc1.bias, fc2.bias"),
        (EffectiveSE(32), EffectiveSEModule(16),
         r"of another shape: fc.weight \(16, 16, 1, 1\) in the file, \(32, 32\)"),
    ],
)  # fmt: skip
def test_convert_timm_unit_is_strict(ours, theirs, match):
    with pytest.raises(ConversionError, match=match):
        convert_timm_unit(ours, theirs.state_dict())


def test_convert_refuses_units_timm_does_not_have():
    with pytest.raises(ValueError, match="timm has no module for SRM; conversions exist for ECA"):
        convert_timm_unit(SRM(8), {})


# ---------------------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ECA(0), r"channels=0 must be a positive int"),
        (lambda: ECA(16, r=0), r"r=0 must be a positive number"),
        (lambda: ECA(16, k_size=4), r"k_size=4 must be a positive odd int"),
        (lambda: ECA(16, gamma=0), r"gamma=0 must be a positive number"),
        (lambda: CBAM(16, kernel_size=6), r"kernel_size=6 must be a positive odd int"),
        (lambda: CBAM(16, reduced=0), r"reduced=0 must be a positive int"),
        (lambda: CBAM(8), r"r=16 exceeds the 8 channels it reduces; use r <= 8"),
        (lambda: GatherExcite(16, variant="theta+"), r"variant='theta\+' is not one of 'theta_minus', 'theta'"),
        (lambda: GatherExcite(16, extent=3), r"extent=3 must be a power of two >= 2"),
        (lambda: GatherExcite(16, feat_size=7), r"feat_size=7 is only used by the global gather.*leave it None"),
        (lambda: GatherExcite(16, variant="theta"), r"variant='theta' at global extent needs feat_size"),
        (lambda: GatherExcite(16, variant="theta", extent=2, gather_relu=False), r"gather_relu=False only applies"),
        (lambda: GatherExcite(16, reduced=4), r"reduced=4 only applies to variant='theta_plus'"),
        (lambda: GatherExcite(16, variant="theta", feat_size=(7, 0)), r"feat_size=\(7, 0\) must be a positive"),
        (lambda: GlobalContext(16, fusion="mul"), r"fusion='mul' is not one of 'add', 'scale', 'both'"),
        (lambda: GlobalContext(16, context="max"), r"context='max' is not one of 'attention', 'avg'"),
        (lambda: GlobalContext(16, context="avg", attn_bias=True), r"attn_bias=True needs context='attention'"),
        (lambda: GlobalContext(16, ln_eps=0), r"ln_eps=0 must be a positive number"),
        (
            lambda: MultiSpectralAttention(8, reduced=2),
            r"channels=8 are fewer than the 16 frequencies.*at most 8 frequencies",
        ),
        (lambda: MultiSpectralAttention(16, dct_size=4), r"dct_size=4 must be at least 7"),
        (lambda: MultiSpectralAttention(16, frequencies=[(7, 0)]), r"frequencies=\[\(7, 0\)\] must be \(u, v\)"),
        (lambda: SimAM(16, lam=0), r"lam=0 must be a positive number"),
        (lambda: TripletAttention(16, kernel_size=0), r"kernel_size=0 must be a positive odd int"),
    ],
)
def test_bad_options_name_the_value_and_the_fix(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'k'"):
        ECA(16, k=3)


def test_errors_raised_at_call_time():
    with pytest.raises(ValueError, match=r"built for \(7, 7\) maps.*got \(5, 5\); build it with feat_size=\(5, 5\)"):
        GatherExcite(8, variant="theta", feat_size=7)(torch.randn(1, 8, 5, 5))
    with pytest.raises(ValueError, match=r"needs at least 2 positions.*use unbiased=False"):
        SRM(8, unbiased=True)(torch.randn(2, 8, 1, 1))


# ---------------------------------------------------------------------------------------------------------------------
# The registry


def test_registry_names_every_unit_and_se_is_senets_own():
    assert ATTENTION_UNITS["se"] is SqueezeExcite
    assert set(ATTENTION_UNITS) == {"se", "eca", "cbam", "ge", "gc", "srm", "coord", "fca", "ese", "simam", "triplet"}
    for name, cls in ATTENTION_UNITS.items():
        unit = make_attention(name, 64, **({"variant": "theta", "extent": 2} if name == "ge" else {}))
        assert type(unit) is cls


def test_make_attention_passes_r_and_options():
    assert make_attention("cbam", 64, r=8).reduced == 8
    assert make_attention("eca", 64, k_size=9).k_size == 9
    assert make_attention("se", 64, r=4, gate="sigmoid_x2").gate_name == "sigmoid_x2"
    assert make_attention("eca", 64, r=4).k_size == eca_kernel_size(64)  # r does not change ECA
    assert "k_size" in unit_options("eca") and "variant" in unit_options("ge")


def test_make_attention_unknown_name():
    with pytest.raises(ValueError, match=r"unknown attention unit 'ecaa'; close matches: eca.*valid names: se, eca"):
        make_attention("ecaa", 64)
    with pytest.raises(ValueError, match=r"unknown attention unit 'xyz'; valid names: se, eca, cbam"):
        make_attention("xyz", 64)


def test_make_attention_unknown_option():
    with pytest.raises(TypeError, match=r"'eca' has no option 'k'; its options are: k_size, gamma, b"):
        make_attention("eca", 64, k=3)
    with pytest.raises(TypeError, match=r"'simam' has no option 'lambda_'; its options are: lam"):
        make_attention("simam", 64, lambda_=0.1)


def test_timm_gather_excite_theta_plus_weights_need_gather_relu_off():
    """Same keys and shapes, another function (timm's θ⁺ has no ReLU after the gather): refused, not loaded."""
    unit = GatherExcite(16, variant="theta_plus", extent=2)
    with pytest.raises(ValueError, match="build the unit with gather_relu=False"):
        convert_timm_unit(unit, unit.state_dict())
