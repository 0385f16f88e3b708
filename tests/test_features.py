"""Feature maps of every family (`senet.models.features`): ``features_only`` / ``out_indices`` on every registered
model against ``feature_info``, ``forward_intermediates`` in timm's form, the modules a feature network removes,
torchvision's ``create_feature_extractor`` (torch.fx) and ``torch.compile(fullgraph=True)`` on one model of each
family."""

import math

import pytest
import torch
from conftest import one_per_family, slow
from torchvision.models.feature_extraction import create_feature_extractor

import senet
from senet.factory import load_model
from senet.files import save_weights
from senet.models import FeatureNet

UNPADDED = {"inception_v3", "se_inception_v3", "inception_resnet_v2", "se_inception_resnet_v2"}


def side(name: str) -> int:
    """An input side whose maps have exactly side / reduction pixels (networks with padded convolutions), or 299 for
    Inception-v3 and Inception-ResNet-v2, whose unpadded convolutions give a little less (147, 71, 35, 17, 8)."""
    return 299 if name in UNPADDED else 64


def same(maps, others) -> bool:
    """Two lists of maps, equal bit for bit."""
    return len(maps) == len(others) and all(torch.equal(a, b) for a, b in zip(maps, others, strict=True))


def check_maps(maps, info, size, name):
    assert len(maps) == len(info), name
    for x, channels, reduction in zip(maps, info.channels(), info.reduction(), strict=True):
        assert x.shape[:2] == (2, channels), name
        if name in UNPADDED:  # the nearest power of two to the measured stride
            assert all(round(math.log2(size / s)) == math.log2(reduction) for s in x.shape[2:]), (name, x.shape)
        else:
            assert x.shape[2:] == (size // reduction, size // reduction), (name, x.shape, reduction)


@pytest.mark.parametrize("name", one_per_family(senet.list_models()))
def test_features_only_maps_are_what_feature_info_says(name):
    """Every registered model, on the meta device (shapes without arithmetic): the maps of ``features_only``, all of
    them and a choice, have the number, channels and strides ``feature_info`` gives."""
    size = side(name)
    with torch.device("meta"):
        model = senet.create_model(name)
        x = torch.empty(2, 3, size, size)
        features = senet.create_model(name, features_only=True)
        assert features.feature_info == model.feature_info  # every map by default
        check_maps(features(x), features.feature_info, size, name)
        last = len(model.feature_info) - 1
        chosen = senet.create_model(name, features_only=True, out_indices=(0, last))
        assert chosen.feature_info == [model.feature_info[0], model.feature_info[last]]
        check_maps(chosen(x), chosen.feature_info, size, name)
    modules = dict(model.named_modules())
    assert all(path in modules for path in model.feature_info.module_name())


@pytest.mark.parametrize("name", one_per_family(senet.list_models(), others=False))
def test_feature_maps_are_the_networks_own(name):
    """The maps of ``features_only`` (the network's weights loaded) are those of ``forward_intermediates``, whose
    last result is ``forward_features``."""
    model = senet.create_model(name).eval()
    x = torch.randn(2, 3, model.min_size, model.min_size)
    features = senet.create_model(name, features_only=True).eval()
    senet.load_weights(features, model.state_dict())
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert same(features(x), maps)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)


def test_forward_intermediates_takes_timms_arguments():
    model = senet.create_model("se_resnet50").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert [m.shape[1] for m in maps] == [64, 256, 512, 1024, 2048] == model.feature_info.channels()
        assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
        assert model.feature_info.module_name() == ["stem.act1", "layer1", "layer2", "layer3", "layer4"]
        assert [m.shape[1] for m in model.forward_intermediates(x, 2, intermediates_only=True)] == [1024, 2048]
        assert [m.shape[1] for m in model.forward_intermediates(x, [-1, 1], intermediates_only=True)] == [256, 2048]
        last, (only,) = model.forward_intermediates(x, [2], stop_early=True)
        assert torch.equal(last, only) and only.shape[1] == 512  # stopped after layer2
        assert torch.equal(model.forward_intermediates(x, norm=True)[0], final)  # no norm outside the stages
    for bad in (6, [5], [-6], [0, 0], [], 0):
        with pytest.raises(ValueError, match="indices="):
            model.forward_intermediates(x, bad)
    with pytest.raises(ValueError, match="output_fmt='NHWC'"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 3, H, W\) with H, W >= 32"):
        model.forward_intermediates(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="pass features_only=True"):
        senet.create_model("se_resnet50", out_indices=(1, 2))


