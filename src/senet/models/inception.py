"""SE-BN-Inception, SE-Inception-v3 and SE-Inception-ResNet-v2 (paper §3.3, Figs. 2 and 3, Table 2).

An SE-Inception module rescales the concatenated output of an Inception module (paper Fig. 2: the whole module is
the transformation F_tr); an SE-Inception-ResNet unit rescales the residual branch before the scaled addition with
the identity (as SE-ResNet does, Fig. 3). Each network is written as a table, one row per module, below its
building blocks; a branch of an Inception module is a chain of convolutions written as data (see `_branch`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import SEConfig, se_for_block
from ._convs import conv_bn, init_convs, same_padding
from .base import Classifier, ResidualBlock
from .registry import register_twins

__all__ = ["Concat", "Inception", "InceptionModule", "InceptionOutputs", "InceptionResNetUnit", "MaxPoolCeil"]


class Concat(nn.ModuleList):
    """Run every branch on the same input and concatenate the outputs along the channels."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self], 1)


class MaxPoolCeil(nn.Module):
    """3×3 stride-2 max pooling as Caffe computes it (no padding, size rounded up), extended to odd sizes.

    On an even n×n map this is Caffe's (and the released BN-Inception's) pooling, n/2 wide. Caffe gives
    (n - 1)/2 on an odd map while a 3×3 stride-2 convolution padded by 1 gives (n + 1)/2, and the concatenation in
    a reduction module fails; padding the odd side by one -inf row or column first gives (n + 1)/2 as well.
    """

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
        return F.max_pool2d(x, 3, 2, ceil_mode=True)


class InceptionModule(nn.Module):
    """Parallel branches concatenated, then the SE unit on the concatenation (paper Fig. 2, SE-Inception module)."""

    def __init__(self, branches: Sequence[nn.Module], channels: int, *, se: SEConfig | None, stage: int) -> None:
        super().__init__()
        self.branches = Concat(branches)
        self.channels = channels
        cfg = se_for_block(se, stage)
        self.se = cfg.make(channels, stage) if cfg is not None else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches(x)  # (B, channels, H', W')
        return out if self.se is None else self.se(out)


class InceptionResNetUnit(ResidualBlock):
    """``relu(x + scale · up(concat(branches(x))))``: an Inception-ResNet unit (Szegedy et al. 2017, Figs. 16-19).

    ``up`` is a linear 1×1 convolution (with bias, without BN) back to the unit's width; ``scale`` damps the
    residual (§3.3 of that paper). The SE unit sits on the residual branch after ``up``, before the scaled addition
    (``se_position="standard"``); ``"pre"``, ``"post"`` and ``"identity"`` move it as in the SE paper's Fig. 5 (§6.5).
    """

    positions = ("standard", "pre", "post", "identity")

    def __init__(
        self, channels: int, branches: list, *, scale: float, activate: bool, se: SEConfig | None, stage: int
    ) -> None:
        super().__init__()
        self.branches, width = _parallel(channels, branches)
        self.up = nn.Conv2d(width, channels, 1)
        self.scale = scale
        self.post_act = activate  # the last unit of the network has no ReLU
        self._attach_se(se, stage, dict.fromkeys(self.positions, channels))

    def forward(self, x: Tensor) -> Tensor:
        pos = self.se_position
        out = self.up(self.branches(self._pre(x)))
        if pos == "standard":
            out = self.se(out)  # gate from the unscaled residual
        shortcut = self.se(x) if pos == "identity" else x
        out = self.act(torch.add(shortcut, out, alpha=self.scale))
        return self.se(out) if pos == "post" else out


class InceptionOutputs(NamedTuple):
    """What an Inception-v3 with its auxiliary head returns in training mode."""

    logits: Tensor
    aux_logits: Tensor


