"""Export: every registered model through ONNX into onnxruntime, ExportedPrograms and TorchScript re-loaded, each
with a dynamic batch axis and its normalisation recorded; the ``senet export`` command."""

import json

import onnxruntime as ort
import pytest
import torch
import torchvision
from _interop import trained_like
from conftest import one_per_family, slow

import senet
from senet.cli import main
from senet.export import export, read_metadata
from senet.files import save_weights

ALL = senet.list_models()
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)
# One SE model per family, in registration order (the smallest of each family comes first).
PER_FAMILY = list({senet.get_entry(n).family: n for n in reversed(senet.list_models(se=True, sort=False))}.values())


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _model_and_input(name, side=None):
    """``name`` with random BN state, and a batch of 3 (exported at batch 2), by default at its smallest input.

    Random BN statistics, not those of a batch: BN calibrated on random data makes a deep network chaotic (float32
    rounding differences grow to 1e-3 through ResNet-152), which would measure the network, not the export."""
    model = senet.create_model(name, num_classes=10)
    side = side or model.min_size
    return trained_like(model), torch.randn(3, model.in_chans, side, side)


def assert_matches(got, expected, tol):
    """``|got - expected| <= tol`` relative to the output's scale (deep plain nets with random weights reach 1e7)."""
    got = torch.as_tensor(got)
    err = (got - expected).abs().max() / expected.abs().max().clamp(min=1)
    assert err <= tol, f"max difference {err:.2e} of the output's scale (> {tol:.0e})"


