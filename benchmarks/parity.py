"""Every reference model senet converts weights from, against the converted senet model: max |difference| of the
outputs, relative to the output's scale, in float64 and in float32 (docs/interop.md, the parity table).

Each reference is built by timm, torchvision or Cadene's pretrainedmodels with random weights and the BN state of
tests/_interop.py (plus every bias moved, so that a bias before a BN matters), its state dict converted by
`senet.load_weights` with the layout recognised from the names, and both run on the same two random inputs in eval
mode: in float64 (the weights converted in float64) and in float32 (converted in float32, as a user would). Run
under the shared CPU lock:

    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/parity.py

Prints the table and writes benchmarks/results/parity.json.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import timm
import torch
import torchvision
from pretrainedmodels.models.bninception import BNInception
from pretrainedmodels.models.inceptionresnetv2 import InceptionResNetV2

import senet
import senet.weights as W
from senet.files import atomic_write_text

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _interop import trained_like  # the tests' random BN state


def _timm(name: str):
    return lambda: timm.create_model(name)


# reference, builder, input side, senet model, whether the reference reads BGR (Caffe's BN-Inception)
REFERENCES = [
    ("timm legacy_seresnet18", _timm("legacy_seresnet18"), 64, "se_resnet18", False),
    ("timm legacy_seresnet50", _timm("legacy_seresnet50"), 64, "se_resnet50", False),
    ("timm legacy_seresnext50_32x4d", _timm("legacy_seresnext50_32x4d"), 64, "se_resnext50_32x4d", False),
    ("timm legacy_senet154", _timm("legacy_senet154"), 64, "senet154", False),
    ("timm seresnet50", _timm("seresnet50"), 64, "se_resnet50", False),
    ("timm seresnext50_32x4d", _timm("seresnext50_32x4d"), 64, "se_resnext50_32x4d", False),
    ("torchvision resnet50", torchvision.models.resnet50, 64, "resnet50", False),
    ("torchvision resnext50_32x4d", torchvision.models.resnext50_32x4d, 64, "resnext50_32x4d", False),
    ("torchvision inception_v3", lambda: torchvision.models.inception_v3(init_weights=False), 299, "inception_v3",
     False),
    ("timm inception_v3", _timm("inception_v3"), 299, "inception_v3", False),
    ("timm inception_resnet_v2", _timm("inception_resnet_v2"), 299, "inception_resnet_v2", False),
    ("pretrainedmodels inceptionresnetv2", lambda: InceptionResNetV2(num_classes=1000), 299, "inception_resnet_v2",
     False),
    ("torchvision vgg16_bn", torchvision.models.vgg16_bn, 224, "vgg16_bn", False),
    ("timm vgg16_bn", _timm("vgg16_bn"), 256, "vgg16_bn", False),
    ("pretrainedmodels bninception", lambda: BNInception(num_classes=1000), 224, "bn_inception", True),
    ("timm mobilenetv1_100", _timm("mobilenetv1_100"), 224, "mobilenet", False),
]  # fmt: skip


def _reference(build, side: int) -> torch.nn.Module:
    calibrate = side if side == 299 else min(side, 224)  # Inception-v3's auxiliary head needs its full input
    ref = trained_like(build(), torch.randn(3, 3, calibrate, calibrate))
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.add_(torch.randn_like(m.bias), alpha=0.1)
    return ref.eval()


def _error(ref: torch.nn.Module, name: str, x: torch.Tensor, bgr: bool) -> tuple[float, float, dict]:
    state = ref.state_dict()
    options = W.model_options(name, W.detect_layout(state), state)
    model = W.load_weights(senet.create_model(name, **options).to(x.dtype), state).eval()
    with torch.no_grad():
        expected, got = ref(x.flip(1) if bgr else x), model(x)
    scale = max(1.0, float(expected.abs().max()))
    return float((got - expected).abs().max()) / scale, scale, options


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rows = []
    print("| reference | senet model, options | input | float64 | float32 | output scale |")
    print("|---|---|---|---|---|---|")
    for label, build, side, name, bgr in REFERENCES:
        ref = _reference(build, side)
        x = torch.rand(2, 3, side, side) * 4 - 2
        f32, scale, options = _error(ref, name, x, bgr)
        f64, _, _ = _error(ref.double(), name, x.double(), bgr)
        rows.append({"reference": label, "model": name, "options": options, "input": side, "float64": f64,
                     "float32": f32, "scale": scale})  # fmt: skip
        shown = ", ".join(f"`{k}={v!r}`" for k, v in options.items())
        print(
            f"| {label} | `{name}`{', ' + shown if shown else ''} | {side} | {f64:.1e} | {f32:.1e} | {scale:.3g} |",
            flush=True,
        )
    machine = {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "timm": timm.__version__,
               "torchvision": torchvision.__version__, "platform": platform.platform(),
               "date": time.strftime("%Y-%m-%d", time.gmtime())}  # fmt: skip
    out = Path(__file__).parent / "results" / "parity.json"
    out.parent.mkdir(exist_ok=True)
    atomic_write_text(out, json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
