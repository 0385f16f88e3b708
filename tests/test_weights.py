"""Converters against the reference code itself (timm, torchvision), the known weights' download path (offline, on a
local HTTP server), and the errors: keys reported by name, layouts checked, pickles and torn files refused."""

import hashlib
import os
import pickle
import subprocess
import sys

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
from senet.files import save_weights
from senet.weights import ConversionError, KnownWeights, load_weights

# (reference builder, senet model, layout): each against the reference implementation itself.
CASES = {
    "legacy_seresnet18": (lambda: timm.create_model("legacy_seresnet18"), "se_resnet18", "caffe"),
    "legacy_seresnet50": (lambda: timm.create_model("legacy_seresnet50"), "se_resnet50", "caffe"),
    "legacy_seresnext50_32x4d": (lambda: timm.create_model("legacy_seresnext50_32x4d"), "se_resnext50_32x4d", "caffe"),
    "legacy_senet154": (lambda: timm.create_model("legacy_senet154"), "senet154", "caffe"),
    "seresnet50": (lambda: timm.create_model("seresnet50"), "se_resnet50", "timm"),
    "seresnext50_32x4d": (lambda: timm.create_model("seresnext50_32x4d"), "se_resnext50_32x4d", "timm"),
    "tv_resnet50": (torchvision.models.resnet50, "resnet50", "torchvision"),
    "tv_resnext50_32x4d": (torchvision.models.resnext50_32x4d, "resnext50_32x4d", "torchvision"),
}


# One case per layout in the fast tier (the first of each); the others, SENet-154 above all, in the full suite.
FAST_CASES = {"legacy_seresnet18", "seresnet50", "tv_resnet50"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=() if c in FAST_CASES else slow) for c in CASES])
def test_converted_model_computes_what_the_reference_computes(case):
    """Eval mode, random weights and inputs, the layout recognised from the names; compared in float64 so that the
    test measures the function rather than float32 summation order: max |diff| ≤ 1e-10 of the output's scale
    (measured 0 to 5e-15, docs/interop.md; in float32 ~1e-6)."""
    build, name, layout = CASES[case]
    ref = trained_like(build()).double()
    model = senet.create_model(name, **W.model_options(name, layout)).double().eval()
    load_weights(model, ref.state_dict())
    assert model.weights_meta["layout"] == layout
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected, got = ref(x), model(x)
    assert expected.std(0).mean() > 1e-3 * expected.abs().max()  # the inputs give different outputs
    assert (got - expected).abs().max() <= 1e-10 * max(1.0, expected.abs().max())


@pytest.mark.parametrize("depth", [18, pytest.param(34, marks=pytest.mark.slow)])
def test_legacy_basic_block_weights_load_only_into_the_block_that_computes_them(depth, tmp_path, capsys):
    """timm's legacy_seresnet18/34 apply a ReLU before SE; every shape fits se_resnet18/34, whose paper block does
    not. Loading into the paper's block is refused (by the API, and by `senet convert --model` with options that
    say otherwise); relu_before_se=True computes their function, and `senet convert` builds it by itself."""
    ref = trained_like(timm.create_model(f"legacy_seresnet{depth}"))
    state = ref.state_dict()
    with pytest.raises(ValueError, match=r"relu_before_se=True \(basic blocks that apply a ReLU before SE.*but this "
                                         rf"se_resnet{depth} has relu_before_se=False.*create_model\('se_resnet{depth}'"
                                         r", layout='original', relu_before_se=True\)"):  # fmt: skip
        load_weights(senet.create_model(f"se_resnet{depth}"), state)
    assert W.model_options(f"se_resnet{depth}", "caffe") == {"layout": "original", "relu_before_se": True}
    path, out = tmp_path / "legacy.pth", tmp_path / "x.safetensors"
    torch.save(state, path)
    assert main(["convert", str(path), "--model", f"se_resnet{depth}", "--out", str(out)]) == 0
    assert "relu_before_se=True" in capsys.readouterr().out
    model, meta = load_model(out)
    assert meta["options"] == {"layout": "original", "relu_before_se": True} and meta["mean"] == [0.485, 0.456, 0.406]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="relu_before_se=True applies to basic blocks"):
        senet.create_model("se_resnet50", relu_before_se=True)


