"""The Inception, VGG and MobileNet layouts (`senet.weights.layouts`) against the reference code itself: torchvision,
timm and Cadene's pretrainedmodels, built offline with random weights, converted by `senet.load_weights` with the
layout recognised from the names. Outputs compared in float64; each layout recognised by its own detector only; a
missing, extra or misshapen key named once; a model that would compute another function refused, over every layout
and every registered model."""

import pytest
import timm
import torch
import torchvision
from _interop import trained_like
from conftest import slow

import senet
import senet.weights as W
from senet.cli import main
from senet.factory import load_model
from senet.weights import ConversionError, load_weights

try:  # Cadene's package (pip install pretrainedmodels six: it imports six without declaring it)
    from pretrainedmodels.models.bninception import BNInception
    from pretrainedmodels.models.inceptionresnetv2 import InceptionResNetV2
except ImportError:
    BNInception = InceptionResNetV2 = None
needs_pretrainedmodels = pytest.mark.skipif(BNInception is None, reason="needs Cadene's pretrainedmodels and six")


def _bgr(x):
    return x.flip(1)  # Caffe's models read BGR; senet's conversion reorders conv1 to read RGB


# source: (reference builder, input side, layout, senet model, what the reference reads of senet's input). Sides:
# Inception-v3 and Inception-ResNet-v2 need 75 px (299 with the auxiliary head, by senet's min_size; Cadene's
# Inception-ResNet-v2 averages a fixed 8×8 window, so 299 px), VGG 32; Cadene's BN-Inception averages a fixed 7×7
# window (224 px). VGG at 256 px: timm's head slides fc6 over the 8×8 map, torchvision's pools it to 7×7 first.
SOURCES = {
    "tv_inception_v3": (lambda: torchvision.models.inception_v3(init_weights=False), 299, "inception_v3",
                        "inception_v3", None),
    "timm_inception_v3": (lambda: timm.create_model("inception_v3"), 75, "inception_v3", "inception_v3", None),
    "timm_inception_resnet_v2": (lambda: timm.create_model("inception_resnet_v2"), 75, "inception_resnet_v2",
                                 "inception_resnet_v2", None),
    "cadene_inceptionresnetv2": (lambda: InceptionResNetV2(num_classes=1000), 299, "inception_resnet_v2",
                                 "inception_resnet_v2", None),
    "tv_vgg16_bn": (torchvision.models.vgg16_bn, 256, "torchvision_vgg", "vgg16_bn", None),
    "timm_vgg16_bn": (lambda: timm.create_model("vgg16_bn"), 256, "timm_vgg", "vgg16_bn", None),
    "cadene_bninception": (lambda: BNInception(num_classes=1000), 224, "cadene_bninception", "bn_inception", _bgr),
    "timm_mobilenetv1_100": (lambda: timm.create_model("mobilenetv1_100"), 64, "timm_mobilenetv1", "mobilenet", None),
}  # fmt: skip
FAST = {"cadene_bninception"}  # the rest take 5-40 s each on 2 cores (float64 depthwise convolutions are slow)
SOURCE_PARAMS = [
    pytest.param(s, marks=([needs_pretrainedmodels] if s.startswith("cadene") else []) + ([] if s in FAST else [slow]))
    for s in SOURCES
]
# Weights of the ResNet layouts and senet's own state dicts of the families, which no family detector may claim.
OTHERS = {
    "caffe": lambda: timm.create_model("legacy_seresnet50"),
    "legacy18": lambda: timm.create_model("legacy_seresnet18"),
    "timm": lambda: timm.create_model("seresnet50"),
    "torchvision": torchvision.models.resnet50,
    "timm_eca_light": lambda: timm.create_model("ecaresnetlight"),  # detected as timm, refused by its rule
    "timm_resnet50d": lambda: timm.create_model("resnet50d"),
    "timm_ecaresnet50d": lambda: timm.create_model("ecaresnet50d"),
    "timm_gcresnet50t": lambda: timm.create_model("gcresnet50t"),
    **{f"senet_{name}": (lambda name=name: senet.create_model(name)) for name in
       ("se_resnet50", "eca_resnet50d", "bn_inception", "inception_v3", "inception_resnet_v2", "vgg16_bn", "mobilenet",
        "shufflenet")},
}  # fmt: skip
OTHER_LAYOUT = {"caffe": "caffe", "legacy18": "caffe", "timm": "timm", "torchvision": "torchvision",
                "timm_eca_light": "timm", "timm_resnet50d": "timm_resnet_d", "timm_ecaresnet50d": "timm_resnet_d",
                "timm_gcresnet50t": "timm_byobnet"}  # fmt: skip


