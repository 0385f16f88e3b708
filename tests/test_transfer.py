"""Transfer (docs/transfer.md): --init from published tags, run folders and weights files of any layout, with a load
report that names every new and skipped tensor; the retrofit's identity start; freezing and learning-rate factors;
models of other libraries trained through the Python API and used by the CLI; ImageNet class names; bad input."""

import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
import torch
import torchvision
from _interop import trained_like
from conftest import slow
from test_cli_train import _fails, _ok, same_weights, senet_cmd
from test_data import needs_fmnist

import senet
import senet.weights as W
from senet.cli import main
from senet.data import load_datasets
from senet.factory import check_rebuilds, load_model, model_metadata
from senet.files import read_weights, save_weights
from senet.training import TrainConfig, train
from senet.training.checkpoint import LAST_FILE, STATE_FILE, load_state
from senet.training.finetune import Finetune
from senet.transfer import load_init, resolve_init
from senet.weights import KnownWeights

FIRST_FIVE = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
LAST_FIVE = ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def weights_file(path, model, classes, **extra):
    """``model``'s weights as a finished run writes them: name, options, classes, preprocessing."""
    meta = model_metadata(model, dataset="fashion-mnist", classes=list(classes), image_size=28, mean=[0.286],
                          std=[0.353], crop_pct=1.0, interpolation="bilinear", **extra)  # fmt: skip
    return save_weights(path, model, meta)


@pytest.fixture
def plain_run(tmp_path):
    """A 'pretrained' ResNet-20 on Fashion-MNIST classes 0-4 (random weights with trained BN statistics)."""
    model = trained_like(senet.create_model("resnet20", num_classes=5, in_chans=1), torch.randn(16, 1, 28, 28))
    folder = tmp_path / "pre-resnet20"
    weights_file(folder / LAST_FILE, model, FIRST_FIVE)
    return folder, model


# -- the load report -----------------------------------------------------------------------------------------------


def test_load_report_names_every_new_and_skipped_tensor(plain_run):
    folder, plain = plain_run
    source = resolve_init(str(folder), "se_resnet20")
    assert source.model == "resnet20" and source.classes == tuple(FIRST_FIVE) and source.layout == "senet"
    se = senet.create_model("se_resnet20", num_classes=5, in_chans=1)
    report = load_init(se, source, LAST_FIVE)
    se_keys = [k for k in se.state_dict() if ".se." in k]
    assert len(se_keys) == 9 * 4  # 9 blocks, fc1 and fc2 with biases
    assert set(report.new) == {*se_keys, "fc.weight", "fc.bias"}
    assert all("SE units" in report.new[k] and "random start" in report.new[k] for k in se_keys)
    assert "new head" in report.new["fc.weight"] and "Sandal" in report.new["fc.weight"]
    assert set(report.skipped) == {"fc.weight", "fc.bias"} and report.skipped["fc.weight"] == "the replaced head"
    assert set(report.taken) == set(plain.state_dict()) - {"fc.weight", "fc.bias"}
    text = "\n".join(report.lines())
    assert all(k in text for k in [*se_keys, "fc.weight", "fc.bias"])  # every one named
    assert "114 tensors taken" in text.splitlines()[0]
    for k in report.taken:  # and what was taken is the file's
        assert torch.equal(se.state_dict()[k], plain.state_dict()[k])


def test_same_classes_keep_the_head_and_every_tensor_is_taken(plain_run):
    folder, plain = plain_run
    model = senet.create_model("resnet20", num_classes=5, in_chans=1)
    report = load_init(model, resolve_init(str(folder), "resnet20"), FIRST_FIVE)
    assert not report.new and not report.skipped and "every tensor" in report.lines()[-1]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in plain.state_dict().items())


def test_identity_start_retrofit_computes_what_the_plain_network_computes(plain_run):
    folder, plain = plain_run
    source = resolve_init(str(folder), "se_resnet20")
    options = senet.transfer.init_options(source, "se_resnet20", {"se_gate": "sigmoid_x2", "se_init": "identity"})
    se = senet.create_model("se_resnet20", num_classes=5, in_chans=1, **options)
    report = load_init(se, source, FIRST_FIVE)  # the same classes: the head is taken too
    assert set(report.new) == {k for k in se.state_dict() if ".se." in k}
    assert all("identity start" in why for why in report.new.values())
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert (se.eval()(x) - plain.eval()(x)).abs().max() <= 1e-6


# -- bad input ---------------------------------------------------------------------------------------------------


def test_weights_of_another_architecture_name_the_first_tensor_and_what_fits(tmp_path, capsys):
    deep = senet.create_model("resnet56", num_classes=5, in_chans=1)
    weights_file(tmp_path / "r56.safetensors", deep, FIRST_FIVE)
    model = senet.create_model("resnet20", num_classes=5, in_chans=1)
    with pytest.raises(ValueError, match=r"first layer1\.3\.\w+\.weight of the source has no place in the model "
                       r"\(and \d+ more\); the weights are resnet56's: train --model resnet56"):  # fmt: skip
        load_init(model, resolve_init(str(tmp_path / "r56.safetensors"), "resnet20"), FIRST_FIVE)
    wide = senet.create_model("se_resnet20", num_classes=5, in_chans=1, r=4)
    weights_file(tmp_path / "r4.safetensors", wide, FIRST_FIVE)
    with pytest.raises(ValueError, match=r"built with r=4; model_options sets r=8"):
        senet.transfer.init_options(resolve_init(str(tmp_path / "r4.safetensors"), "se_resnet20"), "se_resnet20",
                                    {"r": 8})  # fmt: skip
    # the command line: one line, exit 2, and no run folder left behind
    args = ["train", "--model", "resnet20", "--dataset", "synthetic", "--in-chans", "1", "--image-size", "8",
            "--train-subset", "32", "--test-subset", "8", "--batch-size", "16", "--epochs", "1",
            "--out-dir", str(tmp_path / "runs"), "--name", "x"]  # fmt: skip
    err = _fails(capsys, *args, "--init", str(tmp_path / "r56.safetensors"))
    assert "does not fit resnet20: first" in err and "--model resnet56" in err
    assert not (tmp_path / "runs" / "x").exists()


