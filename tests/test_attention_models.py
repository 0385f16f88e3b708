"""The attention units in networks: ``create_model(..., attention=...)`` on every family and in every position it
allows (forward and backward), the options' errors, the identity start, complexity counts against torch's flop
counter, ONNX export of one network per unit, timm's ECA-ResNet-D weights, and the attention study's variants."""

import onnxruntime as ort
import pytest
import timm
import torch
from _interop import trained_like
from conftest import fast_first, slow
from torch.utils.flop_counter import FlopCounterMode

import senet
from senet.analysis.ablate import study_variants
from senet.analysis.cost import ModelSpec, markdown_table, measure_cost
from senet.analysis.presets import PRESETS, preset_options, stage_sizes
from senet.cli import main
from senet.export import export
from senet.layers import ATTENTION_UNITS, SEConfig
from senet.layers.attention import AttentionUnit, GlobalContext
from senet.models import get_entry
from senet.models.inception import InceptionModule, InceptionResNetUnit, _branch
from senet.models.mobile import DepthwiseSeparable, ShuffleUnit
from senet.models.resnet import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, ResNet, ResNetSpec

UNITS = [u for u in ATTENTION_UNITS if u != "se"]
# Options that let a unit sit anywhere (no map size fixed per stage): GE-θ⁺ at extent 2 has every GE layer.
ANYWHERE = {"ge": {"variant": "theta_plus", "extent": 2}}
# Each family's blocks in every position they allow: registered models where they are small, and small networks of
# the other blocks (those of SE-ResNet-50, SE-PreAct-ResNet-164, SE-WRN-16-8, SE-BN-Inception, Inception-ResNet-v2).
_TINY = dict(strides=(1, 2), stem="cifar", stem_width=16)
TINY = {
    "bottleneck": ResNetSpec("tiny bottleneck", Bottleneck, (1, 1), (64, 128), shortcut="conv1x1", **_TINY),
    "preact_bottleneck": ResNetSpec("tiny pre-act", PreActBottleneck, (1, 1), (64, 128), shortcut="preact", **_TINY),
    "preact_basic": ResNetSpec("tiny pre-act basic", PreActBasicBlock, (1, 1), (16, 32), shortcut="preact", **_TINY),
}
FAMILIES = {  # model → (input side, the positions its blocks allow)
    "se_resnet20": (16, BasicBlock.positions),
    "bottleneck": (16, Bottleneck.positions),
    "preact_bottleneck": (16, PreActBottleneck.positions),
    "preact_basic": (16, PreActBasicBlock.positions),
    "se_mobilenet": (32, DepthwiseSeparable.positions),
    "se_shufflenet": (32, ShuffleUnit.positions),
    "se_vgg16_bn": (32, ("standard",)),
    "inception": (16, ("standard",)),
    "inception_resnet": (16, InceptionResNetUnit.positions),
}
FAST = {("se_resnet20", "standard")}  # one case in the fast tier; the rest are @slow


def _inception(se: SEConfig, residual: bool) -> torch.nn.Module:
    """Two Inception (BN-Inception's) or Inception-ResNet units on 32 channels, as those networks build theirs."""
    branches = [[(16, 1)], [(8, 1), (16, 3)]]
    if residual:
        units = [InceptionResNetUnit(32, branches, scale=0.2, activate=last, se=se, stage=1) for last in (1, 0)]
    else:
        units = [InceptionModule([_branch(32, b)[0] for b in branches], 32, se=se, stage=1) for _ in range(2)]
    head = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 5)]
    return torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), *units, *head)


def _network(model: str, position: str, unit: str) -> torch.nn.Module:
    options = dict(se_position=position, attention=unit, attention_options=ANYWHERE.get(unit, {}))
    if model in TINY:
        return ResNet(TINY[model], SEConfig.from_options(**options), num_classes=5, in_chans=1)
    if model.startswith("inception"):
        return _inception(SEConfig.from_options(**options), residual=model == "inception_resnet")
    small = {"se_mobilenet": {"width_mult": 0.5}, "se_shufflenet": {"groups": 1}}.get(model, {})  # the same blocks
    return senet.create_model(model, num_classes=5, in_chans=1, **small, **options)