class Inception(Classifier):
    """A stem, a sequence of Inception modules or units (``blocks``), global average pooling and a linear layer.

    Args:
        stem: the convolutions and poolings before the first module.
        blocks: the modules in order, named as in the reference implementation (``inception_3a``, ``Mixed_5b``).
        num_features: channels out of the last block.
        se: the network's SE configuration (None for the plain twin), kept as ``se_config``.
        min_size: the smallest input side the network accepts.
        features: the feature maps (``feature_info``): for each, the path of the module that outputs it
            (``"stem.<name>"`` or ``"blocks.<name>"``), its channels and its reduction.
        aux: an auxiliary classifier on feature map ``aux_map`` (the output of the module it names), used in
            training mode only: the model then returns `InceptionOutputs` (logits, aux_logits) and the training loss
            adds the auxiliary cross-entropy (Szegedy et al. 2016, §4: a regulariser).
    """

    def __init__(
        self,
        stem: nn.Sequential,
        blocks: nn.Sequential,
        num_features: int,
        *,
        se: SEConfig | None,
        num_classes: int,
        in_chans: int,
        drop_rate: float,
        min_size: int,
        features: Sequence[tuple[str, int, int]],
        aux: nn.Module | None = None,
        aux_map: int = -1,
    ) -> None:
        super().__init__()
        self.se_config = se
        self.stem = stem
        self.blocks = blocks
        self.aux = aux
        self.aux_map = aux_map
        self._init_head(num_features, num_classes, in_chans, drop_rate, min_size)
        self._init_features(features)
        init_convs(self)

    def module_sequence(self) -> list[tuple[str, nn.Module]]:
        return [(f"stem.{n}", m) for n, m in self.stem.named_children()] + [
            (f"blocks.{n}", m) for n, m in self.blocks.named_children()
        ]

    def forward(self, x: Tensor) -> Tensor | InceptionOutputs:
        if self.aux is None or not self.training:
            return super().forward(x)
        x, (mid,) = self.forward_intermediates(x, [self.aux_map])
        return InceptionOutputs(self.forward_head(x), self.aux(mid))


def _check_se(se: SEConfig | None, positions: Sequence[str], family: str) -> None:
    if se is not None:
        se.check(3, positions, family)  # every network here has three stages of modules


# ---------------------------------------------------------------------------------------------------------------------
# BN-Inception (Ioffe & Szegedy 2015, Fig. 5), as in the released Caffe SE-BN-Inception: BN after every convolution,
# ceil-mode max pooling, SE after every module, the two reduction modules (3c, 4e) included.

#     module  1×1  3×3 reduce  3×3  double 3×3 reduce  double 3×3  pool   pool proj  stride
_BN_INCEPTION = (
    ("3a", 64, 64, 64, 64, 96, "avg", 32, 1),  # 28×28, 192 → 256 channels
    ("3b", 64, 64, 96, 64, 96, "avg", 64, 1),  # → 320
    ("3c", 0, 128, 160, 64, 96, "max", 0, 2),  # 28 → 14, → 576 (the pooled input passes through)
    ("4a", 224, 64, 96, 96, 128, "avg", 128, 1),  # 14×14, → 576
    ("4b", 192, 96, 128, 96, 128, "avg", 128, 1),  # → 576
    ("4c", 160, 128, 160, 128, 160, "avg", 128, 1),  # → 608
    ("4d", 96, 128, 192, 160, 192, "avg", 128, 1),  # → 608
    ("4e", 0, 128, 192, 192, 256, "max", 0, 2),  # 14 → 7, → 1056
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),  # 7×7, → 1024
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1),  # → 1024
)  # fmt: skip


def _bn_inception_module(cin: int, row: tuple, conv: Callable[..., nn.Module]) -> tuple[list[nn.Module], int]:
    """The branches of one row of `_BN_INCEPTION` and the module's output channels."""
    c1, c3r, c3, d3r, d3, pool, proj, stride = row
    branches: list[nn.Module] = [conv(cin, c1, 1)] if c1 else []
    branches.append(nn.Sequential(conv(cin, c3r, 1), conv(c3r, c3, 3, stride, 1)))
    branches.append(nn.Sequential(conv(cin, d3r, 1), conv(d3r, d3, 3, 1, 1), conv(d3, d3, 3, stride, 1)))
    if stride == 2:
        branches.append(MaxPoolCeil())
        return branches, c3 + d3 + cin
    pooling = nn.AvgPool2d(3, 1, 1) if pool == "avg" else nn.MaxPool2d(3, 1, 1)  # Caffe counts the zero padding
    branches.append(nn.Sequential(pooling, conv(cin, proj, 1)))
    return branches, c1 + c3 + d3 + proj


