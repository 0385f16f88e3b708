"""Weights from the layouts people hold, and the published weights of the paper's models.

The paper's SE models were released as Caffe models (paper §6.1, ILSVRC 2017); most people hold them in one of
these PyTorch layouts, each of which `load_weights` converts into senet's models:

* ``"caffe"``: the widely used PyTorch port of the released Caffe models (Cadene's ``pretrainedmodels``), which
  timm keeps as ``legacy_seresnet*`` / ``legacy_seresnext*`` / ``legacy_senet154``: ``layer0.{conv1,bn1}``
  (SENet-154: ``conv1..3``, ``bn1..3``), ``layerN.M.se_module.{fc1,fc2}`` as 1×1 convolutions, ``last_linear``.
  Loads into senet's ``layout="original"`` (stride on the first 1×1 of SE-ResNet bottlenecks, ceil-mode pool).
* ``"timm"``: timm's ``seresnet*`` / ``seresnext*``: torchvision's names with ``layerN.M.se.{fc1,fc2}`` as 1×1
  convolutions; loads into ``layout="v1.5"`` (timm rounds C/r to a multiple of 8: ``se_rounding="round8"``).
* ``"torchvision"``: torchvision's ``resnet*`` / ``resnext*``, loaded into senet's plain twins, ``layout="v1.5"``.
* ``"senet"``: senet's own names (a safetensors file written by senet).

Nothing is dropped silently: a key of the file that has no place in the model, a weight the file lacks, or a shape
that differs is reported by name (`ConversionError`). The only entries filled in are BatchNorm's
``num_batches_tracked`` counters, which the old Caffe-port files predate and which hold no weights.

`KNOWN_WEIGHTS` lists the published ImageNet weights with their URLs; ``create_model(name, weights="DEFAULT")``
downloads them through torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), checks the SHA-256 prefix that the file
name carries (torch.hub's convention), converts them and records their input normalisation in
``model.weights_meta``. The files are pickles: they are read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import inspect
import os
import re
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from .io import _looks_like_pickle, read_weights, safe_torch_load
from .models import create_model, get_entry, list_models
from .models._base import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "KNOWN_WEIGHTS",
    "LAYOUTS",
    "ConversionError",
    "KnownWeights",
    "convert_state_dict",
    "detect_layout",
    "fetch",
    "get_weights",
    "list_weights",
    "load_weights",
    "model_options",
    "pretrained",
    "read_state",
]

LAYOUTS = ("senet", "caffe", "timm", "torchvision")
# The senet `layout` option a model needs to compute what the source's code computes (see models/resnet.py).
MODEL_LAYOUT = {"caffe": "original", "timm": "v1.5", "torchvision": "v1.5"}


class ConversionError(ValueError):
    """Weights that do not fit a model; ``missing``, ``unexpected`` and ``mismatched`` list the keys by name."""

    def __init__(self, what: str, missing: list[str], unexpected: list[str], mismatched: list[str], hint: str = ""):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        for label, keys in (("missing from the file", missing), ("not in the model", unexpected),
                            ("shape differs", mismatched)):  # fmt: skip
            if keys:
                more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:8])}{more}")
        super().__init__(f"{what}: {'; '.join(parts)}{hint}")


# ---------------------------------------------------------------------------------------------------------------------
# Converting state dicts


def _rename(key: str, layout: str) -> str:
    """senet's name for ``key`` of a ``layout`` state dict."""
    if layout == "caffe":
        key = re.sub(r"^layer0\.", "stem.", key)  # layer0.conv1 → stem.conv1 (SENet-154: conv1..3)
        key = key.replace(".se_module.", ".se.")
        return re.sub(r"^last_linear\.", "fc.", key)
    if layout in ("timm", "torchvision"):
        return re.sub(r"^(conv1|bn1)\.", r"stem.\1.", key)  # the stem's conv and BN sit at the top level
    return key


def detect_layout(keys: Mapping[str, Any] | list[str]) -> str | None:
    """The layout whose names ``keys`` use, or None if none fits."""
    keys = list(keys)
    if any(k.startswith("stem.") for k in keys):
        return "senet"
    if any(k.startswith(("layer0.", "last_linear.")) or ".se_module." in k for k in keys):
        return "caffe"
    if "conv1.weight" in keys:
        return "timm" if any(".se.fc1." in k for k in keys) else "torchvision"
    return None


