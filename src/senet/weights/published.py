"""The published ImageNet weights of the paper's models and their plain twins: where they are, how to fetch them.

`KNOWN_WEIGHTS` lists each file with its URL, layout (`senet.weights.convert`), reported accuracy and evaluation
preprocessing. `fetch` downloads a file once into torch.hub's cache (``$TORCH_HOME/hub/checkpoints``) and checks the
SHA-256 prefix its name carries (torch.hub's convention). ``senet.create_model(name, weights="DEFAULT")`` builds the
model, fetches, converts and loads them. The files are pickles: they are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..files import download_retrying
from ..models import get_entry, list_models
from .convert import model_options

__all__ = ["KNOWN_WEIGHTS", "KnownWeights", "fetch", "get_weights", "imagenet_classes", "list_weights"]


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
    def classes(self) -> tuple[str, ...] | None:
        """The names of the classes the weights' outputs stand for (ImageNet-1k's), None where unknown."""
        return imagenet_classes() if self.num_classes == 1000 else None

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


def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the order of the outputs of every ImageNet-1k classifier (the sorted
    WordNet ids of ILSVRC 2012), as torchvision's weights metadata lists them."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


_CAFFE = "authors' Caffe model, PyTorch port of Cadene/pretrained-models.pytorch (re-hosted by timm)"
_TIMM = "timm (Ross Wightman)"
_MIIL = "timm's ecaresnet*d.miil_in1k (trained by Alibaba MIIL), re-hosted by timm"
_TIMM_LEGACY = "timm (Ross Wightman), legacy_seresnet18/34: a ReLU before SE in every basic block"
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
# timm's own legacy_seresnet18/34 weights (in the Caffe port's layout) apply a ReLU before SE, which is not the
# paper's block: they load into se_resnet18/34 built with relu_before_se=True (their options say so), and only there.
# timm's ECA-ResNet-D files (ecaresnet50d/101d.miil_in1k) fit eca_resnet50d/101d exactly; its other ECA and GC
# models (tiered stems, ByobNets) are other networks and are refused (senet.weights.layouts).
#                model                  tag                 url                                                  layout
KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    KnownWeights("se_resnet18", "timm_legacy_in1k", f"{_REL}/v0.1-weights/seresnet18-4bb0ce65.pth", "caffe",
                 _TIMM_LEGACY, interpolation="bicubic"),
    KnownWeights("se_resnet34", "timm_legacy_in1k", f"{_REL}/v0.1-weights/seresnet34-a4004e63.pth", "caffe",
                 _TIMM_LEGACY),
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
    KnownWeights("eca_resnet50d", "timm_miil_in1k", f"{_REL}/v0.1-tresnet/ecaresnet50d-93c81e3b.pth",
                 "timm_resnet_d", _MIIL, interpolation="bicubic"),
    KnownWeights("eca_resnet101d", "timm_miil_in1k", f"{_REL}/v0.1-tresnet/ecaresnet101d-153dad65.pth",
                 "timm_resnet_d", _MIIL, interpolation="bicubic"),
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
        ConnectionError: the file could not be downloaded (offline, or no data for ``$SENET_DOWNLOAD_TIMEOUT`` seconds
            in each of 3 attempts); the message says where to put a copy.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / weights.filename
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    try:
        download_retrying(
            lambda: torch.hub.download_url_to_file(
                weights.url, str(path), hash_prefix=weights.hash_prefix, progress=progress
            ),
            f"{weights.name} from {weights.url}",
        )
    except RuntimeError as e:
        if "invalid hash value" not in str(e):
            raise
        raise ValueError(f"download of {weights.name} from {weights.url} failed its checksum ({e}); the file was "
                         "discarded. Retry; if it persists, the file at that URL has changed") from None  # fmt: skip
    except ConnectionError as e:
        raise ConnectionError(
            f"{e}. Offline? Copy the file (SHA-256 starting {weights.hash_prefix}) to {path}, or load a local copy "
            f"with senet.load_weights(model, PATH, layout={weights.layout!r})"
        ) from None
    return path