def _bn_inception(
    se: SEConfig | None, *, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, conv_bias: bool = False
) -> Inception:
    """BN-Inception (Ioffe & Szegedy 2015) and SE-BN-Inception (paper Table 2: 2.03 → 2.04 GMACs).

    The layout of the released Caffe SE-BN-Inception: a 7×7/2 stem, 1×1 and 3×3 convolutions, ten Inception modules
    with BN after every convolution (no convolution biases), ceil-mode max pooling, global average pooling. SE sits
    after each module's concatenation, the reduction modules 3c and 4e included. ``se_stages`` numbers the module
    groups: 1 = 3a-3c (28×28), 2 = 4a-4e (14×14), 3 = 5a-5b (7×7). Total stride 32, so ``min_size`` = 32.
    Plain: 11.285M parameters, 2.033 GMACs. ``conv_bias=True`` adds the convolution biases of the plain Caffe
    BN-Inception and its PyTorch port (pretrainedmodels' ``bninception``, 11.295M parameters).
    """
    _check_se(se, ("standard",), "BN-Inception")
    conv = functools.partial(conv_bn, bias=conv_bias)
    stem = nn.Sequential(
        OrderedDict(
            conv1=conv(in_chans, 64, 7, 2, 3),
            pool1=nn.MaxPool2d(3, 2, ceil_mode=True),
            conv2_reduce=conv(64, 64, 1),
            conv2=conv(64, 192, 3, 1, 1),
            pool2=nn.MaxPool2d(3, 2, ceil_mode=True),
        )
    )
    blocks, cin = OrderedDict(), 192
    for name, *row in _BN_INCEPTION:
        branches, cout = _bn_inception_module(cin, row, conv)
        blocks[f"inception_{name}"] = InceptionModule(branches, cout, se=se, stage=int(name[0]) - 2)
        cin = cout
    features = [
        ("stem.conv1", 64, 2),
        ("stem.conv2", 192, 4),
        ("blocks.inception_3b", 320, 8),
        ("blocks.inception_4d", 608, 16),
        ("blocks.inception_5b", 1024, 32),
    ]  # before each reduction
    return Inception(
        stem, nn.Sequential(blocks), cin, se=se, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
        min_size=32, features=features,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Inception-v3 and Inception-ResNet-v2 as released in TF-slim (and ported by torchvision and timm). A branch is a chain
# of steps: (channels, kernel) or (channels, kernel, stride) for a convolution → BN → ReLU, padded to keep the size at
# stride 1 and not padded at stride 2; the name of a pooling in _POOLS; or a list of branches that run in parallel on
# the chain's map and are concatenated (Inception-v3's 1×3 | 3×1 split, Fig. 7 of Szegedy et al. 2016).

_tf_conv = functools.partial(conv_bn, eps=1e-3)  # TensorFlow's BN epsilon
_POOLS = {
    "avg": lambda: nn.AvgPool2d(3, 1, 1),  # zero padding counted in the average (torchvision's Inception-v3)
    "avg_same": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),  # TF's "SAME" pooling (Inception-ResNet-v2)
    "max": lambda: nn.MaxPool2d(3, 2),  # the pass-through branch of a reduction module
}


def _branch(cin: int, steps: list) -> tuple[nn.Module, int]:
    """Build one branch; returns it and its output channels."""
    layers: list[nn.Module] = []
    for step in steps:
        if isinstance(step, str):
            layers.append(_POOLS[step]())
        elif isinstance(step, list):
            split, cin = _parallel(cin, step)
            layers.append(split)
        else:
            cout, kernel, stride = (*step, 1)[:3]
            layers.append(_tf_conv(cin, cout, kernel, stride, same_padding(kernel) if stride == 1 else 0))
            cin = cout
    return (layers[0] if len(layers) == 1 else nn.Sequential(*layers)), cin