def test_layout_is_recognised_from_key_names():
    assert W.detect_layout(timm.create_model("legacy_seresnet50").state_dict()) == "caffe"
    assert W.detect_layout(timm.create_model("seresnet50").state_dict()) == "timm"
    assert W.detect_layout(torchvision.models.resnet18().state_dict()) == "torchvision"
    assert W.detect_layout(senet.create_model("resnet20").state_dict()) == "senet"
    model = senet.create_model("resnet18", layout="v1.5")
    load_weights(model, trained_like(torchvision.models.resnet18()).state_dict())  # layout="auto"


@pytest.fixture(scope="module")
def caffe_se_resnet50():
    return timm.create_model("legacy_seresnet50").state_dict()


def test_missing_unexpected_and_misshapen_keys_are_named(caffe_se_resnet50):
    state = dict(caffe_se_resnet50)
    del state["layer2.1.bn2.running_var"]
    state["layer9.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError) as info:
        load_weights(senet.create_model("se_resnet50"), state, "caffe")
    e = info.value
    assert e.missing == ["layer2.1.bn2.running_var"] and e.unexpected == ["layer9.extra.weight"]
    assert "layer2.1.bn2.running_var" in str(e) and "layer9.extra.weight" in str(e)
    fc1 = r"layer1\.0\.se\.fc1\.weight \(16, 256, 1, 1\) in the file, \(32, 256\)"
    with pytest.raises(ConversionError, match=fc1) as info:
        load_weights(senet.create_model("se_resnet50", r=8), caffe_se_resnet50, "caffe")
    assert info.value.missing == [] and info.value.unexpected == []  # a misshapen key is named once, as a shape
    assert len(info.value.mismatched) == 3 * 16  # fc1 weight and bias, fc2 weight (its bias fits) of 16 units
    with pytest.raises(ConversionError, match="look like layout='caffe'"):
        load_weights(senet.create_model("se_resnet50"), caffe_se_resnet50, "senet")


def test_weights_need_the_layout_they_compute_with(caffe_se_resnet50):
    """Strides and pooling differ between layouts while every shape agrees: refused, not silently loaded."""
    with pytest.raises(ValueError, match=r"layout='original'.*create_model\('se_resnet50', layout='original'\)"):
        load_weights(senet.create_model("se_resnet50", layout="v1.5"), caffe_se_resnet50, "caffe")
    tv = torchvision.models.resnet18().state_dict()
    with pytest.raises(ValueError, match=r"layout='v1\.5'"):
        load_weights(senet.create_model("resnet18"), tv, "torchvision")


def test_a_senet_file_loads_only_into_a_model_with_its_options(tmp_path):
    """se_position="post" and "standard" give every tensor the same shape: the file's recorded options decide."""
    source = senet.create_model("se_resnet20", se_position="post")
    path = save_weights(tmp_path / "post.safetensors", source, source.model_config)
    with pytest.raises(
        ValueError,
        match=r"compute with se_position='post', but this se_resnet20 has "
        r"se_position='standard'.*create_model\('se_resnet20', se_position='post'\)",
    ):
        load_weights(senet.create_model("se_resnet20"), path)
    load_weights(senet.create_model("se_resnet20", se_position="post", zero_init_last=True), path)
    load_weights(senet.create_model("se_resnet20"), source.state_dict())  # a bare state dict says nothing


def test_timm_reduced_width_mismatch_hints_at_rounding():
    state = timm.create_model("seresnet18").state_dict()  # C = 64 → timm 8, the paper's floor(64/16) = 4
    with pytest.raises(ConversionError, match="se_rounding='round8'"):
        load_weights(senet.create_model("se_resnet18", layout="v1.5"), state, "timm")
    load_weights(senet.create_model("se_resnet18", **W.model_options("se_resnet18", "timm")), state, "timm")


def test_skip_keeps_a_new_classifier(caffe_se_resnet50):
    model = senet.create_model("se_resnet50", num_classes=10)
    fc = model.fc.weight.clone()
    with pytest.raises(ConversionError, match=r"2 of another shape: fc\.weight \(1000, 2048\) in the file, "
                       r"\(10, 2048\) .*\(only the classifier differs: the file has 1000 classes; build the model with "
                       r"num_classes=1000 \(senet convert: --num-classes 1000\), or pass skip=\('fc\.',\) to start "
                       r"a new classifier\)") as info:  # fmt: skip
        load_weights(model, caffe_se_resnet50, "caffe")
    assert info.value.missing == [] and info.value.unexpected == [] and len(info.value.mismatched) == 2
    load_weights(model, caffe_se_resnet50, "caffe", skip=("fc.",))
    assert torch.equal(model.fc.weight, fc)
    assert torch.equal(model.stem.conv1.weight, caffe_se_resnet50["layer0.conv1.weight"])


def test_se_fc_converts_between_linear_and_conv_forms(caffe_se_resnet50):
    linear = senet.create_model("se_resnet50")
    load_weights(linear, caffe_se_resnet50, "caffe")
    conv = senet.create_model("se_resnet50", se_conv=True)
    load_weights(conv, linear.state_dict(), "senet")
    assert conv.layer1[0].se.fc1.weight.shape == (16, 256, 1, 1)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(conv.eval()(x), linear.eval()(x))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/senet_weights_pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@slow
def test_malicious_pickle_and_truncated_safetensors_are_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": _Evil()}, evil)
    model = senet.create_model("resnet20")
    with pytest.raises(ValueError, match="refusing to load"):
        load_weights(model, evil)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError, match="refusing to load"):
        load_weights(model, raw)
    assert not os.path.exists("/tmp/senet_weights_pwned")
    torn = save_weights(tmp_path / "w.safetensors", model, model.model_config)
    torn.write_bytes(torn.read_bytes()[:-100])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_weights(model, torn)
    proc = subprocess.run([sys.executable, "-m", "senet", "convert", str(evil), "--model", "resnet20", "--out",
                           str(tmp_path / "o.safetensors")], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "refusing to load" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_cli_convert_then_load_model(tmp_path, capsys):
    ref = trained_like(torchvision.models.resnet18())
    src = tmp_path / "resnet18-tv.pth"
    torch.save(ref.state_dict(), src)
    out = tmp_path / "resnet18.safetensors"
    assert main(["convert", str(src), "--model", "resnet18", "--out", str(out)]) == 0
    assert "torchvision layout" in capsys.readouterr().out
    model, meta = load_model(out)
    assert meta["options"] == {"layout": "v1.5"} and meta["mean"] == [0.485, 0.456, 0.406]
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model.eval()(x), ref(x), rtol=0, atol=1e-6)
    assert main(["weights", "se_resnet50"]) == 0
    assert "se_resnet50.caffe_in1k" in capsys.readouterr().out


