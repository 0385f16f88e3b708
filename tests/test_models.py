"""Every registered model: forward and backward, shapes, input checks; the registry's errors."""

import os

import pytest
import torch
from conftest import one_per_family

import senet
from senet.models import get_entry, register_twins

ALL = senet.list_models()
# Large ImageNet models: build on the meta device for the shape checks (no arithmetic), but still run
# forward/backward on real tensors at the smallest input, which is cheap.


def small_input(model, batch=2):
    return torch.randn(batch, model.in_chans, model.min_size, model.min_size)


@pytest.mark.parametrize("name", one_per_family(ALL))
def test_forward_backward_every_parameter_gets_a_gradient(name):
    model = senet.create_model(name, num_classes=7, in_chans=1)
    x = small_input(model)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    feats = model.forward_features(x)
    assert feats.ndim == 4 and feats.shape[1] == model.num_features
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)


@pytest.mark.parametrize("name", one_per_family(ALL))
def test_bad_input_names_the_expected_shape_before_any_convolution(name):
    with torch.device("meta"):
        model = senet.create_model(name)
    calls = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_pre_hook(lambda *a: calls.append(1))
    c, s = model.in_chans, model.min_size
    bad = [(2, c + 1, s, s), (2, c, s - 1, s), (2, c, s, max(s - 1, 0)), (c, s, s), (1, 2, c, s, s)]
    for shape in bad:
        with pytest.raises(ValueError, match=rf"expects input of shape \(B, {c}, H, W\) with H, W >= {s}"):
            model(torch.empty(shape, device="meta"))
    assert not calls
    assert model(torch.empty(2, c, s, s, device="meta")).shape == (2, model.num_classes)


def test_twins_are_registered_in_pairs():
    for name in ALL:
        e = get_entry(name)
        twin = get_entry(e.twin)
        unit = dict(e.se_defaults).get("attention", "se")
        assert twin.has_se != e.has_se
        if unit != "se":  # a network published with another unit (eca_resnet50d): the SE model's plain twin
            assert name.startswith(f"{unit}_") and get_entry(twin.twin).build is e.build
            continue
        assert twin.twin == name
        if e.has_se:
            assert name.startswith("se_") or name == "senet154"
    assert get_entry("se_resnet50").twin == "resnet50"
    assert get_entry("eca_resnet50d").twin == "resnet50d" and get_entry("resnet50d").twin == "se_resnet50d"


def test_unknown_name_names_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'se_resnet05'; close matches: .*se_resnet50"):
        senet.create_model("se_resnet05")


def test_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="'reduction'"):
        senet.create_model("se_resnet50", reduction=8)
    with pytest.raises(TypeError, match="SE options belong to SE models"):
        senet.create_model("resnet50", r=8)


def test_bad_option_values():
    with pytest.raises(ValueError, match="layout='v2'"):
        senet.create_model("se_resnet50", layout="v2")
    with pytest.raises(ValueError, match="after_3x3"):
        senet.create_model("se_resnet18", se_position="after_3x3")
    with pytest.raises(ValueError, match=r"num_classes=-1 must be an int >= 0 \(0: no classifier"):
        senet.create_model("resnet20", num_classes=-1)
    with pytest.raises(ValueError, match="aux_logits=True needs classes to predict"):
        senet.create_model("se_inception_v3", num_classes=0, aux_logits=True)


def test_registering_a_name_twice_raises():
    build = lambda se, *, num_classes=1, in_chans=3: None  # noqa: E731
    with pytest.raises(ValueError, match="already registered"):
        register_twins("se_resnet50", "resnet50_again", build, family="x", summaries=("a", "b"))
    with pytest.raises(ValueError, match="needs a one-line summary"):
        register_twins("se_new_x", "new_x", build, family="x", summaries=("an SE network", " "))
    assert "se_new_x" not in senet.list_models()


def test_every_model_has_a_summary_and_a_docstring_that_hub_help_shows():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    hubconf = torch.hub._import_module("hubconf", os.path.join(repo, "hubconf.py"))
    for name in senet.list_models():
        entry = get_entry(name)
        assert entry.summary.strip() and entry.doc.startswith(entry.summary), name
        assert entry.summary in hubconf.__getattr__(name).__doc__
    assert "Table 2" in get_entry("se_resnet50").summary and "He et al." in get_entry("resnet50").summary


def test_a_builder_doc_describes_its_own_models():
    """The CIFAR ResNets and the ResNet-D models share no generic "a CIFAR ResNet, or a ResNet-D" text."""
    cifar, resnet_d = get_entry("resnet20").family_doc, get_entry("eca_resnet50d").family_doc
    assert "CIFAR" in cifar and "ResNet-D" not in cifar and "deep stem" not in cifar
    assert "ResNet-D" in resnet_d and "CIFAR" not in resnet_d and get_entry("se_resnet50d").family_doc == resnet_d


def test_module_sequence_is_public_and_ends_at_the_feature_maps():
    """`Classifier.module_sequence` (what senet.detection and FeatureNet walk) names every feature map's module."""
    model = senet.create_model("se_resnet20")
    paths = [path for path, _ in model.module_sequence()]
    assert paths[0] == "stem" and paths[-1] == model.feature_info[-1]["module"]
    assert all(info["module"] in paths for info in model.feature_info)


def test_list_models_pattern():
    assert senet.list_models("se_resnext*") == ["se_resnext101_32x4d", "se_resnext50_32x4d"]
    assert "resnet50" in senet.list_models(se=False) and "resnet50" not in senet.list_models(se=True)