def _random_like_trained(ref: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """`trained_like` with BN statistics from ``x``, then every bias moved: a convolution's bias before a BN whose
    mean was measured with it cancels out, so a dropped or misplaced one would not show otherwise."""
    trained_like(ref, x)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.add_(torch.randn_like(m.bias), alpha=0.1)
    return ref.eval()


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """max |got - expected| relative to the output's scale (max |expected|, at least 1)."""
    return (got - expected).abs().max().item() / max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("source", SOURCE_PARAMS)
def test_converted_model_computes_what_the_reference_computes(source):
    """Eval mode, random weights and inputs, float64 so that the comparison measures the function rather than float32
    summation order: max |diff| ≤ 1e-10 of the output's scale (every reference measured by
    benchmarks/parity.py)."""
    build, size, layout, name, feed = SOURCES[source]
    side = 64 if layout.endswith("vgg") else size  # BN statistics from a batch: VGG's need no 256 px
    ref = _random_like_trained(build(), torch.randn(3, 3, side, side)).double()
    state = ref.state_dict()  # in float64, so that folding a bias into a BN rounds in float64 (below 1e-15)
    assert W.detect_layout(state) == layout
    options = W.model_options(name, layout, state)
    model = load_weights(senet.create_model(name, **options).double(), state).eval()  # layout="auto"
    x = torch.rand(2, 3, size, size, dtype=torch.float64) * 4 - 2  # wide enough for ReLU6 to clip
    with torch.no_grad():
        expected, got = ref(feed(x) if feed else x), model(x)
        assert expected.std(0).mean() > 1e-3 * expected.abs().max()  # the inputs give different outputs
        assert relative_error(got, expected) <= 1e-10
        if options.get("aux_logits"):  # the auxiliary head, on a Mixed_6e-sized map (it runs in training only)
            features = torch.randn(2, 768, 17, 17, dtype=torch.float64).relu()
            assert relative_error(model.aux(features), ref.AuxLogits(features)) <= 1e-10
    assert model.weights_meta["layout"] == layout and len(model.weights_meta["mean"]) == 3


@slow
def test_a_misplaced_tensor_shows_in_the_outputs():
    """The comparison above can fail: two same-shaped tensors swapped in the file change the output by far more than
    the tolerance (the 1×7 convolutions of two branches of Mixed_6b)."""
    ref = _random_like_trained(timm.create_model("inception_v3"), torch.randn(4, 3, 75, 75))
    state = dict(ref.state_dict())
    a, b = "Mixed_6b.branch7x7_2.conv.weight", "Mixed_6b.branch7x7dbl_3.conv.weight"
    assert state[a].shape == state[b].shape
    state[a], state[b] = state[b], state[a]
    model = load_weights(senet.create_model("inception_v3"), state).eval()
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        assert relative_error(model(x), ref(x)) > 1e-3


@pytest.fixture(scope="module")
def meta_states():
    """State dicts of every source and of the other layouts, built on the meta device (names and shapes only)."""
    builders = {s: b for s, (b, *_) in SOURCES.items()} | OTHERS
    states = {}
    for source, build in builders.items():
        if source.startswith("cadene") and BNInception is None:
            continue  # the tests that need it are skipped
        with torch.device("meta"):
            states[source] = build().state_dict()
    return states


def test_each_layout_is_recognised_by_its_own_detector_only(meta_states):
    expected = {s: layout for s, (_, _, layout, _, _) in SOURCES.items()} | OTHER_LAYOUT
    for source, state in meta_states.items():
        claims = [layout.name for layout in W.layouts.LAYOUT_TABLE if layout.looks_like(list(state))]
        assert claims == [expected.get(source, "senet")], source
        assert W.detect_layout(state) == expected.get(source, "senet")
    assert {expected[s] for s in meta_states if s in expected} | {"senet"} == set(W.LAYOUTS) or BNInception is None
    wrapped = {f"module.{k}": v for k, v in meta_states["tv_vgg16_bn"].items()}  # DataParallel's prefix
    assert W.detect_layout(wrapped) == "torchvision_vgg"


@pytest.mark.parametrize("source", [pytest.param(s, marks=needs_pretrainedmodels) if s.startswith("cadene") else s
                                    for s in SOURCES])  # fmt: skip
def test_a_missing_extra_or_misshapen_key_is_named_once(source, meta_states):
    state = meta_states[source]
    spec = W.get_layout(SOURCES[source][2])
    name = SOURCES[source][3]
    with torch.device("meta"):
        model = senet.create_model(name, **W.model_options(name, spec.name, state))
    weights = [k for k in state if k.endswith("weight")]
    victim = weights[len(weights) // 2]
    theirs = spec.rename(victim)
    errors = {
        "missing": {k: v for k, v in state.items() if k != victim},
        "unexpected": {**state, "extra_layer.weight": torch.zeros(3)},
        "mismatched": {**state, victim: torch.zeros(state[victim].shape[0] + 1, *state[victim].shape[1:])},
    }
    for kind, broken in errors.items():
        with pytest.raises(ConversionError) as info:
            load_weights(model, broken)
        named = getattr(info.value, kind)
        assert len(named) == 1 and sum(len(getattr(info.value, k)) for k in errors) == 1, (kind, info.value)
        key = {"missing": theirs, "unexpected": "extra_layer.weight", "mismatched": theirs}[kind]
        assert key in named[0] and key in str(info.value)


# ---------------------------------------------------------------------------------------------------------------------
# Options that reproduce the reference's function, and refusals where the model would compute another one.


def test_timm_mobilenetv1_loads_only_into_the_relu6_mobilenet():
    """timm's mobilenetv1_100 applies ReLU6; senet's mobilenet ReLU unless act="relu6". The state dicts cannot tell
    the activation, so the layout asks for it; the default model is refused rather than loaded."""
    ref = _random_like_trained(timm.create_model("mobilenetv1_100"), torch.randn(4, 3, 64, 64))
    with pytest.raises(ValueError, match=r"act='relu6' \(ReLU6 after every BN\), but this mobilenet has act='relu'.*"
                                         r"create_model\('mobilenet', act='relu6'\)"):  # fmt: skip
        load_weights(senet.create_model("mobilenet"), ref.state_dict())
    relu = senet.create_model("mobilenet", act="relu6").eval()
    load_weights(relu, ref.state_dict())
    x = torch.randn(2, 3, 64, 64) * 4
    with torch.no_grad():
        relu.stem.act = torch.nn.ReLU()  # what the default model would compute with these weights
        assert relative_error(relu(x), ref(x)) > 1e-2
    with pytest.raises(ValueError, match="act='gelu' is not one of 'relu', 'relu6'"):
        senet.create_model("mobilenet", act="gelu")


def test_senet_convert_builds_the_layouts_model_and_records_its_input(tmp_path, capsys):
    ref = _random_like_trained(timm.create_model("mobilenetv1_100"), torch.randn(2, 3, 64, 64))
    src, out = tmp_path / "mobilenetv1_100.pth", tmp_path / "m.safetensors"
    torch.save(ref.state_dict(), src)
    assert main(["convert", str(src), "--out", str(out)]) == 0  # no --model: the layout names its model
    assert f"(timm_mobilenetv1 layout) -> {out}: mobilenet, act='relu6', " in capsys.readouterr().out
    model, meta = load_model(out)
    assert meta["name"] == "mobilenet" and meta["options"] == {"act": "relu6"}
    assert meta["mean"] == [0.5] * 3 and meta["std"] == [0.5] * 3 and meta["source_layout"] == "timm_mobilenetv1"
    x = torch.randn(2, 3, 64, 64) * 4
    with torch.no_grad():
        assert relative_error(model.eval()(x), ref(x)) <= 1e-5
    torch.save(timm.create_model("seresnet18").state_dict(), src)
    assert main(["convert", str(src), "--out", str(tmp_path / "r.safetensors")]) == 2
    assert "name the senet model with --model" in capsys.readouterr().err


@slow
def test_vgg_heads_dense_and_pooled_agree_up_to_7x7_maps_and_each_layout_needs_its_own():
    """timm's ConvMlp slides fc6 over a map larger than 7×7 and averages the scores (VGG's dense evaluation);
    torchvision pools the map to 7×7 first. senet builds either (head="dense" / "pool"); each layout loads only
    into its own, and the two are the same function up to 7×7 maps (inputs below 256 px)."""
    ref = _random_like_trained(timm.create_model("vgg16_bn"), torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"head='dense' \(fc6 slides over the last map"):
        load_weights(senet.create_model("vgg16_bn"), ref.state_dict())
    dense = load_weights(senet.create_model("vgg16_bn", head="dense"), ref.state_dict()).eval()
    pooled = senet.create_model("vgg16_bn").eval()
    pooled.load_state_dict(dense.state_dict())
    with torch.no_grad():
        for side, same in ((5, True), (7, True), (8, False), (12, False)):
            features = torch.randn(1, 512, side, side).relu()
            theirs = ref.forward_head(features)  # timm's head: pre_logits (fc6, fc7), pooling, fc8
            assert relative_error(dense.forward_head(dense.pre_logits(features)), theirs) < 1e-5, side
            assert (relative_error(pooled.forward_head(pooled.pre_logits(features)), theirs) < 1e-5) == same, side


def test_each_vgg_layout_loads_only_into_its_own_head(meta_states):
    with torch.device("meta"):
        pooled, dense = senet.create_model("vgg16_bn"), senet.create_model("vgg16_bn", head="dense")
    with pytest.raises(ValueError, match=r"head='dense' \(fc6 slides over the last map.*but this vgg16_bn has "
                                         r"head='pool'.*create_model\('vgg16_bn', head='dense'\)"):  # fmt: skip
        load_weights(pooled, meta_states["timm_vgg16_bn"])
    with pytest.raises(ValueError, match=r"head='pool', but this vgg16_bn has head='dense'"):
        load_weights(dense, meta_states["tv_vgg16_bn"])
    load_weights(dense, meta_states["timm_vgg16_bn"]), load_weights(pooled, meta_states["tv_vgg16_bn"])


@pytest.mark.parametrize(("depth", "last"), [(11, 26), (19, 50)])
def test_vgg_of_another_depth_is_refused_by_name_not_loaded_in_part(depth, last):
    with torch.device("meta"):
        state = getattr(torchvision.models, f"vgg{depth}_bn")().state_dict()
        model = senet.create_model("vgg16_bn")
    with pytest.raises(ValueError, match=rf"last layer with weights at features\.{last}; VGG-16-BN's is at features"):
        load_weights(model, state)


def test_a_file_of_another_layout_named_as_vgg_points_to_its_layout(meta_states):
    """A file with no VGG keys at all, given as a VGG layout: the keys it has name its layout (not "the file's VGG
    has its last layer at features.-1")."""
    with torch.device("meta"):
        model = senet.create_model("vgg16_bn", head="dense")
    with pytest.raises(ConversionError, match=r"the keys look like layout='inception_v3', not 'timm_vgg'") as info:
        load_weights(model, meta_states["tv_inception_v3"], layout="timm_vgg")
    assert "features.-1" not in str(info.value)


@needs_pretrainedmodels
@slow
def test_bn_inception_biases_fold_into_the_bn_or_load_as_they_are(meta_states):
    """Cadene's convolutions have biases before the BN: folded into the running mean for the default model (the
    released SE-BN-Inception's layout, no biases), loaded as they are into conv_bias=True; the same function, to
    float32's rounding of the folded mean (one rounding of μ − b)."""
    ref = _random_like_trained(BNInception(num_classes=1000), torch.randn(2, 3, 224, 224))
    folded = load_weights(senet.create_model("bn_inception"), ref.state_dict()).eval()
    kept = load_weights(senet.create_model("bn_inception", conv_bias=True), ref.state_dict()).eval()
    assert folded.stem.conv1.conv.bias is None and kept.stem.conv1.conv.bias is not None
    mean = ref.conv1_7x7_s2_bn.running_mean - ref.conv1_7x7_s2.bias
    assert torch.equal(folded.stem.conv1.bn.running_mean, mean)
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(folded.double()(x), kept.double()(x)) <= 1e-6
    meta = folded.weights_meta  # Caffe's BGR 0-255 minus (104, 117, 128), for RGB in [0, 1]
    assert meta["mean"] == pytest.approx([128 / 255, 117 / 255, 104 / 255]) and meta["std"] == [1 / 255] * 3
    assert "reordered to RGB" in meta["note"]


def test_inception_v3_auxiliary_head_is_loaded_or_left_out_by_choice(meta_states):
    with_aux, without = meta_states["tv_inception_v3"], meta_states["timm_inception_v3"]
    assert W.model_options("inception_v3", "inception_v3", with_aux) == {"aux_logits": True}
    assert W.model_options("inception_v3", "inception_v3", without) == {}
    with torch.device("meta"):
        plain, aux = senet.create_model("inception_v3"), senet.create_model("inception_v3", aux_logits=True)
    with pytest.raises(ConversionError, match=r"the file holds one; build the model with aux_logits=True, or pass "
                                              r"skip=\('aux.',\)"):  # fmt: skip
        load_weights(plain, with_aux)
    with pytest.raises(ConversionError, match=r"the file holds no one; build the model with aux_logits=False"):
        load_weights(aux, without)
    load_weights(plain, with_aux, skip=("aux.",))  # the file's auxiliary head left out
    load_weights(aux, without, skip=("aux.",))  # the model's kept as initialised
    assert plain.weights_meta["mean"] == [0.5] * 3 and "transform_input" in plain.weights_meta["note"]


def test_a_model_that_is_not_the_layouts_is_refused_by_name(meta_states):
    with torch.device("meta"):
        se = senet.create_model("se_vgg16_bn")
        resnet = senet.create_model("resnet50")
    with pytest.raises(ValueError, match=r"not 'se_vgg16_bn' \(the file holds no SE units\).*create_model\('vgg16_bn'"):
        load_weights(se, meta_states["tv_vgg16_bn"])
    with pytest.raises(ValueError, match="weights of senet's 'inception_resnet_v2', not 'resnet50'"):
        load_weights(resnet, meta_states["timm_inception_resnet_v2"])
    with pytest.raises(ValueError, match="layout='vgg' is not one of"):
        load_weights(resnet, meta_states["tv_vgg16_bn"], layout="vgg")


def test_another_number_of_classes_hints_at_num_classes_and_skip(meta_states):
    state = meta_states["timm_inception_resnet_v2"]
    with torch.device("meta"):
        model = senet.create_model("inception_resnet_v2", num_classes=10)
    with pytest.raises(ConversionError, match=r"2 of another shape: fc\.weight \(1000, 1536\) in the file.*only the "
                                              r"classifier differs: the file has 1000 classes; build the model with "
                                              r"num_classes=1000 \(senet convert: "
                                              r"--num-classes 1000\), or pass skip=\('fc\.',\)") as info:  # fmt: skip
        load_weights(model, state)
    assert info.value.mismatched == ["fc.weight (1000, 1536) in the file, (10, 1536) in the model",
                                     "fc.bias (1000,) in the file, (10,) in the model"]  # fmt: skip
    assert info.value.missing == [] and info.value.unexpected == []
    load_weights(model, state, skip=("fc.",))


def test_another_number_of_classes_with_an_auxiliary_head_hints_at_both(meta_states):
    state = meta_states["tv_inception_v3"]
    with torch.device("meta"):
        model = senet.create_model("inception_v3", aux_logits=True, num_classes=10)
    with pytest.raises(
        ConversionError,
        match=r"only the classifier and the auxiliary classifier differ: the file has "
        r"1000 classes; build the model with num_classes=1000 \(senet convert: "
        r"--num-classes 1000\), or pass skip=\('fc\.', 'aux\.'\)",
    ) as info:
        load_weights(model, state)
    assert {m.split(" ")[0] for m in info.value.mismatched} == {"fc.weight", "fc.bias", "aux.5.weight", "aux.5.bias"}
    load_weights(model, state, skip=("fc.", "aux."))


def test_weights_without_se_units_say_so_before_and_after_the_options(meta_states):
    with pytest.raises(ValueError, match=r"not 'se_inception_v3' \(the file holds no SE units\)"):
        W.model_options("se_inception_v3", "inception_v3", meta_states["tv_inception_v3"])  # senet convert --model
    state = meta_states["torchvision"]  # a plain resnet50: the ResNet layouts do not name their model
    with torch.device("meta"):
        model = senet.create_model("se_resnet50", **W.model_options("se_resnet50", "torchvision", state))
    with pytest.raises(
        ConversionError, match=r"holds no SE units: use 'resnet50', or retrofit it: senet train --model se_resnet50"
    ) as info:
        load_weights(model, state)
    assert info.value.missing and all(".se." in k for k in info.value.missing) and not info.value.unexpected


# ---------------------------------------------------------------------------------------------------------------------
# The guard over every layout and every registered model: loading succeeds only where the model computes the
# reference's function.

# Two values of each option that changes the function without changing a shape.
CHOICES = {"layout": ("original", "v1.5"), "se_position": ("standard", "post"), "se_gate": ("sigmoid", "tanh"),
           "se_squeeze": ("avg", "max"), "relu_before_se": (False, True), "act": ("relu", "relu6"),
           "head": ("pool", "dense")}  # fmt: skip


@slow
def test_every_layout_loads_into_its_model_only_and_only_with_the_options_of_its_function(meta_states):
    """For each reference state dict, every registered model built with the options the layout asks for: loading
    succeeds only into the layout's model (the ResNet layouts: the model of the reference network). Then, for that
    model, changing any option that alters the function without altering a shape is refused."""
    targets = {s: name for s, (_, _, _, name, _) in SOURCES.items()} | {
        "caffe": "se_resnet50",
        "timm": "se_resnet50",
        "torchvision": "resnet50",
        "legacy18": "se_resnet18",
    }
    for source, target in targets.items():
        if source not in meta_states or source == "cadene_inceptionresnetv2":
            continue  # the same layout as timm's
        state = meta_states[source]
        layout = W.detect_layout(state)
        loaded = []
        for name in senet.list_models():
            try:
                options = W.model_options(name, layout, state)
            except ValueError:  # the layout is another model's: any options, the defaults
                options = {}
            with torch.device("meta"):
                model = senet.create_model(name, **options)
            try:
                W.convert_state_dict(state, model)
                loaded.append(name)
            except ValueError:  # ConversionError included
                pass
        assert loaded == [target], (source, loaded)
        entry = senet.get_entry(target)
        options = W.model_options(target, layout, state)
        defaults = entry.defaults()
        for option, values in CHOICES.items():
            if option not in entry.options or (option == "relu_before_se" and target != "se_resnet18"):
                continue
            value = next(v for v in values if v != options.get(option, defaults[option]))
            with torch.device("meta"):
                model = senet.create_model(target, **{**options, option: value})
            with pytest.raises(ValueError, match=f"{option}=.*would load them and compute another function"):
                W.convert_state_dict(state, model)