def _parallel(cin: int, branches: list) -> tuple[Concat, int]:
    """Branches on the same input, concatenated; returns them and the total output channels."""
    built = [_branch(cin, steps) for steps in branches]
    return Concat(module for module, _ in built), sum(cout for _, cout in built)


def _tf_stem(in_chans: int) -> nn.Sequential:
    """The stem shared by Inception-v3 and Inception-ResNet-v2: 299×299 → 35×35, 192 channels."""
    return nn.Sequential(
        OrderedDict(
            Conv2d_1a_3x3=_tf_conv(in_chans, 32, 3, 2),  # 149×149
            Conv2d_2a_3x3=_tf_conv(32, 32, 3),  # 147×147
            Conv2d_2b_3x3=_tf_conv(32, 64, 3, 1, 1),
            MaxPool_3a_3x3=nn.MaxPool2d(3, 2),  # 73×73
            Conv2d_3b_1x1=_tf_conv(64, 80, 1),
            Conv2d_4a_3x3=_tf_conv(80, 192, 3),  # 71×71
            MaxPool_5a_3x3=nn.MaxPool2d(3, 2),  # 35×35
        )
    )


# The feature maps of the stem (147×147 and 71×71 at 299², as timm's): the last map before each pooling.
_TF_FEATURES = [("stem.Conv2d_2b_3x3", 64, 2), ("stem.Conv2d_4a_3x3", 192, 4)]


# Inception-v3 (Szegedy et al. 2016, Table 1 and Figs. 5-7), one function per kind of module.
def _v3_a(pool_proj: int) -> list:  # 35×35 (Fig. 5): 1×1 | 1×1 → 5×5 | 1×1 → 3×3 → 3×3 | avg pool → 1×1
    return [[(64, 1)], [(48, 1), (64, 5)], [(64, 1), (96, 3), (96, 3)], ["avg", (pool_proj, 1)]]


def _v3_b() -> list:  # 35 → 17 (Fig. 10): 3×3/2 | 1×1 → 3×3 → 3×3/2 | max pool
    return [[(384, 3, 2)], [(64, 1), (96, 3), (96, 3, 2)], ["max"]]


def _v3_c(c7: int) -> list:  # 17×17 (Fig. 6, n = 7): 1×1 | 1×7 → 7×1 | 7×1 → 1×7 → 7×1 → 1×7 | avg pool → 1×1
    return [
        [(192, 1)],
        [(c7, 1), (c7, (1, 7)), (192, (7, 1))],
        [(c7, 1), (c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))],
        ["avg", (192, 1)],
    ]


def _v3_d() -> list:  # 17 → 8: 1×1 → 3×3/2 | 1×1 → 1×7 → 7×1 → 3×3/2 | max pool
    return [[(192, 1), (320, 3, 2)], [(192, 1), (192, (1, 7)), (192, (7, 1)), (192, 3, 2)], ["max"]]


def _v3_e() -> list:  # 8×8 (Fig. 7): 1×1 | 1×1 → (1×3 | 3×1) | 1×1 → 3×3 → (1×3 | 3×1) | avg pool → 1×1
    split = [[(384, (1, 3))], [(384, (3, 1))]]
    return [[(320, 1)], [(384, 1), split], [(448, 1), (384, 3), split], ["avg", (192, 1)]]


#             module     stage  branches
_INCEPTION_V3 = (
    ("Mixed_5b", 1, _v3_a(32)),  # 35×35, 192 → 256 channels
    ("Mixed_5c", 1, _v3_a(64)),  # → 288
    ("Mixed_5d", 1, _v3_a(64)),  # → 288
    ("Mixed_6a", 2, _v3_b()),  # 35 → 17, → 768
    ("Mixed_6b", 2, _v3_c(128)),  # 17×17, → 768
    ("Mixed_6c", 2, _v3_c(160)),
    ("Mixed_6d", 2, _v3_c(160)),
    ("Mixed_6e", 2, _v3_c(192)),  # the auxiliary head reads this output
    ("Mixed_7a", 3, _v3_d()),  # 17 → 8, → 1280
    ("Mixed_7b", 3, _v3_e()),  # 8×8, → 2048
    ("Mixed_7c", 3, _v3_e()),
)  # fmt: skip