def _cases():
    for model, (_, positions) in FAMILIES.items():
        for position in positions:
            marks = () if (model, position) in FAST else slow
            yield pytest.param(model, position, marks=marks, id=f"{model}-{position}")


@pytest.mark.parametrize(("model", "position"), list(_cases()))
def test_every_unit_in_every_position_forward_and_backward(model, position):
    side = FAMILIES[model][0]
    for unit in UNITS:
        net = _network(model, position, unit)
        units = [m for m in net.modules() if isinstance(m, AttentionUnit)]
        assert units and all(type(m) is ATTENTION_UNITS[unit] for m in units)
        out = net(torch.randn(2, 1, side, side))
        assert out.shape == (2, 5) and torch.isfinite(out).all(), unit
        out.logsumexp(1).mean().backward()
        quiet = [n for n, p in net.named_parameters() if p.grad is None]
        assert not quiet, f"{unit}: no gradient for {quiet[:4]}"


def test_the_unit_sits_where_se_would_with_the_width_of_that_position():
    for position, width in {"standard": 256, "pre": 64, "after_3x3": 64}.items():
        with torch.device("meta"):
            net = senet.create_model("se_resnet50", attention="cbam", se_position=position)
        assert net.layer1[0].se.channels == width
    with torch.device("meta"):
        net = senet.create_model("se_resnet50", attention="eca", se_stages=[2, 4])
    assert net.layer1[0].se is None and net.layer2[0].se.k_size == 5 and net.layer4[0].se.k_size == 7


def test_a_model_default_for_the_se_unit_stays_with_the_se_unit():
    """se_resnet18_cifar builds its SE units as 1×1 convolutions by default; another unit is built without that
    default, and only a user's own se_conv with another unit is refused."""
    with torch.device("meta"):
        assert senet.create_model("se_resnet18_cifar").layer1[0].se.conv
        net = senet.create_model("se_resnet18_cifar", attention="eca")
        assert sum(isinstance(m, ATTENTION_UNITS["eca"]) for m in net.modules()) == 8
        with pytest.raises(ValueError, match="se_conv=True applies to the SE unit only"):
            senet.create_model("se_resnet18_cifar", attention="eca", se_conv=True)


def _unit_hosts() -> list[str]:
    """The first SE model of each family and every model with SE defaults of its own (the ECA-ResNet-Ds, the CIFAR
    ResNet-18's convolutional SE): the models whose construction differs in what a unit swap touches."""
    first = {}
    for n in senet.list_models(se=True, sort=False):
        first.setdefault(senet.get_entry(n).family, n)
    return [n for n in senet.list_models(se=True, sort=False) if n in first.values() or senet.get_entry(n).se_defaults]


@slow  # 2–6 s a model on 2 busy cores, even on the meta device
@pytest.mark.parametrize("model", _unit_hosts())
def test_every_unit_builds_in_every_family_and_where_se_has_defaults(model):
    """Every family's first SE model and every model with SE defaults of its own (the ECA-ResNet-Ds too) with every
    unit in SE's place, on the meta device."""
    for unit in UNITS:
        with torch.device("meta"):
            net = senet.create_model(model, attention=unit, attention_options=ANYWHERE.get(unit, {}))
        kinds = {type(m) for m in net.modules() if isinstance(m, AttentionUnit)}
        assert kinds == {ATTENTION_UNITS[unit]}, (model, unit)


