"""Excitation statistics: per-class moments equal a direct computation; specificity; files and figures."""

import numpy as np
import pytest
import torch

import senet
from senet.analysis.excitation import (
    ExcitationStats,
    default_units,
    paper_name,
    plot_class_means,
    plot_spread,
    record_excitations,
)


def test_default_units_follow_the_paper():
    with torch.device("meta"):
        model = senet.create_model("se_resnet50")
    units = default_units(model)
    assert [paper_name(u) for u in units] == ["SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3"]


def test_moments_match_a_direct_computation(tmp_path):
    model = senet.create_model("se_resnet20", num_classes=3, in_chans=1).eval()
    x = torch.randn(12, 1, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 1, 2, 0])
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    stats = record_excitations(model, batches, num_classes=3, units=["layer3.2.se"])
    unit = model.layer3[2].se
    gates = []
    unit.register_forward_hook(lambda m, i, o: gates.append(m.excitation(i[0]).flatten(1)))
    with torch.no_grad():
        model(x)
    g = gates[0].double().numpy()
    for k in range(3):
        np.testing.assert_allclose(stats.mean["layer3.2.se"][k], g[y == k].mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats.std["layer3.2.se"][k], g[y == k].std(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(stats.overall_mean["layer3.2.se"], g.mean(0), rtol=1e-6)
    assert stats.counts.tolist() == [5, 4, 3]
    paths = stats.save(tmp_path)
    again = ExcitationStats.load(paths[0])
    np.testing.assert_array_equal(again.mean["layer3.2.se"], stats.mean["layer3.2.se"])
    assert "SE_4_3" in paths[1].read_text()
    for png in (plot_class_means(stats, tmp_path / "a.png"), plot_spread(stats, tmp_path / "b.png")):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_specificity_is_zero_when_class_agnostic_and_one_when_determined_by_class():
    mean = np.array([[0.2, 0.8], [0.2, 0.8]])
    agnostic = ExcitationStats(["u"], ["a", "b"], np.array([5, 5]), {"u": mean}, {"u": np.full((2, 2), 0.1)},
                               {"u": mean[0]})  # fmt: skip
    assert agnostic.specificity()["u"] == pytest.approx(0.0)
    assert agnostic.class_spread()["u"] == pytest.approx(0.0)
    mean = np.array([[0.1, 0.9], [0.9, 0.1]])
    specific = ExcitationStats(["u"], ["a", "b"], np.array([5, 5]), {"u": mean}, {"u": np.zeros((2, 2))},
                               {"u": mean.mean(0)})  # fmt: skip
    assert specific.specificity()["u"] == pytest.approx(1.0)
    assert specific.class_spread()["u"] == pytest.approx(0.4)  # class means 0.1 and 0.9 lie 0.4 from their mean


def test_class_spread_sees_scale_where_eta_squared_does_not():
    """Tiny gate differences that follow the class give η² = 1 but a spread near 0; the spread grows with them."""

    def stats(gap: float) -> ExcitationStats:
        mean = np.array([[0.5 - gap], [0.5 + gap]])
        return ExcitationStats(["u"], ["a", "b"], np.array([1, 3]), {"u": mean}, {"u": np.zeros((2, 1))},
                               {"u": np.array([0.5 + gap / 2])})  # fmt: skip

    assert stats(1e-3).specificity()["u"] == pytest.approx(1.0)
    assert stats(1e-3).class_spread()["u"] == pytest.approx(np.sqrt(3) / 2 * 1e-3)  # weights 1/4, 3/4: √(3/4)·gap
    assert stats(0.2).class_spread()["u"] == pytest.approx(np.sqrt(3) / 2 * 0.2)


def test_bad_unit_named():
    model = senet.create_model("se_resnet20")
    with pytest.raises(ValueError, match="not SE units"):
        record_excitations(model, [], num_classes=10, units=["layer1.0.conv1"])
    with pytest.raises(ValueError, match="has no SE units"):
        default_units(senet.create_model("resnet20"))