def _v3_aux_head(num_classes: int) -> nn.Sequential:
    """Inception-v3's auxiliary classifier on the 17×17×768 map: 5×5/3 average pool, 1×1 128, 5×5 768, linear."""
    if num_classes == 0:
        raise ValueError("aux_logits=True needs classes to predict; use num_classes >= 1 or aux_logits=False")
    return nn.Sequential(
        nn.AvgPool2d(5, 3),  # 17×17 → 5×5
        _tf_conv(768, 128, 1),
        _tf_conv(128, 768, 5),  # → 1×1 at 299×299 input
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(768, num_classes),
    )


def _inception_v3(
    se: SEConfig | None, *, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, aux_logits: bool = False
) -> Inception:
    """Inception-v3 (Szegedy et al. 2016) as in TF-slim and torchvision, and SE-Inception-v3; 299×299 input.

    SE sits after each of the eleven Inception modules, the reductions Mixed_6a and Mixed_7a included.
    ``se_stages`` numbers the module groups: 1 = Mixed_5b-5d (35×35), 2 = Mixed_6a-6e (17×17), 3 = Mixed_7a-7c
    (8×8). ``aux_logits=True`` adds the auxiliary classifier on Mixed_6e (3.3M parameters; training mode only, see
    `Inception`). The unpadded convolutions need ``min_size`` = 75 (299 with the auxiliary head, whose 5×5
    convolution needs a 17×17 map). ``drop_rate`` 0.2 is TF-slim's. Plain: 23.835M parameters, 5.713 GMACs at 299².
    """
    _check_se(se, ("standard",), "Inception-v3")
    blocks, cin = OrderedDict(), 192
    for name, stage, branches in _INCEPTION_V3:
        concat, cout = _parallel(cin, branches)
        blocks[name] = InceptionModule(list(concat), cout, se=se, stage=stage)
        cin = cout
    features = [*_TF_FEATURES, ("blocks.Mixed_5d", 288, 8), ("blocks.Mixed_6e", 768, 16), ("blocks.Mixed_7c", 2048, 32)]
    return Inception(
        _tf_stem(in_chans), nn.Sequential(blocks), cin, se=se, num_classes=num_classes, in_chans=in_chans,
        drop_rate=drop_rate, min_size=299 if aux_logits else 75, features=features,
        aux=_v3_aux_head(num_classes) if aux_logits else None, aux_map=3,  # the auxiliary head reads Mixed_6e
    )  # fmt: skip


# Inception-ResNet-v2 (Szegedy et al. 2017) as released in TF-slim: a 35×35 Inception module after the stem,
# then three stages of residual units, each but the first after a reduction module.
_IRV2_MIXED_5B = [[(96, 1)], [(48, 1), (64, 5)], [(64, 1), (96, 3), (96, 3)], ["avg_same", (64, 1)]]  # → 320
_IRV2_MIXED_6A = [[(384, 3, 2)], [(256, 1), (256, 3), (384, 3, 2)], ["max"]]  # 35 → 17, → 1088
_IRV2_MIXED_7A = [[(256, 1), (384, 3, 2)], [(256, 1), (288, 3, 2)], [(256, 1), (288, 3), (320, 3, 2)], ["max"]]
#    module before   unit name  units  residual scale  unit branches (then a linear 1×1 back to the width)
_IRV2_STAGES = (
    ("Mixed_5b", _IRV2_MIXED_5B, "block35", 10, 0.17, [[(32, 1)], [(32, 1), (32, 3)], [(32, 1), (48, 3), (64, 3)]]),
    ("Mixed_6a", _IRV2_MIXED_6A, "block17", 20, 0.10, [[(192, 1)], [(128, 1), (160, (1, 7)), (192, (7, 1))]]),
    ("Mixed_7a", _IRV2_MIXED_7A, "block8", 10, 0.20, [[(192, 1)], [(192, 1), (224, (1, 3)), (256, (3, 1))]]),
)  # fmt: skip  35×35 with 320 channels, 17×17 with 1088, 8×8 with 2080


