"""add_se: SE inserted into torchvision, timm and senet models leaves their outputs unchanged, adds exactly the
paper's parameters, and trains."""

import pytest
import timm
import torch
import torchvision
from _interop import trained_like

import senet
from senet.factory import load_model
from senet.files import save_weights
from senet.layers import SqueezeExcite

# name: (builder, add_se pattern, input side)
MODELS = {
    "tv_resnet18": (torchvision.models.resnet18, None, 32),
    "tv_resnet50": (torchvision.models.resnet50, None, 32),
    "tv_mobilenet_v2": (torchvision.models.mobilenet_v2, "features.*.conv", 32),
    "senet_resnet20": (lambda: senet.create_model("resnet20"), None, 16),
    "timm_resnet18": (lambda: timm.create_model("resnet18"), None, 32),
}


def se_units(model):
    return [m for m in model.modules() if isinstance(m, SqueezeExcite)]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "tv_resnet50" else n for n in MODELS])
def test_insertion_keeps_outputs_adds_the_se_arithmetic_and_trains(name):
    build, pattern, side = MODELS[name]
    model = trained_like(build(), torch.randn(8, 3, side, side))
    x = torch.randn(4, 3, side, side)
    with torch.no_grad():
        before = model(x)
    params = n_params(model)

    assert senet.add_se(model, 16, pattern=pattern) is model
    units = se_units(model)
    assert units
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    # Each unit: W1 (C/r × C) and W2 (C × C/r) with their biases (paper §4).
    assert n_params(model) - params == sum(2 * u.channels * u.reduced + u.channels + u.reduced for u in units)

    gates = {}
    for i, u in enumerate(units):
        u.gate.register_forward_hook(lambda m, inp, out, i=i: gates.__setitem__(i, out.detach()))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        out = model(torch.randn(8, 3, side, side))
        torch.nn.functional.cross_entropy(out, torch.randint(0, out.shape[1], (8,))).backward()
        opt.step()
    with torch.no_grad():
        model.eval()(x)
    moved = [i for i, s in gates.items() if (s - 1).abs().max() > 1e-4]
    assert len(moved) == len(units), f"gates of units {sorted(set(range(len(units))) - set(moved))} still at 1"


def test_resnet50_gains_the_papers_se_parameters():
    """docs/reference.md §2: SE adds Σ 2C²/r = 2,514,944 weights and 16,048 biases to ResNet-50 (r = 16)."""
    model = torchvision.models.resnet50()
    params = n_params(model)
    senet.add_se(model)
    assert n_params(model) - params == 2_514_944 + 16_048
    assert len(se_units(model)) == 16


def test_pattern_selects_blocks_and_modules():
    model = senet.add_se(torchvision.models.resnet50(), pattern="layer4.*")
    assert [u.channels for u in se_units(model)] == [2048] * 3
    mobile = senet.add_se(torchvision.models.mobilenet_v2(), 8, pattern="features.*.conv")
    assert len(se_units(mobile)) == 17 and se_units(mobile)[-1].channels == 320
    assert isinstance(mobile.features[1].conv, senet.retrofit.SEAfter)


def test_retrofitted_senet_plain_model_is_its_se_twin_and_rebuilds(tmp_path):
    model = trained_like(senet.create_model("resnet20", num_classes=5), torch.randn(8, 3, 16, 16))
    senet.add_se(model, 4)
    assert model.model_config["name"] == "se_resnet20"
    assert model.model_config["options"] == {"r": 4, "se_gate": "sigmoid_x2", "se_rounding": "floor", "se_conv": False}
    path = save_weights(tmp_path / "w.safetensors", model, model.model_config)
    loaded, _ = load_model(path)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded.eval()(x), model(x), rtol=0, atol=0)
    partial = trained_like(senet.add_se(senet.create_model("resnet20"), pattern="layer3.*"), torch.randn(8, 3, 16, 16))
    assert partial.model_config["add_se"][0]["pattern"] == "layer3.*"  # the call, which a rebuild makes again
    loaded, _ = load_model(save_weights(tmp_path / "p.safetensors", partial, partial.model_config))
    torch.testing.assert_close(loaded.eval()(x), partial(x), rtol=0, atol=0)


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match=r"no ResNet/ResNeXt blocks recognised in MobileNetV2; pass pattern="):
        senet.add_se(torchvision.models.mobilenet_v2())
    with pytest.raises(ValueError, match=r"matches pattern='blocks\.\*'; names look like conv1, bn1"):
        senet.add_se(torchvision.models.resnet18(), pattern="blocks.*")
    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match="cannot output exactly 1; use gate='sigmoid_x2'"):
        senet.add_se(model, gate="sigmoid")
    assert not se_units(model)  # refused before anything was inserted
    senet.add_se(model)
    with pytest.raises(ValueError, match="already has an SE unit"):
        senet.add_se(model)
    with pytest.raises(ValueError, match="already has an SE unit"):
        senet.add_se(senet.create_model("se_resnet20"))
