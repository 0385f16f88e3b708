"""Export a model for deployment: ONNX, a torch.export ExportedProgram, or TorchScript.

Every format gets a dynamic batch axis (height and width are those of the example input) and records, beside the
graph, the JSON metadata that a deployment needs to feed it: the input normalisation (``mean``, ``std``), the
input size and, for senet models, the model name and options. Where it is stored:

* ONNX: the model's ``metadata_props`` under ``"senet"`` (onnxruntime: ``session.get_modelmeta().custom_metadata_map``);
* ExportedProgram (``.pt2``): the archive's extra file ``senet.json`` (``torch.export.load(path, extra_files=...)``);
* TorchScript: the archive's extra file ``senet.json`` (``torch.jit.load(path, _extra_files=...)``).

`read_metadata` reads it back from any of the three. The ONNX file comes from PyTorch's TorchScript-based exporter
(deprecated upstream), which is several times faster than the dynamo-based exporter on these networks and gives
the same outputs (tests check every registered model against onnxruntime); where it cannot express an operator
(VGG's adaptive pooling to 7×7 from a smaller map), the dynamo-based exporter takes over. ``dynamo=True`` always
uses the latter.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .environment import require
from .files import atomic_write
from .models import get_entry
from .validate import MAX_JSON_BYTES, check_normalisation

__all__ = ["FORMATS", "export", "read_metadata"]

FORMATS = ("onnx", "exported-program", "torchscript")
_META = "senet"  # ONNX metadata key
_EXTRA = "senet.json"  # extra file in .pt2 and TorchScript archives
_ONNX_MAX_BYTES = 2**31  # a protobuf message is at most 2 GiB
OPSET = 17  # ONNX opset: every operator senet uses, and runtimes from 2022 on (onnxruntime >= 1.11)


def _input_size(model: nn.Module, input_size: Sequence[int] | int | None) -> tuple[int, int, int]:
    config = getattr(model, "model_config", None)
    if input_size is None:
        if config is None:
            raise ValueError(f"{type(model).__name__} is not a senet model: pass input_size=(C, H, W)")
        # The size the weights were trained or published at (`senet.load_model` and create_model(weights=) record
        # it), else the one the paper measures the model at.
        side = getattr(model, "weights_meta", {}).get("input_size")
        if side is None:
            side = _default_side(model, config["name"])
        side = side[-1] if isinstance(side, (list, tuple)) else side
        return (config["in_chans"], int(side), int(side))
    if isinstance(input_size, int):
        chans = (config or {}).get("in_chans", getattr(model, "in_chans", 3))
        input_size = (chans, input_size, input_size)
    size = tuple(int(v) for v in input_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size={input_size!r} must be (C, H, W) or one side H = W")
    return size


def _default_side(model: nn.Module, name: str) -> int:
    """A registered model's paper size; a ``LIBRARY:NAME`` model's own (timm's ``pretrained_cfg``)."""
    if ":" not in name:
        return get_entry(name).input_size[1]
    own = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    if not own:
        raise ValueError(f"{name} does not say its input size: pass input_size=(C, H, W)")
    return own[-1]


def _metadata(model: nn.Module, size: tuple[int, int, int], mean, std, extra: dict[str, Any]) -> dict[str, Any]:
    known = getattr(model, "weights_meta", {})
    mean = known.get("mean") if mean is None else mean
    std = known.get("std") if std is None else std
    name = getattr(model, "model_name", "") or type(model).__name__
    if mean is None or std is None:
        raise ValueError(f"the input normalisation of {name} is unknown: pass mean= and std= (one value per channel, "
                         f"e.g. ImageNet's (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225))")  # fmt: skip
    check_normalisation(mean, std, size[0])
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    config = getattr(model, "model_config", None) or {"name": name}
    info = {k: v for k, v in known.items() if k not in ("mean", "std", "input_size")}
    io_names = {"input_names": ["input"], "output_names": ["logits"], "dynamic_axes": {"input": [0], "logits": [0]}}
    return {**config, **info, **extra, "mean": mean, "std": std, "input_size": list(size), **io_names}


def export(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    format: str = "onnx",
    input_size: Sequence[int] | int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    metadata: dict[str, Any] | None = None,
    dynamo: bool | None = None,
) -> Path:
    """Write ``model`` (in eval mode) to ``path`` in ``format``, with a dynamic batch axis; returns the path.

    Args:
        format: ``"onnx"``, ``"exported-program"`` (torch.export, ``.pt2``) or ``"torchscript"`` (a trace).
        input_size: (C, H, W) or one side; default: the size the weights were trained at (a model from
            `senet.load_model`: its run's ``image_size``) or published at (``create_model(..., weights=...)``), both
            ``model.weights_meta["input_size"]``; else the size the paper measures the model at (224 for ImageNet
            models, 32 for CIFAR ones).
        mean, std: the input normalisation, one value per channel; default: ``model.weights_meta``'s (set by
            `senet.load_model` and ``create_model(..., weights=...)``). Required where unknown: a deployed model must
            say how to feed it.
        metadata: more JSON-serialisable facts to record (class names, ...).
        dynamo: ONNX only: None (default) uses PyTorch's TorchScript-based exporter and, for a model it cannot
            express, the dynamo-based one; True always the dynamo-based one, False never.

    Raises:
        ValueError: an unknown format, a bad input size, or an unknown normalisation.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if format == "exported-program" and Path(path).suffix != ".pt2":
        raise ValueError(f"an ExportedProgram file must end in .pt2 (torch.export.load requires it); got {str(path)!r}")
    size = _input_size(model, input_size)
    meta = _metadata(model, size, mean, std, metadata or {})
    text = json.dumps(meta, sort_keys=True)
    # Batch 2, not 1: torch.export specialises sizes 0 and 1, which would freeze the batch axis.
    example = torch.randn(2, *size, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The input checks of senet models compare shapes in Python; tracing records them as constants.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")  # the ONNX exporter's notes, not errors
            # The TorchScript-based ONNX exporter is deprecated upstream; chosen for speed, see the module docstring.
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
            data = io.BytesIO()
            if format == "onnx":
                data.write(_onnx(model, example, text, dynamo))
            elif format == "exported-program":
                batch = torch.export.Dim("batch", min=1)
                program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
                torch.export.save(program, data, extra_files={_EXTRA: text})
            else:
                warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")  # deprecated upstream
                torch.jit.save(torch.jit.trace(model, example), data, _extra_files={_EXTRA: text})
    finally:
        model.train(was_training)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data.getvalue()))


def _onnx(model: nn.Module, example: torch.Tensor, text: str, dynamo: bool | None) -> bytes:
    onnx = require("onnx", "onnx", "ONNX export")
    names = {"input_names": ["input"], "output_names": ["logits"]}
    if not dynamo:
        try:
            buffer = io.BytesIO()
            torch.onnx.export(
                model, (example,), buffer, dynamo=False, opset_version=OPSET, do_constant_folding=False,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **names,
            )  # fmt: skip
            proto = onnx.load_model_from_string(buffer.getvalue())
        except torch.onnx.errors.OnnxExporterError:
            if dynamo is False:
                raise
            dynamo = True  # an operator it cannot express (e.g. adaptive pooling to a size that does not divide)
    if dynamo:
        require("onnxscript", "onnx", "ONNX export of this model (torch's dynamo-based exporter)")
        program = torch.onnx.export(
            model, (example,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=max(OPSET, 18), optimize=True, verbose=False, **names,
        )  # fmt: skip
        proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = _META, text
    return proto.SerializeToString()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The senet metadata of an exported file of any of the three formats ({} if it has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {str(path)!r}")
    if zipfile.is_zipfile(path):  # .pt2 and TorchScript archives: <root>/extra/senet.json
        try:
            with zipfile.ZipFile(path) as z:
                found = [i for i in z.infolist() if i.filename.endswith(f"extra/{_EXTRA}")]
                if found and found[0].file_size > MAX_JSON_BYTES:  # the size the archive declares; read no more
                    raise ValueError(f"its {_EXTRA} declares {found[0].file_size:,} bytes")
                text = z.open(found[0]).read(MAX_JSON_BYTES + 1) if found else b"{}"
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise ValueError(f"{str(path)!r} is a damaged ExportedProgram or TorchScript archive ({e})") from None
    else:
        onnx = require("onnx", "onnx", "reading an ONNX file")
        if path.stat().st_size > _ONNX_MAX_BYTES:  # onnx reads the whole file into memory
            raise ValueError(f"{str(path)!r} is larger than an ONNX file can be (2 GiB, protobuf's limit)")
        try:
            proto = onnx.load_model(str(path), load_external_data=False)
        except Exception as e:  # protobuf raises its own DecodeError
            raise ValueError(f"{str(path)!r} is not an ONNX, ExportedProgram or TorchScript file ({e})") from None
        if not proto.ir_version or not proto.graph.node:  # bytes that parse as an empty message
            raise ValueError(f"{str(path)!r} is not an ONNX, ExportedProgram or TorchScript file (no graph)")
        text = next((p.value for p in proto.metadata_props if p.key == _META), "{}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{str(path)!r} holds malformed senet metadata: not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{str(path)!r} holds malformed senet metadata: a JSON {type(meta).__name__}, not an object")
    return meta