def _unwrap(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a checkpoint: a bare state dict, or one under "state_dict" / "model", minus DataParallel's
    "module." prefix."""
    for key in ("state_dict", "model"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"the checkpoint holds entries that are not tensors ({', '.join(map(str, bad[:5]))}); "
                         "pass its state dict of weights")  # fmt: skip
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _fits_as_linear(src: torch.Size, dst: torch.Size) -> bool:
    """An SE FC held as a 1×1 convolution (C', C, 1, 1) and as a linear layer (C', C) are the same weights."""
    return tuple(src[2:]) in ((1, 1), ()) and tuple(dst[2:]) in ((1, 1), ()) and src[:2] == dst[:2]


def convert_state_dict(
    state: Mapping[str, Any], model: nn.Module, layout: str = "auto", *, skip: tuple[str, ...] = ()
) -> dict[str, Tensor]:
    """``state`` (in ``layout``) as a complete state dict of ``model``.

    Args:
        layout: one of `LAYOUTS`, or ``"auto"`` to recognise it from the key names.
        skip: prefixes of senet keys left as the model has them and dropped from ``state``, e.g. ``("fc.",)`` to
            train a new classifier on pretrained features.

    Raises:
        ConversionError: keys missing, unexpected or of another shape, all named.
    """
    tensors = _unwrap(state)
    if layout == "auto":
        layout = detect_layout(tensors) or ""
        if not layout:
            raise ValueError(f"cannot tell the layout of weights starting {list(tensors)[:3]}; pass layout= "
                             f"one of {LAYOUTS}")  # fmt: skip
    elif layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS} (or 'auto')")
    _check_same_function(tensors, layout)
    target = model.state_dict()
    out: dict[str, Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in tensors.items():
        name = _rename(key, layout)
        if name.startswith(skip):
            continue
        if name not in target:
            unexpected.append(key if name == key else f"{key} (as {name})")
            continue
        want = target[name].shape
        if value.shape != want:
            if ".se." in name and name.endswith(".weight") and _fits_as_linear(value.shape, want):
                value = value.reshape(want)
            else:
                mismatched.append(f"{name} {tuple(value.shape)} in the file, {tuple(want)} in the model")
                continue
        out[name] = value.to(target[name].dtype)
    missing = []
    for name, value in target.items():
        if name in out:
            continue
        if name.endswith("num_batches_tracked") or name.startswith(skip):
            out[name] = value  # a counter, not a weight; or left as initialised on purpose
        else:
            missing.append(name)
    if missing or unexpected or mismatched:
        found = detect_layout(tensors)
        hint = f" (the keys look like layout={found!r}, not {layout!r})" if found not in (None, layout) else ""
        if any(".se." in m for m in mismatched) and layout == "timm":
            hint += " (timm rounds C/r to a multiple of 8: build the model with se_rounding='round8')"
        name = getattr(model, "model_name", "") or type(model).__name__
        raise ConversionError(f"{layout} weights do not fit {name}", missing, unexpected, mismatched, hint)
    return out


def _check_same_function(tensors: Mapping[str, Tensor], layout: str) -> None:
    """Refuse weights whose source network computes another function than any senet model with the same tensors.

    The Caffe-port basic blocks (timm's ``legacy_seresnet18`` / ``legacy_seresnet34``) apply a ReLU to the branch
    before SE (conv-BN-ReLU-conv-BN-ReLU, SE, addition, ReLU); the paper's block, which senet builds, rescales the
    BN output itself. Every tensor has the same shape in both, so loading would succeed and compute something else.
    """
    basic = any(re.match(r"layer[1-4]\.\d+\.conv2\.weight$", k) for k in tensors) and not any(
        re.match(r"layer[1-4]\.\d+\.conv3\.weight$", k) for k in tensors
    )
    if layout == "caffe" and basic:
        raise ValueError(
            "these are Caffe-port SE-ResNet-18/34 weights (timm's legacy_seresnet18/34), whose basic blocks apply a "
            "ReLU before SE; senet's se_resnet18/34 follow the paper (SE on the last BN's output), so they would "
            "compute a different function. Use timm's legacy_seresnet18/34 for these weights"
        )


def _check_model_layout(model: nn.Module, layout: str) -> None:
    """Raise unless ``model`` was built with the senet ``layout`` option that ``layout`` weights compute with.

    Strides and pooling differ between the layouts while every shape is the same, so loading would succeed and
    silently compute another function.
    """
    need = MODEL_LAYOUT.get(layout)
    config = getattr(model, "model_config", None)
    if need is None or config is None:
        return
    entry = get_entry(config["name"])
    if "layout" not in entry.arch_options:
        return
    have = config["options"].get("layout", inspect.signature(entry.build).parameters["layout"].default)
    if have != need:
        raise ValueError(
            f"{layout} weights compute with senet's layout={need!r} (strides and pooling), but this "
            f"{config['name']} has layout={have!r}; build it with create_model({config['name']!r}, layout={need!r})"
        )


def read_state(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a ``.pth`` file (read with ``weights_only=True``), a safetensors file or a checkpoint dict."""
    if isinstance(source, Mapping):
        return _unwrap(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}")
    if _looks_like_pickle(path):
        return _unwrap(safe_torch_load(path))  # refuses anything that would run code
    return read_weights(path)[0]  # safetensors; a clear error if truncated or corrupt


def model_options(model: str, layout: str) -> dict[str, Any]:
    """The ``create_model`` options with which ``model`` computes what the code of ``layout`` weights computes."""
    entry = get_entry(model)
    options: dict[str, Any] = {}
    if layout in MODEL_LAYOUT and "layout" in entry.arch_options:
        options["layout"] = MODEL_LAYOUT[layout]  # strides and pooling
    if layout == "timm" and entry.has_se:
        options["se_rounding"] = "round8"  # timm's reduced width: C/r to a multiple of 8
    return options


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    layout: str = "auto",
    *,
    skip: tuple[str, ...] = (),
) -> nn.Module:
    """Load weights of another layout (see the module docstring) into ``model``, strictly; returns ``model``.

    Args:
        source: a ``.pth`` file (read with ``weights_only=True``), a safetensors file, or a state dict.
        layout: ``"caffe"``, ``"timm"``, ``"torchvision"``, ``"senet"`` or ``"auto"`` (recognised from the names).
        skip: senet key prefixes to leave as initialised, e.g. ``("fc.",)`` for a new classifier.

    Raises:
        ConversionError: keys missing, unexpected or of another shape, all named.
        ValueError: the file is not a plain weights file, or the model's layout option does not fit the weights.
    """
    state = read_state(source)
    if layout == "auto":
        layout = detect_layout(state) or "auto"
    _check_model_layout(model, layout)
    model.load_state_dict(convert_state_dict(state, model, layout, skip=skip), strict=True)
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Published weights


@dataclass(frozen=True)
class KnownWeights:
    """Published ImageNet-1k weights of one senet model, with the facts needed to use them.

    ``options`` are the ``create_model`` options the weights need (`model_options`); ``top1`` the ImageNet top-1
    accuracy (%) as the publisher reports it (None where we have not found a figure); the rest is the evaluation
    preprocessing: resize the shorter side to ``input_size / crop_pct`` with ``interpolation``, centre-crop
    ``input_size``, scale to [0, 1] and normalise with ``mean`` and ``std`` (RGB).
    """

    model: str
    tag: str
    url: str
    layout: str
    source: str
    top1: float | None = None
    num_classes: int = 1000
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def options(self) -> dict[str, Any]:
        return model_options(self.model, self.layout)

    @property
    def filename(self) -> str:
        return os.path.basename(urlparse(self.url).path)

    @property
    def hash_prefix(self) -> str:
        """The leading hex digits of the file's SHA-256, carried in its name (torch.hub's convention)."""
        found = re.search(r"-([a-f0-9]{6,})\.", self.filename)
        if not found:
            raise ValueError(f"{self.filename!r} carries no SHA-256 prefix (name-<hex>.pth); cannot check it")
        return found.group(1)

    def metadata(self) -> dict[str, Any]:
        """What a user of the weights needs: normalisation, evaluation size, where they come from."""
        return {
            "weights": self.name, "url": self.url, "sha256_prefix": self.hash_prefix, "source": self.source,
            "top1": self.top1, "mean": list(self.mean), "std": list(self.std), "input_size": self.input_size,
            "crop_pct": self.crop_pct, "interpolation": self.interpolation,
        }  # fmt: skip


_CAFFE = "authors' Caffe model, PyTorch port of Cadene/pretrained-models.pytorch (re-hosted by timm)"
_TIMM = "timm (Ross Wightman)"
_TV = "torchvision"
_REL = "https://github.com/rwightman/pytorch-image-models/releases/download"
_HF_REL = "https://github.com/huggingface/pytorch-image-models/releases/download"
_TVD = "https://download.pytorch.org/models"
_TV2 = {"crop_pct": 224 / 232}  # torchvision's *_V2 weights: resize 232, crop 224

# URLs and names from timm 1.0 (models/senet.py, models/resnet.py) and torchvision 0.29 (models/resnet.py); the
# Caffe-port files are Cadene's (data.lip6.fr/cadene/pretrainedmodels/se_resnet50-ce0d4300.pth, ...), of which
# timm's copies of se_resnet50/101/152 are the same files (same hash). Accuracies: Cadene's README (its own
# evaluation of the port), torchvision's weight tables. The first entry of a model is its DEFAULT: the paper's own
# weights for SE models, torchvision's classic recipe (IMAGENET1K_V1, comparable to the paper's) for plain twins.
# Not listed: timm's legacy_seresnet18/34 weights, whose blocks apply a ReLU before SE (a different function
# from the paper's block, which senet builds).
#                model                  tag                 url                                                  layout
KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    KnownWeights("se_resnet50", "caffe_in1k", f"{_REL}/v0.1-cadene/se_resnet50-ce0d4300.pth", "caffe", _CAFFE,
                 top1=77.636),
    KnownWeights("se_resnet50", "timm_a1_in1k", f"{_HF_REL}/v0.1-rsb-weights/seresnet50_a1_0-ffa00869.pth", "timm",
                 _TIMM, crop_pct=0.95, interpolation="bicubic"),
    KnownWeights("se_resnet50", "timm_ra2_in1k", f"{_REL}/v0.1-weights/seresnet50_ra_224-8efdb4bb.pth", "timm",
                 _TIMM, interpolation="bicubic"),
    KnownWeights("se_resnet101", "caffe_in1k", f"{_REL}/v0.1-cadene/se_resnet101-7e38fcc6.pth", "caffe", _CAFFE,
                 top1=78.396),
    KnownWeights("se_resnet152", "caffe_in1k", f"{_REL}/v0.1-cadene/se_resnet152-d17c99b7.pth", "caffe", _CAFFE,
                 top1=78.658),
    KnownWeights("se_resnext50_32x4d", "caffe_in1k", f"{_REL}/v0.1-weights/legacy_se_resnext50_32x4d-f3651bad.pth",
                 "caffe", _CAFFE, top1=79.076),
    KnownWeights("se_resnext50_32x4d", "timm_racm_in1k", f"{_REL}/v0.1-weights/seresnext50_32x4d_racm-a304a460.pth",
                 "timm", _TIMM, interpolation="bicubic"),
    KnownWeights("se_resnext101_32x4d", "caffe_in1k",
                 f"{_REL}/v0.1-weights/legacy_se_resnext101_32x4d-37725eac.pth", "caffe", _CAFFE, top1=80.236),
    KnownWeights("senet154", "caffe_in1k", f"{_REL}/v0.1-weights/legacy_senet154-e9eb9fe6.pth", "caffe", _CAFFE,
                 top1=81.304),
    KnownWeights("resnet18", "tv_in1k", f"{_TVD}/resnet18-f37072fd.pth", "torchvision", _TV, top1=69.758),
    KnownWeights("resnet34", "tv_in1k", f"{_TVD}/resnet34-b627a593.pth", "torchvision", _TV, top1=73.314),
    KnownWeights("resnet50", "tv_in1k", f"{_TVD}/resnet50-0676ba61.pth", "torchvision", _TV, top1=76.130),
    KnownWeights("resnet50", "tv2_in1k", f"{_TVD}/resnet50-11ad3fa6.pth", "torchvision", _TV, top1=80.858,
                 **_TV2),
    KnownWeights("resnet101", "tv_in1k", f"{_TVD}/resnet101-63fe2227.pth", "torchvision", _TV, top1=77.374),
    KnownWeights("resnet101", "tv2_in1k", f"{_TVD}/resnet101-cd907fc2.pth", "torchvision", _TV, top1=81.886,
                 **_TV2),
    KnownWeights("resnet152", "tv_in1k", f"{_TVD}/resnet152-394f9c45.pth", "torchvision", _TV, top1=78.312),
    KnownWeights("resnet152", "tv2_in1k", f"{_TVD}/resnet152-f82ba261.pth", "torchvision", _TV, top1=82.284,
                 **_TV2),
    KnownWeights("resnext50_32x4d", "tv_in1k", f"{_TVD}/resnext50_32x4d-7cdf4587.pth", "torchvision", _TV,
                 top1=77.618),
    KnownWeights("resnext50_32x4d", "tv2_in1k", f"{_TVD}/resnext50_32x4d-1a0047aa.pth", "torchvision", _TV,
                 top1=81.198, **_TV2),
)  # fmt: skip