def test_convert_file_writes_what_senet_convert_writes(tmp_path, capsys):
    """The library function behind `senet convert`: a Python user gets the same file, and what it read."""
    src = tmp_path / "resnet18-tv.pth"
    torch.save(trained_like(torchvision.models.resnet18()).state_dict(), src)
    cli, lib = tmp_path / "cli.safetensors", tmp_path / "lib.safetensors"
    assert main(["convert", str(src), "--model", "resnet18", "--out", str(cli), "--input-size", "160"]) == 0
    done = senet.convert_file(src, lib, model="resnet18", input_size=160)
    assert done == ("resnet18", "torchvision", {"layout": "v1.5"}, len(torch.load(src, weights_only=True)))
    assert f"-> {cli}: resnet18, layout='v1.5', {done.tensors} tensors" in capsys.readouterr().out
    (a, meta_a), (b, meta_b) = load_model(cli), load_model(lib)
    assert meta_a == meta_b and meta_b["image_size"] == 160
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


# ---------------------------------------------------------------------------------------------------------------------
# Known weights: served over HTTP from a local folder, exactly as a download would be.


def _caffe_file(folder, model):
    """``model``'s weights as the Caffe port stores them (layer0, se_module as 1×1 convs, last_linear), named
    name-<sha256 prefix>.pth as published files are. ``model`` is a bottleneck network: Caffe-port basic blocks
    compute another function (a ReLU before SE) and are refused."""
    state = {}
    for key, value in model.state_dict().items():
        if ".se." in key and key.endswith("weight"):
            value = value[:, :, None, None]
        key = key.replace("stem.", "layer0.").replace(".se.", ".se_module.").replace("fc.", "last_linear.")
        state[key] = value
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return tmp.rename(folder / f"{model.model_name}-{digest[:8]}.pth"), digest


