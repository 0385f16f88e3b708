#!/usr/bin/env bash
# The package as a user gets it: build the wheel, install it with the onnx extra into a fresh virtualenv outside the
# checkout, and from a folder that holds no senet source train a few steps with a recipe that ships in the package,
# evaluate the run and export it to ONNX. Usage: scripts/wheel_smoke.sh PYTHON (the interpreter that builds the wheel).
set -euo pipefail
python=${1:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/senet-wheel-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$python" -m pip wheel -q --no-deps -w "$work/dist" "$repo"
wheel=$(ls "$work"/dist/senet-*.whl)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel[onnx]"

cd "$work"  # no senet source and no recipes/ here: everything comes from the installed wheel
senet=$work/venv/bin/senet
"$senet" --version
"$senet" train --recipe fmnist-fast --epochs 1 --train-subset 256 --test-subset 128 --batch-size 64 \
    --progress none --out-dir runs --name smoke
"$senet" eval runs/smoke --test-subset 128 --json runs/eval.json
"$senet" export runs/smoke --out runs/smoke.onnx
"$work/venv/bin/python" - <<'PY'
import json

import numpy as np
import onnxruntime as ort

meta = json.loads(ort.InferenceSession("runs/smoke.onnx").get_modelmeta().custom_metadata_map["senet"])
assert meta["input_size"] == [1, 28, 28], meta["input_size"]  # the size the run was trained at
out = ort.InferenceSession("runs/smoke.onnx").run(None, {"input": np.zeros((2, 1, 28, 28), np.float32)})[0]
assert out.shape == (2, 10)
print("wheel smoke test: train, eval, export from the installed wheel:", json.load(open("runs/eval.json"))["top1"])
PY