def test_a_feature_network_holds_only_what_its_maps_need(tmp_path):
    """out_indices=(1, 2) of SE-ResNet-50: layer3, layer4 and the classifier are removed, so that every parameter
    gets a gradient (DistributedDataParallel refuses unused ones); the keys are the network's own, so weights of
    the whole network load into it (the removed ones left out) and it saves and rebuilds from a senet file."""
    full = senet.create_model("se_resnet20").eval()
    net = senet.create_model("se_resnet20", features_only=True, out_indices=(1, 2))
    assert isinstance(net, FeatureNet) and net.removed == ("drop", "fc")
    small = senet.create_model("se_resnet50", features_only=True, out_indices=(1, 2))
    assert small.removed == ("layer3", "layer4", "drop", "fc")
    assert not any(k.startswith(("layer3.", "layer4.", "fc.")) for k in small.state_dict())
    sum(m.sum() for m in small(torch.randn(2, 3, 64, 64))).backward()
    assert all(p.grad is not None for p in small.parameters())
    senet.load_weights(net, full.state_dict())  # the file's fc is skipped, as the network's
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert same(net.eval()(x), full.forward_intermediates(x, (1, 2))[1])
    path = save_weights(tmp_path / "f.safetensors", net, net.model_config)
    again, meta = load_model(path)
    assert meta["options"] == {"features_only": True, "out_indices": [1, 2]} and isinstance(again, FeatureNet)
    with torch.no_grad():
        assert same(again.eval()(x), net(x))


@slow
def test_inception_v3_auxiliary_head_reads_the_mixed_6e_map():
    model = senet.create_model("inception_v3", aux_logits=True, drop_rate=0.0).train()
    assert model.feature_info.module_name(3) == "blocks.Mixed_6e"
    seen = []
    model.blocks.Mixed_6e.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 299, 299))
        torch.testing.assert_close(out.aux_logits, model.aux(seen[0]), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# torch.fx (torchvision's create_feature_extractor) and torch.compile on one model of each family.

FAMILY_MODELS = ["se_resnet50", "se_resnet20", "se_bn_inception", "se_inception_v3", "se_inception_resnet_v2",
                 "se_mobilenet", "se_shufflenet", "se_vgg16_bn"]  # fmt: skip


def _input(name: str) -> torch.Tensor:
    size = {"se_inception_v3": 299, "se_inception_resnet_v2": 75}.get(name, 64)
    return torch.randn(2, 3, size, size)


@pytest.mark.parametrize("name", [n if n in ("se_resnet20", "se_mobilenet") else pytest.param(n, marks=slow)
                                  for n in FAMILY_MODELS])  # fmt: skip
def test_create_feature_extractor_returns_the_feature_maps(name):
    """torch.fx traces the network (SE units included) and returns the maps ``feature_info`` names, equal to
    ``forward_intermediates``; the traced network still checks its input."""
    options = {"aux_logits": True} if name == "se_inception_v3" else {}  # traced in training mode too
    model = senet.create_model(name, **options).eval()
    extractor = create_feature_extractor(model, return_nodes=model.feature_info.module_name())
    x = _input(name)
    with torch.no_grad():
        got = list(extractor(x).values())
        expected = model.forward_intermediates(x, intermediates_only=True)
    assert same(got, expected)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="expects input of shape"):
        traced(torch.randn(2, 1, 64, 64))


@slow
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_torch_compile_captures_one_graph(name):
    """fullgraph=True fails on any graph break: the classifier in eval and training mode (with its backward) and the
    feature network compile whole. backend="eager" checks the capture without code generation (minutes on 2 cores)."""
    torch._dynamo.reset()
    model = senet.create_model(name).eval()
    x = _input(name)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True, backend="eager")(x), model(x), rtol=0, atol=0)
    torch.compile(model.train(), fullgraph=True, backend="eager")(x).sum().backward()
    features = senet.create_model(name, features_only=True, out_indices=(1, 2)).eval()
    with torch.no_grad():
        got = torch.compile(features, fullgraph=True, backend="eager")(x)
        assert same(got, features(x))