def list_weights(model: str = "*") -> list[str]:
    """Names (``model.tag``) of the known weights of models matching ``model`` (a shell pattern)."""
    names = set(list_models(model))
    return [w.name for w in KNOWN_WEIGHTS if w.model in names]


def get_weights(model: str, weights: str = "DEFAULT") -> KnownWeights:
    """The known weights ``weights`` of ``model``: ``"DEFAULT"``, a tag (``"caffe_in1k"``) or a full name."""
    get_entry(model)  # unknown names raise with close matches
    mine = [w for w in KNOWN_WEIGHTS if w.model == model]
    if not mine:
        raise ValueError(f"no published weights are known for {model!r}; models with weights: "
                         f"{', '.join(sorted({w.model for w in KNOWN_WEIGHTS}))}")  # fmt: skip
    if weights == "DEFAULT":
        return mine[0]
    for w in mine:
        if weights in (w.tag, w.name):
            return w
    raise ValueError(f"weights={weights!r} are not known for {model!r}; choose 'DEFAULT' or one of "
                     f"{', '.join(w.tag for w in mine)}")  # fmt: skip


def fetch(weights: KnownWeights, *, progress: bool = True) -> Path:
    """The local file of ``weights``: from torch.hub's cache, or downloaded there with its SHA-256 prefix checked.

    Raises:
        ValueError: the download's checksum does not match (the file is discarded).
        ConnectionError: the file could not be downloaded (offline?); the message says where to put a copy.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / weights.filename
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=weights.hash_prefix, progress=progress)
    except RuntimeError as e:
        if "invalid hash value" not in str(e):
            raise
        raise ValueError(f"download of {weights.name} from {weights.url} failed its checksum ({e}); the file was "
                         "discarded. Retry; if it persists, the file at that URL has changed") from None  # fmt: skip
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(
            f"cannot download {weights.name} from {weights.url} ({reason}). Offline? Copy the file (SHA-256 "
            f"starting {weights.hash_prefix}) to {path}, or load a local copy with "
            f"senet.load_weights(model, PATH, layout={weights.layout!r})"
        ) from None
    return path


def pretrained(
    name: str, weights: str = "DEFAULT", *, num_classes: int | None = None, in_chans: int = 3, **options: Any
) -> nn.Module:
    """``create_model(name, weights=...)``: build ``name`` for the known ``weights`` and load them.

    A ``num_classes`` other than the weights' keeps the pretrained features and starts a new classifier (``fc``).
    ``model.weights_meta`` records the weights' normalisation and origin (`KnownWeights.metadata`).
    """
    spec = get_weights(name, weights)
    if in_chans != 3:
        raise ValueError(f"{spec.name} are weights for RGB input; use in_chans=3 (repeat a grey channel 3 times)")
    for key, value in spec.options.items():
        if key in options and options[key] != value:
            raise ValueError(f"{spec.name} need {key}={value!r}; got {key}={options[key]!r}")
    num_classes = spec.num_classes if num_classes is None else num_classes
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, **{**options, **spec.options})
    new_head = model.num_classes != spec.num_classes
    load_weights(model, safe_torch_load(fetch(spec)), spec.layout, skip=("fc.",) if new_head else ())
    model.weights_meta = spec.metadata()
    return model
