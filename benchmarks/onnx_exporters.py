"""Time PyTorch's two ONNX exporters on senet models, and measure senet.export's accuracy on every model.

senet.export uses the TorchScript-based exporter by default; this script is the evidence for that choice
(docs/interop.md). Run under the shared CPU lock:

    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/onnx_exporters.py [MODEL ...]

Prints, for the timed models, one row per exporter (export seconds, max |onnxruntime - PyTorch| relative to the
output scale); then, for every registered model with random BN state as tests/test_export.py sets it, the
distance of onnxruntime's and of PyTorch's float32 outputs from the exact (float64) output. Writes
benchmarks/results/onnx_exporters.json.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

import senet

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _interop import trained_like  # the tests' random BN state

MODELS = ["se_resnet20", "se_resnet50", "senet154"]


def main(names: list[str]) -> None:
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = senet.create_model("resnet20").eval()
        for dynamo in (False, True):  # first calls load and initialise each exporter: not part of the timing
            senet.export(warm, Path(tmp) / "w.onnx", mean=(0.5,) * 3, std=(0.25,) * 3, dynamo=dynamo)
        for name in names:
            model = senet.create_model(name).eval()
            x = torch.randn(3, model.in_chans, model.min_size, model.min_size)
            with torch.no_grad():
                expected = model(x)
            for dynamo in (False, True):
                start = time.perf_counter()
                path = senet.export(model, Path(tmp) / "m.onnx", input_size=model.min_size, mean=(0.5,) * 3,
                                    std=(0.25,) * 3, dynamo=dynamo)  # fmt: skip
                seconds = time.perf_counter() - start
                got = torch.from_numpy(ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0])
                err = float((got - expected).abs().max() / expected.abs().max().clamp(min=1))
                rows.append({"model": name, "exporter": "dynamo" if dynamo else "torchscript", "seconds": seconds,
                             "max_rel_err": err})  # fmt: skip
                print(f"{name:<22} {rows[-1]['exporter']:<12} {seconds:7.2f} s   max rel err {err:.1e}", flush=True)
        accuracy = [_accuracy(name, Path(tmp)) for name in senet.list_models()]
    out = Path(__file__).parent / "results" / "onnx_exporters.json"
    out.parent.mkdir(exist_ok=True)
    machine = {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "onnxruntime": ort.__version__,
               "platform": platform.platform()}  # fmt: skip
    out.write_text(json.dumps({"machine": machine, "timing": rows, "accuracy": accuracy}, indent=2))
    print(f"wrote {out}")


def _accuracy(name: str, tmp: Path) -> dict:
    model = trained_like(senet.create_model(name, num_classes=10))
    x = torch.randn(3, model.in_chans, model.min_size, model.min_size)
    path = senet.export(model, tmp / "a.onnx", input_size=model.min_size, mean=(0.5,) * 3, std=(0.25,) * 3)
    got = torch.from_numpy(ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]).double()
    with torch.no_grad():
        own = model(x).double()
        exact = model.double()(x.double())
    scale = exact.abs().max().clamp(min=1)
    row = {"model": name, "onnxruntime_err": float((got - exact).abs().max() / scale),
           "pytorch_fp32_err": float((own - exact).abs().max() / scale), "scale": float(exact.abs().max())}  # fmt: skip
    print(f"{name:<24} onnxruntime {row['onnxruntime_err']:.1e}   PyTorch fp32 {row['pytorch_fp32_err']:.1e}   "
          f"(of the exact output's scale, {row['scale']:.1e})", flush=True)  # fmt: skip
    return row


if __name__ == "__main__":
    main(sys.argv[1:] or MODELS)