def test_per_stage_options_and_the_released_eca_kernels():
    with torch.device("meta"):
        net = senet.create_model("se_resnet50", attention="eca", attention_options={"k_size": [3, 5, 5, 7]})
    assert [s[0].se.k_size for s in net.stages()] == [3, 5, 5, 7]
    assert senet.profile(net).se_params == 80  # ECA-Net's "+80 parameters" for ResNet-50
    with pytest.raises(ValueError, match=r"k_size=\[3, 5, 7\] gives 3 values for a network of 4 stages"):
        senet.create_model("se_resnet50", attention="eca", attention_options={"k_size": [3, 5, 7]})


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"attention": "ecaa"}, ValueError, "unknown attention unit 'ecaa'; close matches: eca"),
        ({"attention": "eca", "attention_options": {"k": 3}}, TypeError, "has no option 'k'.*k_size, gamma, b"),
        ({"attention": "eca", "r": 8}, ValueError, "r=8 does not apply to attention='eca'"),
        ({"attention": "ge", "r": 8}, ValueError, "r=8 does not apply to attention='ge'"),
        ({"attention": "cbam", "se_gate": "tanh"}, ValueError, "se_gate='tanh' applies to the SE unit only"),
        ({"attention_options": {"k_size": 3}}, ValueError, "attention_options=.* are for the other units"),
        ({"attention": "cbam", "se_init": "identity"}, ValueError, "CBAM cannot start as the identity: its sigmoid"),
        ({"attention": "gc", "attention_options": {"fusion": "scale"}, "se_init": "identity"}, ValueError,
         "fusion='scale' cannot start as the identity"),
        ({"attention": "ge", "attention_options": {"variant": "theta"}}, ValueError, "needs feat_size"),
    ],
)  # fmt: skip
def test_bad_attention_options_are_named(options, error, match):
    with pytest.raises(error, match=match):
        senet.create_model("se_resnet20", **options)


def test_plain_models_refuse_attention_and_ge_theta_plus_takes_r():
    with pytest.raises(TypeError, match="SE options belong to SE models"):
        senet.create_model("resnet20", attention="eca")
    net = senet.create_model(
        "se_resnet20", attention="ge", r=4, attention_options={"variant": "theta_plus", "extent": 2}
    )
    assert net.layer3[0].se.mlp.fc1.out_channels == 16


def test_gc_starts_as_the_plain_twin():
    se = senet.create_model("se_resnet20", attention="gc", se_init="identity").eval()
    plain = senet.create_model("resnet20").eval()
    missing, unexpected = plain.load_state_dict(se.state_dict(), strict=False)
    assert not missing and all(".se." in k for k in unexpected)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(se(x), plain(x), rtol=0, atol=0)


def test_units_start_as_their_authors_initialise_them_not_as_the_family_does():
    net = senet.create_model("se_resnet50", attention="gc")
    unit = net.layer4[0].se
    # the family's fan-out rule would give W_k (2048 → 1) a standard deviation of √2; the authors' fan-in √(2/C)
    assert unit.conv_attn.weight.std() < 3 * (2 / 2048) ** 0.5
    assert unit.mlp_add.fc2.weight.abs().sum() == 0
    srm = senet.create_model("se_resnet20", attention="srm").layer1[0].se
    assert srm.cfc.abs().sum() == 0


def test_config_round_trips_through_the_model_config():
    options = {"attention": "ge", "attention_options": {"variant": "theta_plus", "feat_size": [32, 16, 8]}}
    net = senet.create_model("se_resnet20", **options)
    assert net.model_config["options"] == options
    assert SEConfig.from_options(**options).to_dict()["attention_options"] == {"variant": "theta_plus",
                                                                             "feat_size": (32, 16, 8)}  # fmt: skip
    again = senet.create_model("se_resnet20", **net.model_config["options"])
    assert again.layer2[0].se.feat_size == (16, 16)


# -- complexity ------------------------------------------------------------------------------------------------------

# Passes over the map each unit makes besides its layers and matrix products, per element (docs/attention.md):
# written out here from the units' formulas, independently of AttentionUnit.map_macs.
PASSES = {"eca": 2, "cbam": 6, "ge": 2, "gc": 1, "srm": 3, "coord": 4, "fca": 1, "ese": 2, "simam": 6, "triplet": 10}