@slow
def test_weights_without_metadata_name_the_models_they_fit(tmp_path):
    deep = senet.create_model("resnet56", num_classes=5, in_chans=1)
    torch.save(deep.state_dict(), tmp_path / "r56.pth")  # no metadata: the registry is searched
    model = senet.create_model("resnet20", num_classes=5, in_chans=1)
    with pytest.raises(ValueError, match=r"; they fit resnet56 \(--model NAME; se_resnet56 as a retrofit\)$"):
        load_init(model, resolve_init(str(tmp_path / "r56.pth"), "resnet20"), FIRST_FIVE)


def test_bad_freeze_corrupt_and_malicious_init_files_one_line_exit_2(tmp_path, capsys, plain_run):
    base = ["train", "--model", "resnet20", "--dataset", "synthetic", "--in-chans", "1", "--image-size", "8",
            "--train-subset", "32", "--test-subset", "8", "--batch-size", "16", "--epochs", "1",
            "--out-dir", str(tmp_path / "runs"), "--name", "x"]  # fmt: skip
    err = _fails(capsys, *base, "--freeze", "layer4")
    assert "freeze='layer4': resnet20 has stages layer1..layer3; choose none, backbone, stem or one of" in err
    assert "freeze='block2'; choose none, backbone, stem, or layerN" in _fails(capsys, *base, "--freeze", "block2")
    err = _fails(capsys, *base, "--backbone-lr", "0")
    assert "backbone_lr=0.0: expected a finite number, above 0 and at most 1" in err
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes((plain_run[0] / LAST_FILE).read_bytes()[:-100])
    assert "not a valid safetensors file" in _fails(capsys, *base, "--init", str(torn))

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/senet_init_pwned",))

    torch.save({"state_dict": {"stem.conv1.weight": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pth")
    err = _fails(capsys, *base, "--init", str(tmp_path / "evil.pth"))
    assert "refusing to load" in err and not os.path.exists("/tmp/senet_init_pwned")
    assert "no weights file or run folder at" in _fails(capsys, *base, "--init", str(tmp_path / "none.pth"))
    assert "neither a file, a run folder, nor weights known" in _fails(capsys, *base, "--init", "imagenet")
    assert not (tmp_path / "runs" / "x").exists()


# -- published weights, served as a download would be --------------------------------------------------------------


@slow
def test_published_tag_from_a_local_server_as_init_retrofits_and_replaces_the_head(server, hub, monkeypatch, capsys,
                                                                                   tmp_path):  # fmt: skip
    root, url = server
    ref = trained_like(torchvision.models.resnet18(), torch.randn(4, 3, 32, 32))
    tmp = root / "tmp.pth"
    torch.save(ref.state_dict(), tmp)
    path = tmp.rename(root / f"resnet18-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth")
    spec = KnownWeights("resnet18", "test", f"{url}/{path.name}", "torchvision", "test", mean=(0.5, 0.4, 0.3))
    monkeypatch.setattr(W.published, "KNOWN_WEIGHTS", (spec,))
    run = tmp_path / "ft"
    code = main(["train", "--model", "se_resnet18", "--init", "resnet18.test", "--dataset", "synthetic",
                 "--train-subset", "32", "--test-subset", "8", "--batch-size", "16", "--epochs", "1", "--progress",
                 "epoch", "--out-dir", str(tmp_path), "--name", "ft"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "init: published weights resnet18.test into se_resnet18: 120 tensors taken" in err
    assert "SE units, which the plain network's weights lack (random start) (32)" in err
    assert "a new head: the source's 1000 classes (tench, goldfish, great white shark, ...)" in err
    assert "skipped from the source, the replaced head (2): fc.weight, fc.bias" in err
    meta = read_weights(run / LAST_FILE)[1]
    assert meta["options"] == {"layout": "v1.5"} and meta["mean"] == [0.5, 0.4, 0.3]  # the weights' own
    assert json.loads((run / "init.json").read_text())["skipped"] == {"fc.weight": "the replaced head",
                                                                      "fc.bias": "the replaced head"}  # fmt: skip
    assert [p.name for p in hub.iterdir()] == [path.name]  # downloaded once, checked, into torch.hub's cache


@slow
def test_timm_conventions_pretrained_num_classes_0_and_the_classifier(server, hub, monkeypatch):
    root, url = server
    ref = trained_like(torchvision.models.resnet18(), torch.randn(4, 3, 32, 32))
    tmp = root / "tmp.pth"
    torch.save(ref.state_dict(), tmp)
    path = tmp.rename(root / f"resnet18-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth")
    spec = KnownWeights("resnet18", "t", f"{url}/{path.name}", "torchvision", "t", interpolation="bicubic")
    monkeypatch.setattr(W.published, "KNOWN_WEIGHTS", (spec,))
    features = senet.create_model("resnet18", pretrained=True, num_classes=0).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled = torch.flatten(torch.nn.Sequential(*list(ref.children())[:-1])(x), 1)
        torch.testing.assert_close(features(x), pooled, rtol=0, atol=1e-5)
    assert isinstance(features.get_classifier(), torch.nn.Identity)
    features.reset_classifier(7)
    assert features(x).shape == (2, 7) and features.model_config["num_classes"] == 7
    check_rebuilds(features)
    import timm

    cfg = timm.data.resolve_data_config({}, model=features)  # senet's preprocessing, not timm's defaults
    assert cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.875 and cfg["input_size"] == (3, 224, 224)
    assert timm.data.resolve_data_config({}, model=senet.create_model("se_resnet20"))["crop_pct"] == 1.0
    with pytest.raises(ValueError, match="num_classes=-1 must be an int >= 0"):
        senet.create_model("resnet18", num_classes=-1)


# -- freezing, BatchNorm statistics, learning-rate factors ---------------------------------------------------------


def test_lr_factors_per_stage():
    model = senet.create_model("resnet20")  # (the rest on the meta device: no weights needed)
    scales = Finetune(backbone_lr=0.1, layer_decay=0.5).lr_scales(model)
    assert scales["fc.weight"] == 1.0 and scales["layer3.0.conv1.weight"] == pytest.approx(0.1)
    assert scales["layer2.0.conv1.weight"] == pytest.approx(0.05) and scales["layer1.2.bn2.bias"] == pytest.approx(
        0.025
    )
    assert scales["stem.conv1.weight"] == pytest.approx(0.0125)
    model.layer1.requires_grad_(False)
    assert not any(k.startswith("layer1.") for k in Finetune().lr_scales(model))  # frozen: not optimised
    with torch.device("meta"):
        vgg, inception = torchvision.models.vgg11(), senet.create_model("se_inception_v3")
    assert Finetune("backbone").frozen(vgg) == ["features", "avgpool", *(f"classifier.{i}" for i in range(6))]
    with pytest.raises(ValueError, match=r"layer_decay=0\.5: se_inception_v3 has no numbered stages"):
        Finetune(layer_decay=0.5).lr_scales(inception)


@slow
@needs_fmnist
def test_frozen_parameters_and_bn_statistics_do_not_move(tmp_path, plain_run, capsys):
    folder, plain = plain_run
    common = dict(model="resnet20", init=str(folder), classes=[5, 6, 7, 8, 9], train_per_class=20, test_subset=64,
                  batch_size=25, epochs=2, progress="none", out_dir=str(tmp_path))  # fmt: skip
    train(TrainConfig.from_dict({**common, "freeze": "layer2", "backbone_lr": 0.5, "name": "f"}))
    after, _ = read_weights(tmp_path / "f" / LAST_FILE)
    before = plain.state_dict()
    frozen = [k for k in after if k.startswith(("stem.", "layer1.", "layer2."))]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)  # running stats and counters included
    assert not any(torch.equal(after[k], before[k]) for k in after if k.startswith("layer3.") and "conv" in k)
    groups = load_state(tmp_path / "f").extra["optimizer"]["param_groups"]
    assert sorted({g["lr_scale"] for g in groups}) == [0.5, 1.0]  # layer3 at half the head's rate
    assert not any(g["lr"] == 0 for g in groups)
    assert json.loads(_ok(capsys, "eval", str(tmp_path / "f"), "--test-subset", "0"))["images"] == 5000  # all of 5-9
    train(TrainConfig.from_dict({**common, "freeze_bn": "all", "name": "bn"}))
    after, _ = read_weights(tmp_path / "bn" / LAST_FILE)
    stats = [k for k in after if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(after[k], before[k]) for k in stats)
    assert not torch.equal(after["layer1.0.bn1.weight"], before["layer1.0.bn1.weight"])  # BN's affine still trains


@slow
@needs_fmnist
def test_a_fine_tuning_run_killed_with_sigkill_resumes_bit_identical(tmp_path, plain_run):
    folder, _ = plain_run
    args = ["--model", "se_resnet20", "--model-options", "{se_gate: sigmoid_x2, se_init: identity, r: 4}", "--init",
            str(folder), "--classes", "[5,6,7,8,9]", "--train-per-class", "60", "--test-subset", "64", "--batch-size",
            "25", "--epochs", "2", "--freeze", "layer1", "--backbone-lr", "0.5", "--layer-decay", "0.8",
            "--deterministic", "--checkpoint-every", "2", "--progress", "none", "--out-dir", str(tmp_path)]  # fmt: skip
    subprocess.run(senet_cmd("train", *args, "--name", "ref"), check=True, capture_output=True)
    victim = subprocess.Popen(senet_cmd("train", *args, "--name", "v"), stderr=subprocess.PIPE)
    state = tmp_path / "v" / STATE_FILE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if state.is_file() and load_state(state).extra["batch"] > 0:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert 0 < load_state(state).extra["batch"] < 12
    resumed = subprocess.run(senet_cmd("train", "--resume", str(tmp_path / "v")), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(tmp_path / "v" / LAST_FILE, tmp_path / "ref" / LAST_FILE)


# -- other libraries' models, and ImageNet class names -------------------------------------------------------------


def _image_folder(root):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c, value in (("cat", 60), ("dog", 200)):
            (root / split / c).mkdir(parents=True)
            for i in range(8):
                noise = torch.randint(0, 80, (36, 40, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(noise + value - 40).save(root / split / c / f"{i}.png")


@slow
def test_torchvision_resnet18_with_add_se_trained_by_the_api_then_eval_predict_export(tmp_path, capsys):
    import onnxruntime as ort

    _image_folder(tmp_path / "imgs")
    imagenet = trained_like(torchvision.models.resnet18(), torch.randn(4, 3, 32, 32))
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")  # torchvision's own names, 1000 classes
    model = senet.create_model("torchvision:resnet18", num_classes=2)
    senet.add_se(model, 8)
    data = dict(dataset="imagefolder", data_dir=str(tmp_path / "imgs"), image_size=32, batch_size=8)
    config = TrainConfig.from_dict({**data, "epochs": 1, "progress": "none", "out_dir": str(tmp_path), "name": "tv",
                                    "init": str(tmp_path / "resnet18.pth"), "freeze": "layer2"})  # fmt: skip
    result = senet.train(config, model=model)
    run = tmp_path / "tv"
    report = json.loads((run / "init.json").read_text())
    assert report["taken"] == 120 and len(report["new"]) == 8 * 4 + 2  # SE units in 8 blocks, and the head
    assert set(report["skipped"]) == {"fc.weight", "fc.bias"}
    after, _ = read_weights(run / LAST_FILE)
    assert torch.equal(after["layer2.1.bn2.module.running_mean"], imagenet.layer2[1].bn2.running_mean)  # frozen
    saved = TrainConfig.from_recipe(run / "config.yaml")
    assert saved.model == "torchvision:resnet18" and saved.add_se[0]["r"] == 8  # the config is a recipe of it
    meta = read_weights(run / LAST_FILE)[1]
    assert meta["name"] == "torchvision:resnet18" and meta["add_se"][0]["r"] == 8 and meta["classes"] == ["cat", "dog"]
    assert meta["mean"] == [0.485, 0.456, 0.406]  # the init weights' own (torchvision's layout), which they expect
    loaded, _ = load_model(run)
    assert sum(isinstance(m, senet.SqueezeExcite) for m in loaded.modules()) == 8
    out = json.loads(_ok(capsys, "eval", str(run)))
    assert (
        out["model"] == "torchvision:resnet18" and out["images"] == 16 and out["top1"] == pytest.approx(result.test_acc)
    )
    text = _ok(capsys, "predict", str(run), str(tmp_path / "imgs" / "val" / "dog" / "0.png"))
    assert "cat" in text and "dog" in text
    _ok(capsys, "export", str(run / LAST_FILE), "--out", str(tmp_path / "tv.onnx"))
    session = ort.InferenceSession(str(tmp_path / "tv.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = loaded.eval()(x).numpy()
    torch.testing.assert_close(torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), torch.from_numpy(want),
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def test_a_model_that_cannot_be_rebuilt_is_refused_before_training(tmp_path):
    model = senet.add_se(torchvision.models.resnet18(num_classes=10))  # built outside senet: no record
    config = TrainConfig.from_dict(dict(dataset="synthetic", out_dir=str(tmp_path), name="x"))
    with pytest.raises(ValueError, match=r"records no way to rebuild it.*senet.create_model.*'torchvision:NAME'"):
        train(config, model=model)
    recorded = senet.create_model("torchvision:resnet18", num_classes=10)
    recorded.fc = torch.nn.Linear(512, 3)
    with pytest.raises(ValueError, match=r"no longer what its record \(model_config\) rebuilds: fc.bias \(3,\)"):
        train(config, model=recorded)
    with pytest.raises(ValueError, match="would fetch weights whenever the model is rebuilt"):
        senet.create_model("torchvision:resnet18", weights_backbone="DEFAULT")
    assert not (tmp_path / "x").exists()


@slow
def test_predict_with_imagenet_layout_weights_prints_imagenet_class_names(tmp_path, capsys):
    from PIL import Image

    ref = torchvision.models.resnet18().eval()
    with torch.no_grad():
        ref.fc.bias[1] = 100.0  # class 1 wins whatever the image: goldfish
    torch.save(ref.state_dict(), tmp_path / "resnet18-f37072fd.pth")  # the published file's name: its preprocessing
    out = tmp_path / "r18.safetensors"
    _ok(capsys, "convert", str(tmp_path / "resnet18-f37072fd.pth"), "--model", "resnet18", "--out", str(out))
    meta = read_weights(out)[1]
    assert meta["classes"][:2] == ["tench", "goldfish"] and len(meta["classes"]) == 1000
    assert (meta["image_size"], meta["crop_pct"], meta["interpolation"]) == (224, 0.875, "bilinear")
    Image.new("RGB", (300, 260), (120, 30, 200)).save(tmp_path / "x.png")
    text = _ok(capsys, "predict", str(out), str(tmp_path / "x.png"), "--top-k", "1")
    assert text.strip() == f"{tmp_path / 'x.png'}: goldfish 100.0%"


# -- classes and a per-class subset ----------------------------------------------------------------------------------


@needs_fmnist
@slow
def test_classes_and_train_per_class_select_the_same_images_every_time():
    train_a, test_a, spec = load_datasets("fashion-mnist", classes=[5, 6, 7, 8, 9], train_per_class=100)
    assert spec.classes == tuple(LAST_FIVE) and len(test_a) == 5000 and len(train_a) == 500
    assert train_a.labels.bincount().tolist() == [100] * 5 and test_a.labels.bincount().tolist() == [1000] * 5
    train_b, _, _ = load_datasets("fashion-mnist", classes=LAST_FIVE, train_per_class=100)  # by name: the same
    assert torch.equal(train_a.images, train_b.images) and torch.equal(train_a.labels, train_b.labels)
    full, _, _ = load_datasets("fashion-mnist")
    boots, _, _ = load_datasets("fashion-mnist", classes=[9])  # relabelled 0, in the file's order
    assert torch.equal(boots.images, full.images[full.labels == 9]) and boots.labels.eq(0).all()
    with pytest.raises(ValueError, match=r"classes: 10 is not a class of fashion-mnist; use indices 0\.\.9"):
        load_datasets("fashion-mnist", classes=[10])
    with pytest.raises(ValueError, match="train_per_class=7000 but class 'Sandal' has 6000 training images"):
        load_datasets("fashion-mnist", classes=[5], train_per_class=7000)
    with pytest.raises(ValueError, match="names a class twice"):
        load_datasets("fashion-mnist", classes=[5, "Sandal"])


# -- preprocessing -------------------------------------------------------------------------------------------------


def test_preprocess_turns_into_the_evaluation_crop_and_the_training_augmentation():
    from torchvision.transforms import v2

    from senet.data import Preprocess, image_transforms

    img = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    pre = Preprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), crop_pct=0.875)
    paper = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])  # the paper's single crop (§5)
    assert torch.equal(image_transforms(pre, train=False)(img), paper(img))
    bicubic = Preprocess.from_metadata({"input_size": 224, "crop_pct": 0.95, "interpolation": "bicubic",
                                        "mean": [0.5] * 3, "std": [0.5] * 3})  # fmt: skip
    want = v2.Resize(236, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)(img)
    assert torch.equal(image_transforms(bicubic, train=False)(img), v2.CenterCrop(224)(want))
    torch.manual_seed(0)
    assert image_transforms(bicubic, train=True)(img).shape == (3, 224, 224)
    assert Preprocess.from_metadata({"image_size": 28, "mean": [0.286], "std": [0.353]}).crop_pct == 1.0
    assert Preprocess.from_model(senet.create_model("se_resnet50")) == pre  # the ImageNet family's own
    with pytest.raises(ValueError, match="does not say their image_size, mean"):
        Preprocess.from_metadata({"std": [0.5]})
    with pytest.raises(ValueError, match=r"crop_pct=1\.5 must be in \(0, 1\]"):
        Preprocess(224, (0.5,), (0.5,), crop_pct=1.5)
    with pytest.raises(ValueError, match="interpolation='lanczos'; choose from bilinear, bicubic, nearest"):
        Preprocess(224, (0.5,), (0.5,), interpolation="lanczos")


def test_image_folders_are_normalised_with_their_own_measured_mean_and_std(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c, rgb in (("a", (10, 100, 200)), ("b", (50, 150, 250))):
            (tmp_path / split / c).mkdir(parents=True)
            Image.new("RGB", (20, 20), rgb).save(tmp_path / split / c / "0.png")
    _, _, spec = load_datasets("imagefolder", data_dir=str(tmp_path), image_size=16)
    assert spec.mean == pytest.approx((30 / 255, 125 / 255, 225 / 255), abs=1e-4)
    assert spec.std == pytest.approx((20 / 255, 25 / 255, 25 / 255), abs=1e-4)
    given_pre = {"mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bicubic"}
    _, _, given = load_datasets("imagefolder", data_dir=str(tmp_path), image_size=16, preprocess=given_pre)
    assert given.mean == (0.5,) * 3 and given.preprocess.interpolation == "bicubic"
    with pytest.raises(ValueError, match=r"need one value per channel of imagefolder's images \(3\)"):
        load_datasets("imagefolder", data_dir=str(tmp_path), preprocess={"mean": [0.5], "std": [0.25]})


@slow
def test_one_preprocessing_for_train_eval_predict_and_export(tmp_path, capsys):
    """An image folder's run measures mean and std on its training images and records them with its input size, crop
    and interpolation; eval, predict and export all read that record (senet.data.Preprocess), nothing else."""
    from senet.data import Preprocess, image_transforms, read_image
    from senet.export import read_metadata
    from senet.training import Inputs

    _image_folder(tmp_path / "imgs")
    data = dict(dataset="imagefolder", data_dir=str(tmp_path / "imgs"), image_size=24, batch_size=8, epochs=1)
    config = TrainConfig.from_dict({**data, "model": "resnet20", "progress": "none", "out_dir": str(tmp_path),
                                    "name": "r"})  # fmt: skip
    result = train(config)
    run = tmp_path / "r"
    meta = read_weights(run / LAST_FILE)[1]
    pre = Preprocess.from_metadata(meta)
    _, _, spec = load_datasets("imagefolder", data_dir=str(tmp_path / "imgs"), image_size=24)
    assert pre == spec.preprocess and pre.input_size == 24 and pre.crop_pct == 0.875  # measured, as the data says
    assert pre.mean != pytest.approx((0.485, 0.456, 0.406), abs=0.05)  # not ImageNet's

    out = json.loads(_ok(capsys, "eval", str(run)))
    assert out["top1"] == pytest.approx(result.test_acc)  # the same test images, prepared the same way
    image = tmp_path / "imgs" / "val" / "dog" / "3.png"
    probs = json.loads(_ok(capsys, "predict", str(run), str(image), "--json", "--top-k", "2"))[str(image)]
    model, _ = load_model(run)
    x = Inputs(torch.device("cpu"), pre.mean, pre.std).prepare(image_transforms(pre, False)(read_image(image, 3))[None])
    with torch.no_grad():
        want = model.eval()(x).softmax(1)[0]
    assert {p["label"]: p["p"] for p in probs} == pytest.approx({"cat": float(want[0]), "dog": float(want[1])})

    _ok(capsys, "export", str(run), "--out", str(tmp_path / "r.onnx"))
    exported = read_metadata(tmp_path / "r.onnx")
    assert exported["input_size"] == [3, 24, 24] and exported["mean"] == pytest.approx(list(pre.mean))
    assert (exported["std"], exported["crop_pct"], exported["interpolation"]) == (
        pytest.approx(list(pre.std)), pre.crop_pct, pre.interpolation)  # fmt: skip

    given = TrainConfig.from_dict({**data, "model": "resnet20", "progress": "none", "out_dir": str(tmp_path),
                                   "name": "g", "mean": [0.5] * 3, "std": [0.25] * 3, "epochs": 1})  # fmt: skip
    train(given)
    assert read_weights(tmp_path / "g" / LAST_FILE)[1]["mean"] == [0.5] * 3  # given: stored as given, not measured


@slow
@needs_fmnist
def test_freezing_a_retrofit_keeps_its_new_se_units_training(tmp_path, plain_run):
    """--freeze layer1 on a plain network's weights in its SE twin: layer1's convolutions stay as loaded, but its SE
    units, which the weights lack, train (frozen at their random start they would only scale by fixed gates)."""
    from senet.data import derive_seed

    folder, plain = plain_run
    train(TrainConfig.from_dict(dict(
        model="se_resnet20", init=str(folder), classes=[5, 6, 7, 8, 9], train_per_class=10, test_subset=32,
        batch_size=25, epochs=1, freeze="layer1", progress="none", out_dir=str(tmp_path), name="r",
    )))  # fmt: skip
    after, _ = read_weights(tmp_path / "r" / LAST_FILE)
    torch.manual_seed(derive_seed(0, "init"))  # as the trainer builds it: the SE units' start
    start = senet.create_model("se_resnet20", num_classes=5, in_chans=1).state_dict()
    se = [k for k in after if k.startswith("layer1.") and ".se." in k]
    assert se and set(se) <= set(json.loads((tmp_path / "r" / "init.json").read_text())["new"])
    assert all(not torch.equal(after[k], start[k]) for k in se)  # trained
    loaded = [k for k in after if k.startswith("layer1.") and ".se." not in k and after[k].is_floating_point()]
    assert loaded and all(torch.equal(after[k], plain.state_dict()[k]) for k in loaded)  # frozen as loaded


# -- the cold review's defects -------------------------------------------------------------------------------------


def test_library_models_follow_timms_classifier_conventions():
    x = torch.randn(2, 3, 64, 64)
    tv = senet.create_model("torchvision:resnet18", num_classes=10).eval()
    features = senet.create_model("torchvision:resnet18", num_classes=0).eval()
    assert isinstance(features.get_classifier(), torch.nn.Identity) and features.model_config["num_classes"] == 0
    features.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    with torch.no_grad():
        pooled = torch.flatten(torch.nn.Sequential(*list(tv.children())[:-1])(x), 1)
        torch.testing.assert_close(features(x), pooled, rtol=0, atol=0)  # (N, 512): the pooled features
    check_rebuilds(features)
    features.reset_classifier(10)
    assert features(x).shape == (2, 10) and features.get_classifier().out_features == 10
    assert features.model_config["num_classes"] == 10
    check_rebuilds(features)
    assert tv.get_classifier() is tv.fc
    tv.reset_classifier(0)
    assert tv(x).shape == (2, 512) and tv.model_config["num_classes"] == 0
    check_rebuilds(tv)
    with torch.device("meta"):
        vgg = senet.create_model("torchvision:vgg11", num_classes=0)
    assert isinstance(vgg.classifier[6], torch.nn.Identity) and vgg.num_features == 4096
    with pytest.raises(ValueError, match="num_classes=-1 must be an int >= 0"):
        tv.reset_classifier(-1)
    own = senet.create_model("resnet20")
    own.reset_classifier(0)
    assert own(torch.randn(2, 3, 32, 32)).shape == (2, 64) and isinstance(own.get_classifier(), torch.nn.Identity)
    check_rebuilds(own)
    timm_model = senet.create_model("timm:resnet18", num_classes=0)
    assert timm_model(x).shape == (2, 512)
    timm_model.reset_classifier(7)
    assert timm_model(x).shape == (2, 7) and timm_model.model_config["num_classes"] == 7
    check_rebuilds(timm_model)


def test_rgb_weights_for_grayscale_data_name_the_channels_and_the_fix(tmp_path, capsys):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")  # ImageNet's: 3 channels
    model = senet.create_model("resnet18", num_classes=10, in_chans=1)
    with pytest.raises(ValueError, match=r"the weights' stem \(stem\.conv1\.weight\) takes 3 input channels, the "
                       r"data has 1; senet does not adapt a stem to other channels: train on RGB images"):  # fmt: skip
        load_init(model, resolve_init(str(tmp_path / "resnet18.pth"), "resnet18"), [str(i) for i in range(10)])
    gray = senet.create_model("resnet18", num_classes=10, in_chans=1)
    torch.save(gray.state_dict(), tmp_path / "gray.pth")
    with pytest.raises(ValueError, match=r"takes 1 input channel, the data has 3; .*--in-chans 1"):
        load_init(senet.create_model("resnet18", num_classes=10), resolve_init(str(tmp_path / "gray.pth"), "resnet18"),
                  [str(i) for i in range(10)])  # fmt: skip
    args = ["train", "--model", "resnet18", "--dataset", "synthetic", "--in-chans", "1", "--image-size", "32",
            "--train-subset", "32", "--test-subset", "8", "--batch-size", "16", "--epochs", "1",
            "--out-dir", str(tmp_path / "runs"), "--name", "x", "--init", str(tmp_path / "resnet18.pth")]  # fmt: skip
    err = _fails(capsys, *args)
    assert "takes 3 input channels, the data has 1" in err and "fit resnet18 (" not in err
    assert not (tmp_path / "runs" / "x").exists()


def test_a_head_kept_for_classes_the_source_does_not_name_is_noted(tmp_path):
    torch.save(senet.create_model("resnet20", num_classes=5, in_chans=1).state_dict(), tmp_path / "r20.pth")
    model = senet.create_model("resnet20", num_classes=5, in_chans=1)
    report = load_init(model, resolve_init(str(tmp_path / "r20.pth"), "resnet20"), LAST_FIVE)
    assert not report.new and "  note: the head kept: the source does not name its classes; its 5 outputs are taken " \
        "as the data's 5 classes (Sandal, Shirt, Sneaker, ...) in this order" in report.lines()  # fmt: skip


def test_a_stage_the_model_lacks_is_refused_before_the_init_source_is_read(tmp_path, capsys):
    base = ["train", "--model", "resnet20", "--dataset", "synthetic", "--in-chans", "1", "--image-size", "8",
            "--train-subset", "32", "--test-subset", "8", "--batch-size", "16", "--epochs", "1",
            "--out-dir", str(tmp_path / "runs"), "--name", "x"]  # fmt: skip
    missing = str(tmp_path / "never-written.safetensors")  # reading it would fail: the freeze error comes first
    err = _fails(capsys, *base, "--init", missing, "--freeze", "layer9")
    assert "freeze='layer9': resnet20 has stages layer1..layer3; choose none, backbone, stem or one of" in err
    err = _fails(capsys, *base, "--init", missing, "--model", "se_inception_v3", "--layer-decay", "0.5")
    assert "layer_decay=0.5: se_inception_v3 has no numbered stages" in err
    assert "no weights file" in _fails(capsys, *base, "--init", missing, "--freeze", "layer3")  # a stage it has
    assert not (tmp_path / "runs" / "x").exists()
    # compare: every model's stages, before the source is read and before the first run
    err = _fails(capsys, "compare", "se_resnet20", "se_resnet50", *base[3:-2], "--init", missing, "--freeze", "layer4")
    assert "freeze='layer4': se_resnet20 has stages layer1..layer3" in err
    assert not any((tmp_path / "runs").glob("*"))


def _source(path, mean, seed):
    """A 'pretrained' ResNet-20 weights file for Fashion-MNIST classes 0-4 with its own normalisation ``mean``."""
    torch.manual_seed(seed)
    model = trained_like(senet.create_model("resnet20", num_classes=5, in_chans=1), torch.randn(16, 1, 28, 28))
    meta = model_metadata(model, dataset="fashion-mnist", classes=FIRST_FIVE, image_size=28, mean=[mean],
                          std=[0.4], crop_pct=1.0, interpolation="bilinear")  # fmt: skip
    return save_weights(path, model, meta)


@slow
@needs_fmnist
def test_a_resumed_run_takes_its_start_from_its_folder_not_from_the_init_source(tmp_path, monkeypatch, capsys):
    """A run started from a relative --init path, stopped after 1 of 2 epochs, resumes from another working
    directory, and after its source was replaced by other weights with another normalisation, or deleted: it
    computes exactly what an uninterrupted run computes (weights, normalisation, the retrofit's new SE units)."""
    (tmp_path / "elsewhere").mkdir()
    source = _source(tmp_path / "pre.safetensors", 0.6, seed=1)
    common = dict(model="se_resnet20", classes=[5, 6, 7, 8, 9], train_per_class=10, test_subset=32, batch_size=25,
                  schedule="constant", freeze="layer1", deterministic=True, progress="none",
                  out_dir=str(tmp_path))  # fmt: skip
    train(TrainConfig.from_dict({**common, "init": str(source), "epochs": 2, "name": "ref"}))
    monkeypatch.chdir(tmp_path)
    for name in ("moved", "replaced", "deleted"):
        train(TrainConfig.from_dict({**common, "init": "pre.safetensors", "epochs": 1, "name": name}))
        assert TrainConfig.from_recipe(tmp_path / name / "config.yaml").init == str(source)  # recorded absolute
    monkeypatch.chdir(tmp_path / "elsewhere")  # pre.safetensors is not here
    for name in ("moved", "replaced", "deleted"):
        if name == "replaced":
            _source(source, 0.1, seed=2)
        if name == "deleted":
            source.unlink()
        assert main(["train", "--resume", str(tmp_path / name), "--epochs", "2"]) == 0, capsys.readouterr().err
        assert same_weights(tmp_path / name / LAST_FILE, tmp_path / "ref" / LAST_FILE), name
        assert read_weights(tmp_path / name / LAST_FILE)[1]["mean"] == [0.6]  # the source's as it was at the start
    # the same relative path given again where it was given: the same run (a study's cache of runs)
    monkeypatch.chdir(tmp_path)
    again = train(TrainConfig.from_dict({**common, "init": "pre.safetensors", "epochs": 2, "name": "moved"}),
                  resume="auto")  # fmt: skip
    assert again.config.init == str(source)


def test_pickles_that_are_not_state_dicts_are_refused_naming_the_file_and_what_it_holds(tmp_path, capsys):
    files = {"list.pth": ([1, 2, 3], "holds a list"), "tensor.pth": (torch.zeros(3), "holds a Tensor"),
             "intkey.pth": ({1: torch.zeros(3)}, "keyed by int")}  # fmt: skip
    base = ["train", "--model", "resnet20", "--dataset", "synthetic", "--in-chans", "1", "--image-size", "8",
            "--train-subset", "32", "--test-subset", "8", "--batch-size", "16", "--epochs", "1",
            "--out-dir", str(tmp_path / "runs"), "--name", "x"]  # fmt: skip
    for name, (obj, what) in files.items():
        path = str(tmp_path / name)
        torch.save(obj, path)
        with pytest.raises(ValueError, match=f"{re.escape(repr(path))} .*{what}.*not a state dict"):
            W.read_state(path)
        with pytest.raises(ValueError, match=f"{what}.*not a state dict"):
            resolve_init(path, "resnet20")
        assert what in _fails(capsys, *base, "--init", path)
        out = str(tmp_path / "x.safetensors")
        assert what in _fails(capsys, "convert", path, "--model", "resnet20", "--out", out)
    assert not (tmp_path / "runs" / "x").exists() and not (tmp_path / "x.safetensors").exists()


def test_torchvision_models_record_torchvisions_preprocessing_which_timm_reads_as_senet_does():
    from timm.data import resolve_data_config

    from senet.data.transforms import Preprocess, image_transforms

    model = senet.create_model("torchvision:resnet18", num_classes=10)
    pre = Preprocess.from_model(model)
    assert pre == Preprocess(input_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875,
                             interpolation="bilinear")  # fmt: skip
    resize, crop = image_transforms(pre, train=False).transforms
    tv = torchvision.models.ResNet18_Weights.DEFAULT.transforms()  # torchvision's own: 256, then 224, bilinear
    assert (resize.size, crop.size[0], resize.interpolation) == (tv.resize_size, tv.crop_size[0], tv.interpolation)
    timm_cfg = resolve_data_config(model=model)  # timm reads the same, not its bicubic default
    assert timm_cfg["interpolation"] == "bilinear" and timm_cfg["crop_pct"] == 0.875
    assert timm_cfg["input_size"] == (3, 224, 224) and timm_cfg["mean"] == pre.mean and timm_cfg["std"] == pre.std
    with torch.device("meta"):  # DEFAULT weights for another size than the model as built (SWAG's 518): its own
        vit = senet.create_model("torchvision:vit_h_14")
    assert Preprocess.from_model(vit).input_size == vit.image_size == 224
    assert vit(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 1000)


@slow
def test_a_safetensors_file_without_metadata_gets_the_hint_its_pth_twin_gets(tmp_path):
    from safetensors.torch import save_file

    deep = senet.create_model("resnet56", num_classes=5, in_chans=1)
    torch.save(deep.state_dict(), tmp_path / "r56.pth")
    save_file(deep.state_dict(), tmp_path / "r56.safetensors")  # sorted names: layer1.0.conv1.weight comes first
    model = senet.create_model("resnet20", num_classes=5, in_chans=1)
    hints = []
    for suffix in ("pth", "safetensors"):
        with pytest.raises(ValueError, match=r"; they fit resnet56 \(--model NAME; se_resnet56 as a retrofit\)$") as e:
            load_init(model, resolve_init(str(tmp_path / f"r56.{suffix}"), "resnet20"), FIRST_FIVE)
        hints.append(str(e.value).partition("; they fit")[2])
    assert hints[0] == hints[1]


def test_default_weights_for_a_library_model_say_there_are_none(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"library models \(torchvision:/timm:\) have no published senet weights"):
        resolve_init("DEFAULT", "torchvision:resnet18")
    err = _fails(capsys, "train", "--model", "torchvision:resnet18", "--init", "DEFAULT", "--dataset", "synthetic",
                 "--image-size", "8", "--train-subset", "32", "--test-subset", "8", "--batch-size", "16",
                 "--epochs", "1", "--out-dir", str(tmp_path / "runs"), "--name", "x")  # fmt: skip
    assert "have no published senet weights; give a weights file or a run folder" in err and "unknown model" not in err
    assert not (tmp_path / "runs" / "x").exists()


def test_hints_name_the_add_se_calls_and_the_se_twin_of_the_weights(tmp_path, capsys):
    calls = [{"r": 16}]
    tv_se = senet.create_model("torchvision:resnet18", num_classes=5, add_se=calls)
    folder = tmp_path / "tv-se"
    save_weights(folder / LAST_FILE, tv_se, model_metadata(tv_se, dataset="synthetic", classes=FIRST_FIVE,
                 image_size=32, mean=[0.5] * 3, std=[0.25] * 3, crop_pct=1.0, interpolation="bilinear"))  # fmt: skip
    recorded = json.dumps(tv_se.model_config["add_se"], sort_keys=True)  # the calls in full, every argument
    assert '"r": 16' in recorded
    hint = re.escape(f"; the weights are torchvision:resnet18 with add_se {recorded}'s: train --model "
                     f"torchvision:resnet18 --add-se '{recorded}'") + "$"  # fmt: skip
    for name in ("se_resnet18", "torchvision:resnet18"):  # another network; the same one without add_se
        with pytest.raises(ValueError, match=hint):
            load_init(senet.create_model(name, num_classes=5), resolve_init(str(folder), name), FIRST_FIVE)
    advised = senet.create_model("torchvision:resnet18", num_classes=5, add_se=json.loads(recorded))
    assert not load_init(advised, resolve_init(str(folder), "torchvision:resnet18"), FIRST_FIVE).new  # it fits
    err = _fails(capsys, "train", "--model", "se_resnet18", "--init", str(folder), "--dataset", "synthetic",
                 "--image-size", "32", "--train-subset", "32", "--test-subset", "8", "--batch-size", "16",
                 "--epochs", "1", "--out-dir", str(tmp_path / "runs"), "--name", "x")  # fmt: skip
    assert f"--model torchvision:resnet18 --add-se '{recorded}'" in err
    # an SE network's weights into its plain twin: not a retrofit, the SE twin named
    se = senet.create_model("se_resnet20", num_classes=5, in_chans=1)
    weights_file(tmp_path / "se20.safetensors", se, FIRST_FIVE)
    plain = senet.create_model("resnet20", num_classes=5, in_chans=1)
    with pytest.raises(ValueError, match=r"; the weights are se_resnet20's: train --model se_resnet20$"):
        load_init(plain, resolve_init(str(tmp_path / "se20.safetensors"), "resnet20"), FIRST_FIVE)


def test_pretrained_takes_a_bool_and_false_with_weights_is_refused():
    with pytest.raises(TypeError, match=r"pretrained='yes' must be True or False"):
        senet.create_model("resnet20", pretrained="yes")
    with pytest.raises(ValueError, match=r"pretrained=False contradicts weights='DEFAULT': drop one"):
        senet.create_model("resnet18", pretrained=False, weights="DEFAULT")  # refused before any download
    assert senet.create_model("resnet20", pretrained=False).num_classes == 10


def test_a_headless_source_is_said_to_have_no_head(tmp_path):
    torch.save(senet.create_model("resnet20", num_classes=0, in_chans=1).state_dict(), tmp_path / "features.pth")
    model = senet.create_model("resnet20", num_classes=5, in_chans=1)
    report = load_init(model, resolve_init(str(tmp_path / "features.pth"), "resnet20"), FIRST_FIVE)
    assert report.new["fc.weight"] == "a new head: the source has none (its features only), the data 5 classes"
    assert "None" not in "\n".join(report.lines())


def test_a_run_from_an_init_source_without_its_init_json_is_not_resumed(tmp_path, plain_run, capsys):
    args = ["--model", "resnet20", "--dataset", "synthetic", "--in-chans", "1", "--image-size", "8",
            "--train-subset", "32", "--test-subset", "8", "--batch-size", "16", "--out-dir", str(tmp_path / "runs"),
            "--name", "x", "--init", str(plain_run[0])]  # fmt: skip
    assert main(["train", *args, "--epochs", "1"]) == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "x"
    (run / "init.json").unlink()
    capsys.readouterr()
    err = _fails(capsys, "train", "--resume", str(run), "--epochs", "2")
    assert "init.json is missing, so the run's record is incomplete" in err and "start the run again" in err
