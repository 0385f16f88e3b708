"""The layouts of the weights people hold, as data: for each publisher, how it names its tensors (a detector and a
rename rule), what senet needs to compute the same function with them (the ``create_model`` options), what the
weights expect of their input, and which of its files no senet model reproduces (a refusal with the reason).

`senet.weights.convert` runs them; every layout here is converted by the same code, recognised by the same
`detect_layout`, and held to the same guarantees. Each rule is written from the reference code (timm 1.0,
torchvision 0.29, Cadene's pretrainedmodels 0.7.4) and tested against it (tests/test_weights.py,
tests/test_family_weights.py).

==========================  ==========================================================  ==========================
layout                      who publishes weights in it                                 senet model, options
==========================  ==========================================================  ==========================
``senet``                   senet itself                                                any
``caffe``                   Cadene's port of the released Caffe SENets; timm's          ResNet family,
                            ``legacy_se*`` (``legacy_seresnet18/34``: timm's own)       ``layout="original"``
                                                                                        (18/34: ``relu_before_se``)
``timm``                    timm's ``seresnet*`` / ``seresnext*``                       ``layout="v1.5"``,
                                                                                        ``se_rounding="round8"``
``timm_resnet_d``           timm's ResNet-D: ``resnet50d``, ``ecaresnet50d/101d``       ``resnet50d`` ...,
                                                                                        ``eca_resnet50d`` ...
``torchvision``             torchvision's (and timm's) ``resnet*`` / ``resnext*``       ``layout="v1.5"``
``inception_v3``            torchvision's and timm's ``inception_v3``                   ``inception_v3``
``inception_resnet_v2``     timm's and Cadene's ``inception_resnet_v2``                 ``inception_resnet_v2``
``torchvision_vgg``         torchvision's ``vgg16_bn``                                  ``vgg16_bn``
``timm_vgg``                timm's ``vgg16_bn``                                         ``vgg16_bn``, ``head="dense"``
``cadene_bninception``      Cadene's ``bninception``                                    ``bn_inception``
``timm_mobilenetv1``        timm's ``mobilenetv1_100``                                  ``mobilenet``, ``act="relu6"``
``timm_byobnet``            timm's ByobNets (``gcresnet50t``, ``eca_resnet33ts``, ...)  none: refused
==========================  ==========================================================  ==========================

`TIMM_UNIT` is the layout of the state dict of one of timm's attention modules (``EcaModule``, ``CbamModule``, ...)
for the same senet unit (`senet.weights.convert_timm_unit`); no file holds it, so it is not detected.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..models import ModelEntry, build_model
from ..models.resnet import BasicBlock

__all__ = ["LAYOUT_TABLE", "TIMM_UNIT", "Layout"]

Keys = Collection[str]


@dataclass(frozen=True)
class Layout:
    """How one publisher names a network's tensors, and what senet needs to compute the same function with them.

    Attributes:
        name: the layout's name, as ``load_weights(..., layout=name)`` takes it.
        source: who publishes files in it (for messages).
        looks_like: whether a set of key names is in this layout (names only: shapes are checked on conversion).
        rename: senet's name for a key of the file, or None where the key has no place in senet's models.
        model: the senet model the layout's network is; None where the rule names any model of a family.
        options: ``(entry, keys)`` → the ``create_model`` options with which ``entry``'s model takes these weights
            and computes what their network computes (``keys`` may be empty when only the model is known).
        flattened: senet names of convolutions that the file holds as linear layers, (O, C·k·k): same weights.
        adjust: ``(senet name, tensor)`` → the tensor senet's model needs (BGR → RGB for a Caffe conv1).
        input: what the weights expect of their input: ``mean`` and ``std`` for RGB in [0, 1], ``input_size``, and
            a ``note`` where needed.
        refuse: from the key names, why no senet model computes the file's function; empty if one does. Where the
            file is at hand it gets the file's mapping of names to tensors (iterating it gives the names), so a rule
            may read a shape that the names do not tell (timm's tiered stem).
    """

    name: str
    source: str
    looks_like: Callable[[Keys], bool]
    rename: Callable[[str], str | None]
    model: str | None = None
    options: Callable[[ModelEntry, Keys], dict[str, Any]] = lambda entry, keys: {}
    flattened: frozenset[str] = frozenset()
    adjust: Callable[[str, Tensor], Tensor] = lambda name, value: value
    input: dict[str, Any] = field(default_factory=dict)
    refuse: Callable[[Keys], str] = lambda keys: ""


def _any(pattern: str, keys: Keys) -> bool:
    return any(re.match(pattern, k) for k in keys)


def _split(key: str) -> tuple[str, str]:
    """``"Mixed_5b.branch1x1.conv.weight"`` → ``("Mixed_5b", "branch1x1.conv.weight")``."""
    head, _, rest = key.partition(".")
    return head, rest


_IMAGENET = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "input_size": 224}
_TF = {"mean": [0.5] * 3, "std": [0.5] * 3}  # x ↦ 2x − 1, TF-slim's input


# ---------------------------------------------------------------------------------------------------------------------
# The ResNet family: Cadene's Caffe port (layer0, se_module, last_linear), timm (torchvision's names with se.fc1/2),
# torchvision. The rules rename only the stem and the SE unit, so they hold for every ResNet-family model of senet.


def _rename_caffe(key: str) -> str:
    key = re.sub(r"^layer0\.", "stem.", key)  # layer0.conv1 → stem.conv1 (SENet-154: conv1..3)
    key = key.replace(".se_module.", ".se.")
    return re.sub(r"^last_linear\.", "fc.", key)


def _rename_torchvision(key: str) -> str:
    return re.sub(r"^(conv1|bn1)\.", r"stem.\1.", key)  # the stem's conv and BN sit at the top level


def _has(entry: ModelEntry, option: str) -> bool:
    return option in entry.options


@functools.cache
def _has_basic_blocks(name: str) -> bool:
    with torch.device("meta"):
        return any(isinstance(m, BasicBlock) for m in build_model(name).modules())


def _caffe_options(entry: ModelEntry, keys: Keys) -> dict[str, Any]:
    options = {"layout": "original"} if _has(entry, "layout") else {}
    if entry.has_se and _has(entry, "relu_before_se") and _has_basic_blocks(entry.name):
        # The layout's basic blocks are timm's legacy_seresnet18/34: ReLU, then SE (models/resnet.py BasicBlock).
        options["relu_before_se"] = True
    return options


def _timm_options(entry: ModelEntry, keys: Keys) -> dict[str, Any]:
    options = {"layout": "v1.5"} if _has(entry, "layout") else {}
    if entry.has_se:
        unit = _timm_unit(keys)  # None without keys: the model's own unit
        if unit is not None:
            options["attention"] = unit
        if (unit or entry.defaults().get("attention", "se")) == "se":
            options["se_rounding"] = "round8"  # timm's reduced width: C/r to a multiple of 8
    return options


# ---------------------------------------------------------------------------------------------------------------------
# The units of timm's ResNets (its ``attn_layer``, held as ``layerN.M.se``): timm publishes ResNet weights with SE
# (``seresnet*``) and ECA (``ecaresnet*``); senet's SE and ECA with their default options compute timm's modules'
# functions (tests/test_attention.py). Of its other units timm publishes no ResNet weights.

_TIMM_RESNET_UNITS = {r"\.se\.fc1\.": "se", r"\.se\.conv\.weight$": "eca"}  # the key that tells the unit


def _timm_unit(keys: Keys) -> str | None:
    """senet's ``attention`` for the unit of a timm ResNet's keys; None if they hold no SE or ECA unit."""
    return next((unit for pattern, unit in _TIMM_RESNET_UNITS.items() if _any(rf"layer\d+\.\d+{pattern}", keys)), None)


def _refuse_timm_resnet(keys: Keys) -> str:
    """timm ResNets that no senet model computes, told by names: average-pool shortcuts (``downsample.{1,2}``: pool,
    conv, BN) on a 7×7 stem, or a unit other than SE and ECA in the blocks."""
    if "conv1.weight" in keys and _any(r"layer\d+\.\d+\.downsample\.2\.", keys):
        return (
            "a timm ResNet with average-pool shortcuts and a 7×7 stem (ecaresnetlight, ...) is a network no senet "
            "model computes; senet's average-pool shortcuts come with the deep stem (resnet50d, eca_resnet50d)"
        )
    if any(".se." in k for k in keys) and _timm_unit(keys) is None:
        return (
            "the blocks hold a timm attention unit other than SE and ECA, of which timm publishes no ResNet "
            "weights; convert the unit's own weights with senet.weights.convert_timm_unit"
        )
    return ""


# timm's deep stem (ResNet-D, He et al. 2019 §4.1): conv1 = Sequential(conv, BN, ReLU, conv, BN, ReLU, conv), then bn1.
_DEEP_STEM = {"conv1.0": "stem.conv1", "conv1.1": "stem.bn1", "conv1.3": "stem.conv2", "conv1.4": "stem.bn2",
              "conv1.6": "stem.conv3", "bn1": "stem.bn3"}  # fmt: skip
_DEEP_STEM_WIDTH = 32  # the first convolution's filters; timm's tiered stem (ResNet-T) has 24


def _rename_timm_resnet_d(key: str) -> str:
    layer, _, param = key.rpartition(".")
    return f"{_DEEP_STEM[layer]}.{param}" if layer in _DEEP_STEM else key


def _refuse_timm_resnet_d(keys: Keys) -> str:
    first = keys.get("conv1.0.weight") if isinstance(keys, Mapping) else None
    if first is not None and first.shape[0] != _DEEP_STEM_WIDTH:
        return (f"a timm ResNet with a tiered deep stem (conv1.0 has {first.shape[0]} filters: ResNet-T, ecaresnet26t, "
                f"ecaresnet50t, seresnext26t_32x4d, ...); senet's ResNet-D stem has {_DEEP_STEM_WIDTH}, and no senet "
                "model computes that network; use it with timm")  # fmt: skip
    return _refuse_timm_resnet(keys)


# timm's attention modules under their own names: CbamModule holds its MLP in ``channel`` and its spatial convolution
# and BN in ``spatial.conv`` (a ConvNormAct); the other units timm has name their layers as senet's do.
_TIMM_CBAM = {
    "channel.fc1": "fc1",
    "channel.fc2": "fc2",
    "spatial.conv.conv": "spatial",
    "spatial.conv.bn": "spatial_bn",
}


def _rename_timm_unit(key: str) -> str:
    layer, _, param = key.rpartition(".")
    return f"{_TIMM_CBAM[layer]}.{param}" if layer in _TIMM_CBAM else key


# ---------------------------------------------------------------------------------------------------------------------
# Inception-v3: torchvision's Inception3 and timm's InceptionV3 (a port of it) have the same state dict. senet keeps
# the stem's and the modules' names and numbers the branches of a module in their order of concatenation.

_V3_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
#   reference's branch layer  senet's path in the module's branches (branch index, then the step in the branch)
_V3_BRANCHES = {
    "A": {  # 35×35 (InceptionA): 1×1 | 1×1 → 5×5 | 1×1 → 3×3 → 3×3 | avg pool → 1×1
        "branch1x1": "0", "branch5x5_1": "1.0", "branch5x5_2": "1.1",
        "branch3x3dbl_1": "2.0", "branch3x3dbl_2": "2.1", "branch3x3dbl_3": "2.2", "branch_pool": "3.1",
    },
    "B": {"branch3x3": "0", "branch3x3dbl_1": "1.0", "branch3x3dbl_2": "1.1", "branch3x3dbl_3": "1.2"},  # 35 → 17
    "C": {  # 17×17 (InceptionC): 1×1 | 1×1 → 1×7 → 7×1 | 1×1 → 7×1 → 1×7 → 7×1 → 1×7 | avg pool → 1×1
        "branch1x1": "0", "branch7x7_1": "1.0", "branch7x7_2": "1.1", "branch7x7_3": "1.2",
        "branch7x7dbl_1": "2.0", "branch7x7dbl_2": "2.1", "branch7x7dbl_3": "2.2", "branch7x7dbl_4": "2.3",
        "branch7x7dbl_5": "2.4", "branch_pool": "3.1",
    },
    "D": {  # 17 → 8 (InceptionD)
        "branch3x3_1": "0.0", "branch3x3_2": "0.1",
        "branch7x7x3_1": "1.0", "branch7x7x3_2": "1.1", "branch7x7x3_3": "1.2", "branch7x7x3_4": "1.3",
    },
    "E": {  # 8×8 (InceptionE): the 1×3 | 3×1 split is a Concat inside the branch
        "branch1x1": "0", "branch3x3_1": "1.0", "branch3x3_2a": "1.1.0", "branch3x3_2b": "1.1.1",
        "branch3x3dbl_1": "2.0", "branch3x3dbl_2": "2.1", "branch3x3dbl_3a": "2.2.0", "branch3x3dbl_3b": "2.2.1",
        "branch_pool": "3.1",
    },
}  # fmt: skip
_V3_MODULES = {
    "Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C", "Mixed_6c": "C",
    "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E", "Mixed_7c": "E",
}  # fmt: skip
# The auxiliary head: senet's is nn.Sequential(avg pool, conv0, conv1, adaptive pool, flatten, fc).
_V3_AUX = {"conv0": "1", "conv1": "2", "fc": "5"}


def _rename_inception_v3(key: str) -> str | None:
    head, rest = _split(key)
    layer, tail = _split(rest)
    if head in _V3_STEM:
        return f"stem.{key}"
    if head in _V3_MODULES and layer in _V3_BRANCHES[_V3_MODULES[head]]:
        return f"blocks.{head}.branches.{_V3_BRANCHES[_V3_MODULES[head]][layer]}.{tail}"
    if head == "AuxLogits" and layer in _V3_AUX:
        return f"aux.{_V3_AUX[layer]}.{tail}"
    return key if head == "fc" else None


# ---------------------------------------------------------------------------------------------------------------------
# Inception-ResNet-v2: timm's InceptionResnetV2 and Cadene's port of TF-slim, whose names timm kept (Cadene calls the
# classifier last_linear, timm classif). They group the residual units of a resolution in an nn.Sequential
# (``repeat``, ``repeat_1``, ``repeat_2``, 0-based) and keep the last, linear unit apart (``block8``); senet names every
# unit ``block35_1`` ... ``block8_10`` (1-based) and its 1×1 ``up``.

_IRV2_STEM = {
    "conv2d_1a": "Conv2d_1a_3x3", "conv2d_2a": "Conv2d_2a_3x3", "conv2d_2b": "Conv2d_2b_3x3",
    "conv2d_3b": "Conv2d_3b_1x1", "conv2d_4a": "Conv2d_4a_3x3",
}  # fmt: skip
_IRV2_MODULES = {"mixed_5b": "Mixed_5b", "mixed_6a": "Mixed_6a", "mixed_7a": "Mixed_7a"}  # branchN → N
_IRV2_UNITS = {"repeat": "block35", "repeat_1": "block17", "repeat_2": "block8"}
_IRV2_LAST_UNIT = "block8_10"  # the reference's ``block8``: scale 1, no ReLU, after the nine of ``repeat_2``


def _irv2_unit(unit: str, rest: str) -> str | None:
    """senet's name inside a residual unit: ``branchN.…`` → ``branches.N.…``, the 1×1 ``conv2d`` → ``up``."""
    found = re.fullmatch(r"branch(\d)\.(.+)", rest)
    if found:
        return f"blocks.{unit}.branches.{found[1]}.{found[2]}"
    layer, tail = _split(rest)
    return f"blocks.{unit}.up.{tail}" if layer == "conv2d" else None


def _rename_inception_resnet_v2(key: str) -> str | None:
    head, rest = _split(key)
    if head in _IRV2_STEM:
        return f"stem.{_IRV2_STEM[head]}.{rest}"
    if head in _IRV2_MODULES:
        found = re.fullmatch(r"branch(\d)\.(.+)", rest)
        return f"blocks.{_IRV2_MODULES[head]}.{found[1]}.{found[2]}" if found else None
    if head in _IRV2_UNITS:
        index, rest = _split(rest)
        return _irv2_unit(f"{_IRV2_UNITS[head]}_{int(index) + 1}", rest) if index.isdigit() else None
    if head == "block8":
        return _irv2_unit(_IRV2_LAST_UNIT, rest)
    if head == "conv2d_7b":
        return f"blocks.Conv2d_7b_1x1.{rest}"
    return f"fc.{rest}" if head in ("classif", "last_linear") else None


# ---------------------------------------------------------------------------------------------------------------------
# VGG-16-BN: torchvision and timm number the layers of ``features`` (configuration D: each convolution at i, its BN at
# i + 1, its ReLU at i + 2, a max pool after each stage); senet names them conv<stage>_<index>. torchvision holds fc6
# and fc7 as linear layers (classifier.0, .3), timm as 7×7 and 1×1 convolutions (ConvMlp).

_VGG16_CONVS = {
    0: "conv1_1", 3: "conv1_2",
    7: "conv2_1", 10: "conv2_2",
    14: "conv3_1", 17: "conv3_2", 20: "conv3_3",
    24: "conv4_1", 27: "conv4_2", 30: "conv4_3",
    34: "conv5_1", 37: "conv5_2", 40: "conv5_3",
}  # fmt: skip
_TV_VGG_HEAD = {"classifier.0": "pre_logits.fc6", "classifier.3": "pre_logits.fc7", "classifier.6": "fc"}
_TIMM_VGG_HEAD = {"pre_logits.fc1": "pre_logits.fc6", "pre_logits.fc2": "pre_logits.fc7", "head.fc": "fc"}


def _rename_vgg_features(key: str) -> str | None:
    found = re.fullmatch(r"features\.(\d+)\.(\w+)", key)
    if not found:
        return None
    index, param = int(found[1]), found[2]
    if index in _VGG16_CONVS:
        return f"features.{_VGG16_CONVS[index]}.conv.{param}"
    if index - 1 in _VGG16_CONVS:
        return f"features.{_VGG16_CONVS[index - 1]}.bn.{param}"
    return None


def _vgg_renamer(head: dict[str, str]) -> Callable[[str], str | None]:
    def rename(key: str) -> str | None:
        layer, _, param = key.rpartition(".")
        return f"{head[layer]}.{param}" if layer in head else _rename_vgg_features(key)

    return rename


def _is_vgg_bn(keys: Keys) -> bool:
    return _any(r"features\.\d+\.running_var$", keys)


def _not_vgg16(keys: Keys) -> str:
    """Another depth of VGG: its last BN is not at features.41 (VGG-11-BN: 26, VGG-13-BN: 32, VGG-19-BN: 50)."""
    last = max((int(found[1]) for k in keys if (found := re.match(r"features\.(\d+)\.", k))), default=None)
    if last is None or last == max(_VGG16_CONVS) + 1:  # no VGG keys at all: not a VGG, which the key check says
        return ""
    return (f"the file's VGG has its last layer with weights at features.{last}; VGG-16-BN's is at features.41. "
            "senet builds VGG-16 only (configuration D, 13 convolutions)")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# BN-Inception: Cadene's port of the Caffe model (pretrainedmodels.bninception) names every layer after the Caffe
# blob: ``inception_3a_double_3x3_1`` and its BN ``inception_3a_double_3x3_1_bn``. Its convolutions have biases before
# the BN, which the conversion folds into the BN's running mean (`senet.weights.convert`) where the model has none.

_BNI_STEM = {"conv1_7x7_s2": "conv1", "conv2_3x3_reduce": "conv2_reduce", "conv2_3x3": "conv2"}
# A module's branches in senet's order: 1×1 | 1×1 → 3×3 | 1×1 → 3×3 → 3×3 | pool → 1×1 (index 0 is the pooling).
_BNI_BRANCHES = {
    "1x1": "0", "3x3_reduce": "1.0", "3x3": "1.1",
    "double_3x3_reduce": "2.0", "double_3x3_1": "2.1", "double_3x3_2": "2.2", "pool_proj": "3.1",
}  # fmt: skip
# The reduction modules (3c, 4e) have no 1×1 branch and no projection after the pooling: one branch fewer in front.
_BNI_REDUCTION_BRANCHES = {
    "3x3_reduce": "0.0", "3x3": "0.1", "double_3x3_reduce": "1.0", "double_3x3_1": "1.1", "double_3x3_2": "1.2",
}  # fmt: skip
_BNI_REDUCTIONS = ("3c", "4e")


def _rename_bninception(key: str) -> str | None:
    layer, _, param = key.rpartition(".")
    kind = "bn" if layer.endswith("_bn") else "conv"
    base = layer.removesuffix("_bn")
    if base in _BNI_STEM:
        return f"stem.{_BNI_STEM[base]}.{kind}.{param}"
    found = re.fullmatch(r"inception_(\d[a-e])_(\w+)", base)
    if found:
        module, part = found[1], found[2]
        branches = _BNI_REDUCTION_BRANCHES if module in _BNI_REDUCTIONS else _BNI_BRANCHES
        return f"blocks.inception_{module}.branches.{branches[part]}.{kind}.{param}" if part in branches else None
    return f"fc.{param}" if layer == "last_linear" else None


def _bgr_to_rgb(name: str, value: Tensor) -> Tensor:
    """Caffe's first convolution reads BGR: reorder its input channels so that the model reads RGB, as senet's do."""
    return value.flip(1) if name == "stem.conv1.conv.weight" else value


# Caffe's preprocessing, 255·BGR − (104, 117, 128), is (x − mean) / std for RGB x in [0, 1] with these, once conv1
# reads RGB (`_bgr_to_rgb`): the same numbers reach the network.
_CAFFE_BGR = {
    "mean": [128 / 255, 117 / 255, 104 / 255], "std": [1 / 255] * 3, "input_size": 224,
    "note": "Caffe's input, BGR in 0-255 minus (104, 117, 128), written for RGB in [0, 1]: conv1's input channels "
    "were reordered to RGB on conversion, so the model takes RGB as senet's other models do",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# MobileNet v1: timm's mobilenetv1_100 (an EfficientNet-style builder): ``conv_stem``/``bn1``, then
# ``blocks.<stage>.<block>.{conv_dw, bn1, conv_pw, bn2}`` (0-based stages) and ``classifier``. Its activation is ReLU6.

_MOBILENET_BLOCK = {"conv_dw": "depthwise.conv", "bn1": "depthwise.bn", "conv_pw": "pointwise.conv",
                    "bn2": "pointwise.bn"}  # fmt: skip


def _rename_timm_mobilenetv1(key: str) -> str | None:
    layer, _, param = key.rpartition(".")
    if layer in ("conv_stem", "bn1"):
        return f"stem.{'conv' if layer == 'conv_stem' else 'bn'}.{param}"
    found = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)", layer)
    if found and found[3] in _MOBILENET_BLOCK:
        return f"layer{int(found[1]) + 1}.{found[2]}.{_MOBILENET_BLOCK[found[3]]}.{param}"
    return f"fc.{param}" if layer == "classifier" else None


# ---------------------------------------------------------------------------------------------------------------------
# The layouts, in the order `detect_layout` reports them; their detectors are disjoint (tests/test_family_weights.py).

LAYOUT_TABLE: tuple[Layout, ...] = (
    Layout(
        "senet", "senet",
        looks_like=lambda keys: any(k.startswith(("stem.", "features.conv1_1.")) for k in keys)
        and not any(k.startswith("stages.") for k in keys),  # timm's ByobNets have a stem. too
        rename=lambda key: key,
    ),
    Layout(
        "caffe", "Caffe-port (Cadene's pretrainedmodels, timm's legacy_se*)",
        looks_like=lambda keys: any(k.startswith("layer0.") for k in keys), rename=_rename_caffe,
        options=_caffe_options, input=_IMAGENET,
    ),
    Layout(
        "timm", "timm's", looks_like=lambda keys: "conv1.weight" in keys and any(".se." in k for k in keys),
        rename=_rename_torchvision, options=_timm_options, input=_IMAGENET, refuse=_refuse_timm_resnet,
    ),
    Layout(
        "timm_resnet_d", "timm's ResNet-D",
        looks_like=lambda keys: "conv1.0.weight" in keys and _any(r"layer1\.0\.conv1\.", keys),
        rename=_rename_timm_resnet_d, options=_timm_options, input=_IMAGENET, refuse=_refuse_timm_resnet_d,
    ),
    Layout(
        "torchvision", "torchvision's",
        looks_like=lambda keys: "conv1.weight" in keys and _any(r"layer1\.0\.conv1\.", keys)
        and not any(".se." in k for k in keys),
        rename=_rename_torchvision,
        options=lambda entry, keys: {"layout": "v1.5"} if _has(entry, "layout") else {}, input=_IMAGENET,
        refuse=_refuse_timm_resnet,
    ),
    Layout(
        "inception_v3", "torchvision's or timm's inception_v3",
        looks_like=lambda keys: _any(r"Mixed_[5-7][a-e]\.branch", keys) and _any(r"Conv2d_\w+\.conv\.", keys),
        rename=_rename_inception_v3, model="inception_v3",
        options=lambda entry, keys: {"aux_logits": True} if any(k.startswith("AuxLogits.") for k in keys) else {},
        input={**_TF, "input_size": 299,
               "note": "torchvision's and timm's tv/tf weights take TF-style input, (x - 0.5) / 0.5 (torchvision's "
               "transform_input=True maps ImageNet-normalised input to it); timm's gluon_in1k weights take "
               "ImageNet's mean and std instead, which the file cannot tell"},
    ),
    Layout(
        "inception_resnet_v2", "timm's or Cadene's inception_resnet_v2",
        looks_like=lambda keys: _any(r"mixed_5b\.branch", keys) and _any(r"repeat(_[12])?\.\d+\.branch", keys),
        rename=_rename_inception_resnet_v2, model="inception_resnet_v2", input={**_TF, "input_size": 299},
    ),
    Layout(
        "torchvision_vgg", "torchvision's vgg16_bn",
        looks_like=lambda keys: _is_vgg_bn(keys) and _any(r"classifier\.\d+\.weight$", keys),
        rename=_vgg_renamer(_TV_VGG_HEAD), model="vgg16_bn", refuse=_not_vgg16,
        flattened=frozenset({"pre_logits.fc6.weight", "pre_logits.fc7.weight"}), input=_IMAGENET,
    ),
    Layout(
        "timm_vgg", "timm's vgg16_bn",
        looks_like=lambda keys: _is_vgg_bn(keys) and _any(r"pre_logits\.fc1\.", keys),
        rename=_vgg_renamer(_TIMM_VGG_HEAD), model="vgg16_bn", refuse=_not_vgg16,
        options=lambda entry, keys: {"head": "dense"}, input=_IMAGENET,
    ),
    Layout(
        "cadene_bninception", "Cadene's pretrainedmodels bninception",
        looks_like=lambda keys: _any(r"inception_\d[a-e]_\w+\.weight$", keys),
        rename=_rename_bninception, model="bn_inception", adjust=_bgr_to_rgb, input=_CAFFE_BGR,
    ),
    Layout(
        "timm_mobilenetv1", "timm's mobilenetv1_100",
        looks_like=lambda keys: _any(r"blocks\.\d+\.\d+\.conv_dw\.", keys)
        and not any(".conv_pwl." in k or ".se." in k for k in keys),
        rename=_rename_timm_mobilenetv1, model="mobilenet", options=lambda entry, keys: {"act": "relu6"},
        input={**_TF, "input_size": 224},
    ),
    Layout(
        "timm_byobnet", "timm's ByobNet", looks_like=lambda keys: any(k.startswith("stages.") for k in keys),
        rename=lambda key: None,
        refuse=lambda keys: "a timm ByobNet (gcresnet50t, gcresnext26ts, eca_resnet33ts, ...: keys 'stem.conv1.conv', "
        "'stages.N.M...') is another network, whose stem, blocks and placement of the unit no senet model has; use "
        "it with timm",
    ),
)  # fmt: skip

# Not in the table: no file holds one unit's weights, so no detector looks for them (`convert_timm_unit`).
TIMM_UNIT = Layout("timm_unit", "timm's attention module", looks_like=lambda keys: False, rename=_rename_timm_unit)