@pytest.mark.parametrize("name", one_per_family(ALL))
def test_onnx_matches_pytorch_in_onnxruntime(name, tmp_path):
    """onnxruntime's output is within 1e-4 (of the output's scale) of the exact output, computed in float64; where
    a random deep network amplifies float32 rounding beyond that (PyTorch's own float32 output then misses the exact
    one by more than 1e-4: SE-ResNet-152 by 2e-4 to 5e-4 depending on the CPU), it must be no further from it than
    four times PyTorch's own error: two float32 summation orders land at different distances from the exact result
    (onnxruntime's was 2.2× PyTorch's on an AVX-512 Xeon), while a wrong export misses by the output's own scale."""
    model, x = _model_and_input(name)
    path = export(model, tmp_path / f"{name}.onnx", input_size=model.min_size, mean=MEAN, std=STD)
    session = _session(path)
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0]).double()  # batch 3, exported at 2
    with torch.no_grad():
        expected = model(x).double()
        exact = model.double()(x.double())
    scale = exact.abs().max().clamp(min=1)
    ort_err, own_err = ((got - exact).abs().max() / scale).item(), ((expected - exact).abs().max() / scale).item()
    assert exact.abs().max() > 0.1  # not a degenerate comparison
    assert ort_err <= max(1e-4, 4 * own_err), f"onnxruntime {ort_err:.1e} from exact, PyTorch float32 {own_err:.1e}"
    meta = json.loads(session.get_modelmeta().custom_metadata_map["senet"])
    assert meta["name"] == name and meta["mean"] == list(MEAN) and meta["std"] == list(STD)
    assert meta["input_size"] == [3, model.min_size, model.min_size]


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "se_resnet20" else slow) for n in PER_FAMILY])
def test_exported_program_reloads_and_matches(name, tmp_path):
    model, x = _model_and_input(name)
    path = export(model, tmp_path / "m.pt2", format="exported-program", input_size=model.min_size, mean=MEAN, std=STD)
    extra = {"senet.json": ""}
    program = torch.export.load(path, extra_files=extra)
    with torch.no_grad():
        assert_matches(program.module()(x), model(x), 1e-5)
    assert json.loads(extra["senet.json"])["mean"] == list(MEAN) and read_metadata(path)["name"] == name


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@slow
def test_torchscript_and_dynamo_onnx(tmp_path):
    model, x = _model_and_input("se_resnet20", 32)  # exported at the model's default size, 32
    with torch.no_grad():
        expected = model(x)
    path = export(model, tmp_path / "m.ts", format="torchscript", mean=MEAN, std=STD)
    extra = {"senet.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    assert_matches(scripted(x), expected, 1e-5)
    assert json.loads(extra["senet.json"])["std"] == list(STD) and read_metadata(path)["input_size"] == [3, 32, 32]
    path = export(model, tmp_path / "d.onnx", mean=MEAN, std=STD, dynamo=True)
    got = _session(path).run(None, {"input": x.numpy()})[0]
    assert_matches(got, expected, 1e-4)
    assert read_metadata(path)["name"] == "se_resnet20"


@slow
def test_retrofitted_torchvision_model_exports(tmp_path):
    x = torch.randn(3, 3, 64, 64)
    model = trained_like(senet.add_se(torchvision.models.resnet18(num_classes=10)))
    with torch.no_grad():
        expected = model(x)
    onnx_path = export(model, tmp_path / "r.onnx", input_size=(3, 64, 64), mean=MEAN, std=STD)
    got = _session(onnx_path).run(None, {"input": x.numpy()})[0]
    assert_matches(got, expected, 1e-4)
    assert read_metadata(onnx_path)["name"] == "ResNet"
    pt2 = export(model, tmp_path / "r.pt2", format="exported-program", input_size=64, mean=MEAN, std=STD)
    assert_matches(torch.export.load(pt2).module()(x), expected, 1e-5)


def test_known_weights_normalisation_is_the_default(tmp_path):
    model = senet.create_model("se_resnet20")
    model.weights_meta = {"mean": [0.1] * 3, "std": [0.3] * 3, "input_size": 40, "weights": "x.test"}
    meta = read_metadata(export(model, tmp_path / "m.onnx"))
    assert meta["mean"] == [0.1] * 3 and meta["input_size"] == [3, 40, 40] and meta["weights"] == "x.test"


def test_cli_export(tmp_path, capsys):
    model, x = _model_and_input("se_resnet20", 32)
    weights = save_weights(tmp_path / "w.safetensors", model, {**model.model_config, "mean": MEAN, "std": STD})
    assert main(["export", str(weights)]) == 0
    assert "dynamic N; mean [0.5, 0.45, 0.4]" in capsys.readouterr().out
    got = _session(tmp_path / "w.onnx").run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert_matches(got, model(x), 1e-4)
    bare = save_weights(tmp_path / "bare.safetensors", model, model.model_config)
    assert main(["export", str(bare), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not record its input normalisation; pass --mean and --std" in err and len(err.splitlines()) == 1
    out = tmp_path / "o.ts"
    assert main(["export", str(bare), "--format", "torchscript", "--out", str(out), "--mean", "0", "0", "0",
                 "--std", "1", "1", "1", "--input-size", "16"]) == 0  # fmt: skip
    assert read_metadata(out)["input_size"] == [3, 16, 16]


def test_export_errors(tmp_path):
    model = senet.create_model("resnet20")
    with pytest.raises(ValueError, match="normalisation of resnet20 is unknown: pass mean= and std="):
        export(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="format='tflite' is not one of onnx, exported-program, torchscript"):
        export(model, tmp_path / "m.tflite", format="tflite", mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=r"must end in \.pt2"):
        export(model, tmp_path / "m.ep", format="exported-program", mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="one value per input channel"):
        export(model, tmp_path / "m.onnx", mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match=r"not a senet model: pass input_size=\(C, H, W\)"):
        export(torchvision.models.resnet18(), tmp_path / "m.onnx", mean=MEAN, std=STD)
    assert not list(tmp_path.iterdir())


@slow
@pytest.mark.parametrize("dataset", ["fashion-mnist", "imagefolder"])
def test_export_of_a_run_folder_runs_at_the_size_it_was_trained_at(tmp_path, capsys, dataset):
    """`senet export RUN` (the run folder itself) and the library's ``senet.export(senet.load_model(RUN)[0], ...)``
    write the same ONNX file for the run's own input size (not the model's default, 32), which onnxruntime runs on
    real images prepared as `senet predict` prepares them, matching PyTorch within 1e-4."""
    from PIL import Image
    from test_cli_train import TINY, _image_folder
    from test_data import needs_fmnist

    from senet.data import Preprocess
    from senet.training.evaluation import Inputs, load_images

    if dataset == "fashion-mnist":
        if needs_fmnist.args[0]:
            pytest.skip(needs_fmnist.kwargs["reason"])
        data, side = [], 28  # trained at the files' own size
        _, test, _ = senet.data.load_datasets("fashion-mnist", test_subset=4)
        images = []
        for i in range(3):
            images.append(tmp_path / f"{i}.png")
            Image.fromarray(test.images[i, 0].numpy()).save(images[-1])
    else:
        _image_folder(tmp_path / "imgs", broken=False)
        data, side = ["--dataset", "imagefolder", "--data-dir", str(tmp_path / "imgs"), "--image-size", "48"], 48
        images = sorted((tmp_path / "imgs" / "val").rglob("*.png"))[:3]
    run = tmp_path / "run"
    args = [*TINY, "--batch-size", "4", "--progress", "none", *data, "--out-dir", str(tmp_path), "--name", "run"]
    assert main(["train", *args]) == 0
    assert main(["export", str(run)]) == 0
    assert f"input (N, {1 if dataset == 'fashion-mnist' else 3}, {side}, {side})" in capsys.readouterr().out
    path = run / "last.onnx"
    model, meta = senet.load_model(run)
    library = senet.export(model, tmp_path / "library.onnx")  # no size, mean or std given: the run's own
    pre = Preprocess.from_metadata(meta)
    x = Inputs(torch.device("cpu"), pre.mean, pre.std).prepare(load_images(images, pre, meta["in_chans"]))
    assert x.shape[-2:] == (side, side)
    for exported in (path, library):
        session = _session(exported)
        assert session.get_inputs()[0].shape[1:] == [meta["in_chans"], side, side]
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            assert_matches(got, model.eval()(x), 1e-4)
    assert read_metadata(path)["input_size"][1:] == [side, side]
    assert read_metadata(library) == read_metadata(path)  # one path: the command adds nothing of its own