@pytest.mark.parametrize("position", ["standard", "pre", "post", "identity", "after_3x3"])
def test_se_positions_place_the_unit_where_the_paper_does(position):
    with torch.device("meta"):  # shapes only (tests/test_fused.py computes each position's output)
        model = senet.create_model("se_resnet50", se_position=position)
        block = model.layer2[0]  # 256 -> 512 channels, width 128
        expected = {"standard": 512, "pre": 256, "post": 512, "identity": 512, "after_3x3": 128}[position]
        assert block.se.channels == expected
        assert model(torch.empty(2, 3, 64, 64)).shape == (2, 1000)


def test_se_in_chosen_stages_and_per_stage_ratio():
    with torch.device("meta"):
        model = senet.create_model("se_resnet50", se_stages=(3,), r=(2, 4, 8, 32))
    for i, stage in enumerate(model.stages(), 1):
        for blk in stage:
            assert (blk.se is not None) == (i == 3)
    assert model.layer3[0].se.reduced == 1024 // 8


def test_layouts_move_the_stride():
    with torch.device("meta"):
        orig = senet.create_model("se_resnet50")
        v15 = senet.create_model("se_resnet50", layout="v1.5")
        resnext = senet.create_model("se_resnext50_32x4d")
    assert orig.layer2[0].conv1.stride == (2, 2) and orig.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    # The released SE-ResNeXt models stride on the 3×3 in either layout.
    assert resnext.layer2[0].conv2.stride == (2, 2)


def test_seed_senet18_structure():
    model = senet.create_model("se_resnet18_cifar")
    block = model.layer2[0]
    assert type(block).__name__ == "PreActBasicBlock"
    assert isinstance(block.se.fc1, torch.nn.Conv2d)  # two 1×1 convolutions, as the seed writes it
    assert block.se.reduced == 128 // 16
    assert sum(p.numel() for p in model.parameters()) == 11_260_354
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_senet154_changes():
    with torch.device("meta"):
        model = senet.create_model("senet154")
    assert [type(m).__name__ for m in model.stem][:3] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert model.stem.conv3.out_channels == 128
    blk = model.layer2[0]
    assert blk.conv1.out_channels == blk.conv2.out_channels // 2 and blk.conv2.groups == 64
    assert blk.downsample[0].kernel_size == (3, 3) and model.layer1[0].downsample[0].kernel_size == (1, 1)
    assert model.drop.p == 0.2


def test_zero_init_last_makes_blocks_identity_on_the_branch():
    model = senet.create_model("se_resnet50", zero_init_last=True)
    assert all(blk.bn3.weight.abs().sum() == 0 for stage in model.stages() for blk in stage)


def test_channels_last_matches_contiguous():
    model = senet.create_model("se_resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model(x)
    out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [14, 7])
def test_pad_shortcut_is_subsample_and_pad_and_keeps_the_gradient_layout(size):
    from senet.models.resnet import PadShortcut

    shortcut = PadShortcut(16, 32, 2)
    x = torch.randn(4, 16, size, size).to(memory_format=torch.channels_last).requires_grad_()
    ref_x = x.detach().clone().requires_grad_()
    out = shortcut(x)
    ref = torch.nn.functional.pad(ref_x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 16))
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)  # as autograd passes it on (a leaf's .grad is restrided)
    assert torch.equal(grad, torch.autograd.grad(ref, ref_x, g)[0])
    # the branch's gradient of a channels_last block input is channels_last: the shortcut's must match it, or
    # autograd adds the two with mixed strides (several times slower)
    assert grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("name", "options"), [("se_resnet20", {}), ("se_resnet50", {"se_conv": True})])
def test_se_init_identity_starts_as_the_plain_twin(name, options):
    torch.manual_seed(0)
    se = senet.create_model(name, se_gate="sigmoid_x2", se_init="identity", **options).eval()
    plain = senet.create_model(get_entry(name).twin).eval()
    missing, unexpected = plain.load_state_dict(se.state_dict(), strict=False)
    assert not missing and unexpected and all(".se." in k for k in unexpected)  # the same weights, less the FCs
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(se(x), plain(x), rtol=0, atol=0)  # every gate exactly 1
    se.train()
    se(x).sum().backward()
    units = [m for m in se.modules() if isinstance(m, senet.SqueezeExcite)]
    assert all(m.fc2.bias.grad.abs().sum() > 0 for m in units)  # and training moves the gates from the first step
    assert any(m.fc2.weight.grad.abs().sum() > 0 for m in units)  # (a one-unit bottleneck's ReLU may be off here)


def test_se_init_identity_needs_a_gate_that_reaches_one():
    with pytest.raises(ValueError, match="se_gate='sigmoid_x2'"):
        senet.create_model("se_resnet20", se_init="identity")
    with pytest.raises(ValueError, match="se_init='warm'"):
        senet.create_model("se_resnet20", se_init="warm")
    assert "se_init" not in get_entry("resnet20").shared_options({"se_init": "identity"})


@pytest.mark.parametrize("name", ["se_resnet20", "se_mobilenet"])
def test_convolutions_start_from_he_normal_fan_out_and_build_on_meta_without_values(name):
    """Every convolution starts from He et al.'s normal draw, std √(2 / fan-out) (the ResNets' own loop and
    `init_convs` of the other families); on the meta device, where no values exist, the same modules are built."""
    model = senet.create_model(name)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 4096]
    assert convs
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1), conv
    with torch.device("meta"):
        meta = senet.create_model(name)
    assert [(k, v.shape) for k, v in meta.state_dict().items()] == [(k, v.shape) for k, v in model.state_dict().items()]