def test_known_weights_download_check_convert_and_cache(server, hub, monkeypatch):
    root, url = server
    source = trained_like(senet.create_model("se_preact_resnet164"))
    path, _ = _caffe_file(root, source)
    name = "se_preact_resnet164"
    spec = KnownWeights(name, "test", f"{url}/{path.name}", "caffe", "test", num_classes=10, mean=(0.5,) * 3)
    monkeypatch.setattr(W.published, "KNOWN_WEIGHTS", (spec,))
    model = senet.create_model("se_preact_resnet164", weights="DEFAULT").eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), source(x), rtol=0, atol=1e-6)
    assert model.weights_meta["mean"] == [0.5] * 3 and model.weights_meta["sha256_prefix"] == path.name[-12:-4]
    assert [p.name for p in hub.iterdir()] == [path.name]  # in torch.hub's cache, no partial files
    path.unlink()  # served no more: the cache answers
    again = senet.create_model("se_preact_resnet164", weights="test", num_classes=4)
    assert again.fc.out_features == 4 and torch.equal(again.stem.conv1.weight, model.stem.conv1.weight)


def test_known_weights_with_a_wrong_checksum_are_discarded(server, hub, monkeypatch):
    root, url = server
    path, digest = _caffe_file(root, senet.create_model("se_preact_resnet164"))
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "1" * 8
    bad = path.rename(root / f"se_preact_resnet164-{wrong}.pth")
    spec = KnownWeights("se_preact_resnet164", "t", f"{url}/{bad.name}", "caffe", "t")
    monkeypatch.setattr(W.published, "KNOWN_WEIGHTS", (spec,))
    with pytest.raises(ValueError, match=f'failed its checksum.*expected "{wrong}", got "{digest}"'):
        senet.create_model("se_preact_resnet164", weights="DEFAULT")
    assert not hub.exists() or not list(hub.iterdir())  # nothing kept, not even a partial file


@slow
def test_known_weights_offline_is_a_clear_error(hub, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = KnownWeights("se_resnet20", "t", f"http://127.0.0.1:{port}/se_resnet20-0123abcd.pth", "caffe", "t")
    monkeypatch.setattr(W.published, "KNOWN_WEIGHTS", (spec,))
    with pytest.raises(ConnectionError, match=r"Offline\? Copy the file \(SHA-256 starting 0123abcd\) to .*hub"):
        senet.create_model("se_resnet20", weights="DEFAULT")


def test_known_weights_table_and_lookup_errors():
    for w in W.KNOWN_WEIGHTS:
        assert w.url.startswith("https://") and len(w.hash_prefix) >= 8
        assert senet.get_entry(w.model).has_se == (w.layout != "torchvision")
    assert W.get_weights("se_resnet50").tag == "caffe_in1k"  # the paper's own weights are the default
    assert W.get_weights("se_resnet50").options == {"layout": "original"}
    assert W.get_weights("se_resnet50", "timm_a1_in1k").options == {"layout": "v1.5", "se_rounding": "round8"}
    with pytest.raises(ValueError, match="choose 'DEFAULT' or one of caffe_in1k, timm_a1_in1k"):
        W.get_weights("se_resnet50", "imagenet")
    with pytest.raises(ValueError, match="no published weights are known for 'se_resnet20'"):
        senet.create_model("se_resnet20", weights="DEFAULT")
    with pytest.raises(ValueError, match="need layout='original'"):
        senet.create_model("se_resnet50", weights="DEFAULT", layout="v1.5")
    with pytest.raises(ValueError, match="in_chans=3"):
        senet.create_model("se_resnet50", weights="DEFAULT", in_chans=1)


def test_torch_hub_loads_every_model_from_the_repository():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = torch.hub.load(repo, "se_resnet20", source="local", num_classes=7, r=8)
    assert model.model_name == "se_resnet20" and model.num_classes == 7 and model.layer1[0].se.reduced == 2
    hub = torch.hub._import_module("hubconf", os.path.join(repo, "hubconf.py"))
    entries = [f for f in dir(hub) if callable(getattr(hub, f)) and not f.startswith("_")]  # torch.hub.list's rule
    assert entries == senet.list_models()