def _inception_resnet_v2(
    se: SEConfig | None, *, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2
) -> Inception:
    """Inception-ResNet-v2 (Szegedy et al. 2017) as in TF-slim and timm, and SE-Inception-ResNet-v2; 299×299.

    10, 20 and 10 residual units at 35×35, 17×17 and 8×8 (``se_stages`` 1, 2, 3), residual scales 0.17, 0.10 and
    0.20; the last unit has scale 1 and no ReLU; a 1×1 convolution to 1536 channels before pooling. SE sits on the
    residual branch of every unit, before the scaled addition (not on the identity path); the three Inception
    modules Mixed_5b, 6a and 7a get none. Plain: 55.843M parameters, 13.156 GMACs at 299² (timm's count), min_size 75.

    The paper's Table 2 prints 11.75 → 11.76 GFLOPs and does not say how it counted them; we could not find out
    why. Candidates counted here, none of them 11.75 (plain, GMACs): this network with the Inception-v4 paper's Fig. 15
    depths 5, 10, 5, 8.51 at 299²; that paper's own figures (Inception-v4 stem, widths 384, 1152, 2144), 9.26 with
    5, 10, 5 units and 14.14 with 10, 20, 10; this network at 224², 6.47. We count the released network.
    """
    _check_se(se, InceptionResNetUnit.positions, "Inception-ResNet-v2")
    blocks, cin = OrderedDict(), 192
    for stage, (module_name, module, unit_name, units, scale, branches) in enumerate(_IRV2_STAGES, 1):
        blocks[module_name], cin = _parallel(cin, module)
        for i in range(1, units + 1):
            last = stage == 3 and i == units
            blocks[f"{unit_name}_{i}"] = InceptionResNetUnit(
                cin, branches, scale=1.0 if last else scale, activate=not last, se=se, stage=stage
            )
    blocks["Conv2d_7b_1x1"] = _tf_conv(cin, 1536, 1)
    features = [*_TF_FEATURES, ("blocks.block35_10", 320, 8), ("blocks.block17_20", 1088, 16),
                ("blocks.Conv2d_7b_1x1", 1536, 32)]  # fmt: skip
    return Inception(
        _tf_stem(in_chans), nn.Sequential(blocks), 1536, se=se, num_classes=num_classes, in_chans=in_chans,
        drop_rate=drop_rate, min_size=75, features=features,
    )  # fmt: skip


register_twins(
    "se_bn_inception", "bn_inception", _bn_inception, family="inception",
    summaries=("SE-BN-Inception (paper Table 2: 2.04 GFLOPs; released model 23.62% top-1 error)",
               "BN-Inception (Ioffe & Szegedy, ICML 2015; paper Table 2: 2.03 GFLOPs)"),
)  # fmt: skip
register_twins(
    "se_inception_v3", "inception_v3", _inception_v3, family="inception", input_size=(3, 299, 299),
    summaries=("SE-Inception-v3: SE after each of Inception-v3's eleven modules",
               "Inception-v3 (Szegedy et al., CVPR 2016) as in TF-slim and torchvision"),
)  # fmt: skip
register_twins(
    "se_inception_resnet_v2", "inception_resnet_v2", _inception_resnet_v2, family="inception",
    input_size=(3, 299, 299),
    summaries=("SE-Inception-ResNet-v2 (paper Table 2: 11.76 GFLOPs by the paper's count; SE on every unit's branch)",
               "Inception-ResNet-v2 (Szegedy et al., AAAI 2017) as in TF-slim and timm"),
)  # fmt: skip
