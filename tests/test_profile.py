"""senet.profile against the paper's figures and the counted references (docs/reference.md §2, Tables 10, 13)."""

import pytest
import torch
from conftest import slow

import senet
from senet.complexity import overhead


def prof(name, size=(3, 224, 224), **options):
    with torch.device("meta"):
        return senet.profile(senet.create_model(name, **options), size)


# (model, counted params of the SE model, paper GMACs plain, paper GMACs SE)
# The 101- and 152-layer networks (0.4-0.8 s each) in the full suite.
PAPER = [
    ("se_resnet50", 28.088e6, 3.86, 3.87),
    pytest.param("se_resnet101", 49.327e6, 7.58, 7.60, marks=slow),
    pytest.param("se_resnet152", 66.822e6, 11.30, 11.32, marks=slow),
    ("se_resnext50_32x4d", 27.560e6, 4.24, 4.25),
    pytest.param("se_resnext101_32x4d", 48.955e6, 7.99, 8.00, marks=slow),
]


@pytest.mark.parametrize(("name", "params", "plain_gmacs", "se_gmacs"), PAPER)
def test_paper_params_and_macs_original_layout(name, params, plain_gmacs, se_gmacs):
    se = prof(name)
    plain = prof(senet.get_entry(name).twin)
    assert se.params == pytest.approx(params, rel=1e-3)
    assert se.macs / 1e9 == pytest.approx(se_gmacs, rel=0.01)
    assert plain.macs / 1e9 == pytest.approx(plain_gmacs, rel=0.01)


@pytest.mark.parametrize(
    ("name", "params", "gmacs"),
    [("se_resnet18", 11.780e6, None), ("se_resnet34", 21.960e6, None), ("senet154", 115.089e6, 20.7),
     ("resnet50", 25.557e6, 3.86)],
)  # fmt: skip
def test_counted_references(name, params, gmacs):
    p = prof(name)
    assert p.params == pytest.approx(params, rel=1e-3)
    if gmacs:
        assert p.macs / 1e9 == pytest.approx(gmacs, rel=0.01)


def test_v15_layout_costs_what_torchvision_reports():
    assert prof("resnet50", layout="v1.5").macs / 1e9 == pytest.approx(4.089, abs=0.005)


def test_se_resnet50_se_arithmetic():
    se, plain = prof("se_resnet50"), prof("resnet50")
    assert se.params - plain.params == 2_514_944 + 16_048  # Σ 2C²/r weights + biases
    assert se.se_params == 2_514_944 + 16_048
    # SE pooling + scaling: 2 MACs per element of the 16 rescaled maps, plus the FCs.
    elems = 256 * 56 * 56 * 3 + 512 * 28 * 28 * 4 + 1024 * 14 * 14 * 6 + 2048 * 7 * 7 * 3
    assert se.se_macs == 2 * elems + 2_514_944
    assert se.macs - plain.macs == se.se_macs


@pytest.mark.parametrize(("r", "millions"), [(2, 45.7), (4, 35.7), (8, 30.7), (16, 28.1), (32, 26.9)])
def test_table10_reduction_ratio_params(r, millions):
    assert prof("se_resnet50", r=r).params / 1e6 == pytest.approx(millions, abs=0.1)


@pytest.mark.parametrize(("stage", "millions"), [(1, 25.6), (2, 25.7), (3, 26.4)])
def test_table13_se_in_one_stage_params(stage, millions):
    assert prof("se_resnet50", se_stages=(stage,)).params / 1e6 == pytest.approx(millions, abs=0.1)


def test_table15_16_position_and_nosqueeze():
    assert prof("se_resnet50", se_position="after_3x3").params / 1e6 == pytest.approx(25.8, abs=0.1)
    assert prof("se_resnet50", se_squeeze="none").macs / 1e9 == pytest.approx(4.27, abs=0.01)


def test_profile_matches_real_forward_and_leaves_model_unchanged():
    model = senet.create_model("se_resnet20").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = senet.profile(model, (3, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert p.params == sum(q.numel() for q in model.parameters())
    assert sum(c.params for c in p.layers) == p.params - sum(
        m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert p.by_kind()["SqueezeExcite"] == p.se_macs > 0


def test_overhead_of_twins():
    o = overhead("resnet50")
    assert (o.se_model, o.plain_model) == ("se_resnet50", "resnet50")
    assert o.params_pct == pytest.approx(9.9, abs=0.05)
    assert 0 < o.macs_pct < 0.5


def test_bad_input_size():
    with pytest.raises(ValueError, match="input_size="):
        senet.profile(senet.create_model("resnet20"), (32, 32))