@pytest.mark.parametrize("unit", UNITS)
def test_profile_counts_layers_and_products_as_torch_does_plus_the_passes(unit):
    c, h, w = 32, 7, 9
    options = {"dct_size": (h, w)} if unit == "fca" else {}
    module = senet.layers.make_attention(unit, c, 4 if unit != "coord" else 16, **options).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.randn(1, c, h, w))
    layers = counter.get_total_flops() // 2
    row = senet.profile(module, (c, h, w)).layers[-1]
    extra = 2 * c if unit == "srm" else 0  # SRM's channel-wise FC is an elementwise product, not a layer
    assert row.unit and row.macs == layers + PASSES[unit] * c * h * w + extra
    assert row.params == sum(p.numel() for p in module.parameters())


def test_resnet50_figures_of_the_papers():
    with torch.device("meta"):  # counts only
        nets = {p: senet.create_model("se_resnet50", **preset_options("se_resnet50", p, (3, 224, 224)))
                for p in ("eca", "srm", "simam", "triplet")}  # fmt: skip
        plain = senet.profile(senet.create_model("resnet50"))
    for p, net in nets.items():  # a parameter-free unit's count alone cannot tell it from a missing one
        assert sum(type(m) is ATTENTION_UNITS[p] for m in net.modules()) == 16, p  # one per bottleneck
    counts = {p: senet.profile(net) for p, net in nets.items()}
    assert counts["simam"].macs > plain.macs and counts["triplet"].macs > plain.macs  # their passes are counted
    assert counts["eca"].params - plain.params == 86  # k = ψ(C) = 5, 5, 5, 7; the released 3, 5, 5, 7: 80
    assert counts["srm"].params == 25_617_448 and counts["simam"].params == plain.params
    assert round(counts["triplet"].params / 1e6, 2) == 25.56  # the triplet attention README's


def test_stage_sizes_and_presets():
    assert stage_sizes("se_resnet50", (3, 224, 224)) == {1: (56, 56), 2: (28, 28), 3: (14, 14), 4: (7, 7)}
    assert stage_sizes("se_resnet20", (1, 28, 28)) == {1: (28, 28), 2: (14, 14), 3: (7, 7)}
    with pytest.raises(ValueError, match="units of a stage see maps of several sizes"):
        stage_sizes("se_resnet50", (3, 224, 224), position="pre")
    assert preset_options("se_resnet50", "ge_theta_plus", (3, 224, 224)) == {
        "attention": "ge", "attention_options": {"variant": "theta_plus", "feat_size": [56, 28, 14, 7]}}  # fmt: skip
    assert preset_options("se_resnet20", "fca", (1, 16, 16))["attention_options"] == {"dct_size": [16, 8, 7]}
    assert preset_options("se_resnet20", "coord", (1, 16, 16)) == {"attention": "coord", "r": 32}
    assert preset_options("se_resnet20", "se", (1, 16, 16)) == {}
    for p in PRESETS:
        with torch.device("meta"):
            senet.create_model("se_resnet50", **preset_options("se_resnet50", p, (3, 224, 224)))


# -- export ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [pytest.param(u, marks=() if u == "cbam" else slow) for u in UNITS])
def test_onnx_export_of_a_network_per_unit_in_onnxruntime(unit, tmp_path):
    options = preset_options("se_resnet20", {"ge": "ge_theta_plus"}.get(unit, unit), (1, 16, 16))
    model = trained_like(senet.create_model("se_resnet20", num_classes=10, in_chans=1, **options))
    path = export(model, tmp_path / f"{unit}.onnx", input_size=16, mean=(0.5,), std=(0.25,))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 16, 16)  # exported at batch 2
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    with torch.no_grad():
        expected = model(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


# -- timm's ECA-ResNet-D ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, pytest.param(224, marks=slow)])
@pytest.mark.parametrize(
    ("ours", "theirs"), fast_first([("eca_resnet50d", "ecaresnet50d"), ("resnet50d", "resnet50d")])
)
def test_timm_resnet_d_weights_compute_timms_function(ours, theirs, size):
    reference = trained_like(timm.create_model(theirs, pretrained=False))
    model = senet.load_weights(senet.create_model(ours), reference.state_dict()).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
    assert get_entry(ours).twin == ("resnet50d" if ours.startswith("eca") else "se_resnet50d")


@pytest.mark.parametrize(
    ("theirs", "match"),
    [
        ("ecaresnet50t", "tiered deep stem"),
        ("ecaresnetlight", "average-pool shortcuts and a 7×7 stem"),
        ("gcresnet50t", "timm ByobNet"),
        ("eca_resnet33ts", "timm ByobNet"),
    ],
)
def test_timm_attention_models_of_other_networks_are_refused(theirs, match):
    with torch.device("meta"):
        state = timm.create_model(theirs, pretrained=False).state_dict()
        model = senet.create_model("eca_resnet50d")
    with pytest.raises(ValueError, match=match):
        senet.load_weights(model, state)


def test_eca_resnet_d_weights_are_listed_with_what_they_need():
    assert senet.list_weights("eca_*") == ["eca_resnet101d.timm_miil_in1k", "eca_resnet50d.timm_miil_in1k"][::-1]
    spec = senet.weights.get_weights("eca_resnet50d")
    assert spec.layout == "timm_resnet_d" and spec.options == {} and spec.hash_prefix == "93c81e3b"


# -- the study and the cost command ---------------------------------------------------------------------------------


def test_attention_study_variants():
    variants = study_variants("attention", "se_resnet20", input_size=(1, 28, 28))
    assert [v.label for v in variants][:3] == ["plain (resnet20)", "SE", "ECA"]
    assert len(variants) == len(PRESETS) + 1
    ge = next(v for v in variants if v.label == "GE-θ⁺")
    assert ge.options["attention_options"]["feat_size"] == [28, 14, 7]
    assert ge.run_name(1) == "se_resnet20-attention=ge-feat_size=28,14,7-variant=theta_plus-s1"
    assert next(v for v in variants if v.label == "SE").run_name(0) == "se_resnet20-s0"  # shared with other studies
    with pytest.raises(ValueError, match="unknown attention unit 'eca2'"):
        study_variants("attention", "se_resnet20", ["eca2"])


def test_attention_study_pairs_each_paper_figure_with_its_own_baseline():
    """Each unit's figure beside the plain ResNet-50 of the same source's table (CBAM's and GCNet's own, not ECA
    T3's 24.80), marked where not re-read in the primary source; a unit without a figure says why."""
    notes = {v.label: (v.paper_err, v.paper_note) for v in study_variants("attention", "se_resnet20", baseline=False)}
    assert notes["CBAM"] == (22.66, "CBAM (Woo et al., ECCV 2018) Table 4, its ResNet-50 24.56, unverified")
    assert notes["GC"] == (22.30, "GCNet (Cao et al., arXiv 1904.11492), ImageNet, its ResNet-50 23.12, unverified")
    assert notes["ECA"] == (22.52, "ECA-Net (Wang et al., CVPR 2020) Table 3, its ResNet-50 24.80")
    ge = "GE (Hu et al., NeurIPS 2018), ResNet-50 vs SE, global extent, its ResNet-50 23.30, unverified"
    assert [notes[g] for g in ("GE-θ⁻", "GE-θ", "GE-θ⁺")] == [(22.14, ge), (22.00, ge), (21.88, ge)]
    assert notes["SRM"] == (22.87, "SRM (Lee et al., ICCV 2019), ImageNet, unverified")
    assert notes["coordinate attention"] == (
        None,
        "no ResNet-50 ImageNet figure: its paper reports mobile networks only",
    )
    assert notes["eSE"] == (None, "no ResNet-50 ImageNet figure: its paper (CenterMask) reports VoVNetV2 only")
    for p in PRESETS.values():
        assert (p.paper is None) == bool(p.no_figure), p.label
        if p.paper and p.paper.baseline_err == 24.80:  # ECA's own ResNet-50, no one else's
            assert p.label == "ECA", p.label
    assert notes["FcaNet"] == (21.48, "FcaNet README, FcaNet-50, unverified")  # the README lists no ResNet-50


def test_global_ge_in_a_network_at_another_input_size_says_how_to_build_it():
    model = senet.create_model("se_resnet20", in_chans=1, **preset_options("se_resnet20", "ge_theta", (1, 28, 28)))
    with pytest.raises(ValueError, match=r"stage 1 were built for \(28, 28\) maps .*got \(32, 32\).*preset_options"):
        model.eval()(torch.randn(1, 1, 32, 32))


def test_cost_of_variants_of_one_model_in_one_table():
    specs = ["se_resnet20", ModelSpec("se_resnet20", {"attention": "eca"}, "ECA")]
    rows, env = measure_cost(specs, batch_sizes=(1,), train_batch=2, input_size=(1, 8, 8), repeats=1, train=False)
    assert [(r.model, r.label) for r in rows] == [("se_resnet20", ""), ("resnet20", ""), ("se_resnet20", "ECA")]
    table = markdown_table(rows, env)
    assert "**SE / plain**" in table and "| `se_resnet20` ECA |" in table and "**ECA / plain**" in table
    assert table.count("| `resnet20` |") == 1
    with pytest.raises(ValueError, match="two variants are named 'se_resnet20 ECA'"):
        measure_cost([specs[1], ModelSpec("se_resnet20", {"attention": "cbam"}, "ECA")], input_size=(1, 8, 8))


@slow  # a ResNet-50-D pair, profiled and timed
def test_cost_names_the_unit_of_a_published_attention_model_and_counts_exactly(capsys):
    """eca_resnet50d's ratio row is ECA's, not SE's; the parameters are exact counts (ECA adds dozens); a unit
    swapped into a model that has another already is refused, naming the SE model to use."""
    rows, env = measure_cost(["eca_resnet50d"], batch_sizes=(1,), input_size=(3, 32, 32), repeats=1, train=False)
    table = markdown_table(rows, env)
    assert "**ECA / plain**" in table and "SE / plain" not in table
    assert f"| `eca_resnet50d` | {rows[0].params:,} |" in table and f"| `resnet50d` | {rows[1].params:,} |" in table
    args = ["cost", "eca_resnet50d", "--attention", "cbam", "--input-size", "32", "--repeats", "1", "--no-train"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "eca_resnet50d has ECA units in SE's place already" in err and "se_resnet50d --attention cbam" in err


def test_gc_identity_start_is_the_only_one():
    assert GlobalContext.identity_problem({}) is None
    refused = [u for u in UNITS if ATTENTION_UNITS[u].identity_problem({}) is not None]
    assert "gc" not in refused and len(refused) == len(UNITS) - 1


def test_timm_resnet_d_weights_load_into_any_model_with_their_unit_and_only_there():
    with torch.device("meta"):
        state = timm.create_model("ecaresnet50d", pretrained=False).state_dict()
        cbam = timm.create_model("resnet50", block_args={"attn_layer": "cbam"}).state_dict()
        assert senet.weights.model_options("se_resnet50d", "auto", state) == {"attention": "eca"}
        senet.load_weights(senet.create_model("se_resnet50d", attention="eca"), state)  # the same network
        call = r"create_model\('se_resnet50d', attention='eca'\)"
        with pytest.raises(ValueError, match=rf"attention='eca'.*build it with {call}"):
            senet.load_weights(senet.create_model("se_resnet50d"), state)
        with pytest.raises(ValueError, match=r"attention unit other than SE and ECA.*convert_timm_unit"):
            senet.load_weights(senet.create_model("se_resnet50", attention="cbam"), cbam)
