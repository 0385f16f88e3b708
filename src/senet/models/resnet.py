"""SE-ResNet, SE-ResNeXt, SENet-154 and the CIFAR residual networks (paper §4, Tables 2, 4 and 14).

One `ResNet` class stacks residual blocks in stages; each network of the paper is a `ResNetSpec`, a row of numbers,
in the table at the end of this file. The SE unit sits on the residual branch before the addition (paper Fig. 3)
unless ``se_position`` moves it (Fig. 5, Table 15).

Two layouts of the ImageNet bottleneck networks exist, chosen by ``layout``:

* ``"original"`` (default): the released Caffe models and their widely used PyTorch port. In SE-ResNet the stride 2
  of a downsampling bottleneck is on its first 1×1 convolution; SE-ResNeXt and SENet-154 put it on the 3×3. The
  stem's 3×3 max pool has no padding and rounds up (Caffe's ceil mode). This is the layout the paper's complexity
  figures describe (ResNet-50: 3.86 GMACs).
* ``"v1.5"``: torchvision and timm (``seresnet50``). The stride is on the 3×3 convolution of every bottleneck and
  the max pool pads by 1. Slightly more accurate and more costly (ResNet-50: 4.09 GMACs).

ResNet-D (He et al., "Bag of Tricks", CVPR 2019, §4.1: ``resnet50d``) is the v1.5 layout with a deep stem of three
3×3 convolutions (32, 32, 64 channels) and shortcuts that average-pool before their 1×1 convolution; it is timm's
``resnet50d`` and the base of its ECA-ResNets (``eca_resnet50d``, `senet.layers.attention`).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import POSITIONS, SEConfig
from ._convs import init_convs
from .base import ResidualBlock, Staged
from .registry import register_attention_model, register_twins

__all__ = ["BasicBlock", "Bottleneck", "PreActBasicBlock", "PreActBottleneck", "ResNet", "ResNetSpec"]

LAYOUTS = ("original", "v1.5")


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class PadShortcut(nn.Module):
    """He et al.'s parameter-free CIFAR shortcut ("option A"): subsample, then pad the new channels with zeros."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            # x[:, :, ::s, ::s] as a 1×1 average pool: the same values, but its backward keeps x's memory layout,
            # where a slice's backward builds a contiguous (NCHW) gradient that autograd must then add to the
            # channels_last gradient of the block's branch (about 6× the time of a same-layout addition).
            x = F.avg_pool2d(x, 1, self.stride)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class BasicBlock(ResidualBlock):
    """Two 3×3 convolutions, each followed by BN (He et al. 2016); ``stride`` on the first.

    ``branch_relu``: a ReLU after the second BN too, so that SE rescales the rectified branch (conv-BN-ReLU-conv-
    BN-ReLU, SE, addition, ReLU; the model option ``relu_before_se``). Not the paper's block (Fig. 3 rescales the BN
    output); it is the block of timm's ``legacy_seresnet18`` / ``legacy_seresnet34``, whose ImageNet weights compute
    their function only with it.
    """

    positions = ("standard", "pre", "post", "identity")

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        downsample: nn.Module | None,
        *,
        se,
        stage: int,
        branch_relu: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = nn.ReLU(inplace=True) if branch_relu else None
        self.downsample = downsample
        self._attach_se(se, stage, {"standard": cout, "pre": cin, "post": cout, "identity": cout})

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(self._pre(x))))
        out = self.bn2(self.conv2(out))
        if self.act2 is not None:
            out = self.act2(out)
        return self._merge(out, shortcut)


class Bottleneck(ResidualBlock):
    """1×1 reduce, 3×3 (grouped in ResNeXt), 1×1 expand, each followed by BN.

    Args:
        width: channels of the 3×3 convolution.
        width1: channels out of the first 1×1 (default ``width``; SENet-154 halves it).
        stride_in_1x1: put the stride on the first 1×1 (Caffe ResNet) instead of the 3×3 (v1.5, ResNeXt).
    """

    positions = POSITIONS

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        downsample: nn.Module | None,
        *,
        se,
        stage: int,
        width: int,
        groups: int = 1,
        width1: int | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        width1 = width1 or width
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(cin, width1, s1)
        self.bn1 = nn.BatchNorm2d(width1)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width1, width, 3, s3, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = downsample
        self._attach_se(se, stage, {"standard": cout, "pre": cin, "post": cout, "identity": cout, "after_3x3": width})

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(self._pre(x))))
        out = self._mid(self.act2(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self._merge(out, shortcut)


class PreActBasicBlock(ResidualBlock):
    """Pre-activation basic block (He et al., "Identity Mappings", 2016): BN-ReLU-3×3, BN-ReLU-3×3.

    A projection shortcut takes the pre-activated input. ``drop_rate`` is the dropout between the two convolutions
    of wide ResNets.
    """

    positions = ("standard", "pre", "post", "identity")
    post_act = False

    def __init__(
        self, cin: int, cout: int, stride: int, downsample: nn.Module | None, *, se, stage: int, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = conv3x3(cout, cout)
        self.downsample = downsample
        self._attach_se(se, stage, {"standard": cout, "pre": cin, "post": cout, "identity": cout})

    def last_bn(self) -> None:
        return None

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self._pre(x)))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.drop(self.act2(self.bn2(out))))
        return self._merge(out, shortcut)


class PreActBottleneck(ResidualBlock):
    """Pre-activation bottleneck (He et al., "Identity Mappings", 2016): BN-ReLU-1×1, BN-ReLU-3×3, BN-ReLU-1×1."""

    positions = POSITIONS
    post_act = False

    def __init__(
        self, cin: int, cout: int, stride: int, downsample: nn.Module | None, *, se, stage: int, width: int
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1 = conv1x1(cin, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride)
        self.bn3 = nn.BatchNorm2d(width)
        self.act3 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, cout)
        self.downsample = downsample
        self._attach_se(se, stage, {"standard": cout, "pre": cin, "post": cout, "identity": cout, "after_3x3": width})

    def last_bn(self) -> None:
        return None

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self._pre(x)))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self._mid(self.conv2(self.act2(self.bn2(out))))
        out = self.conv3(self.act3(self.bn3(out)))
        return self._merge(out, shortcut)


def _stem(kind: str, in_chans: int, width: int, ceil_pool: bool) -> nn.Sequential:
    """``imagenet``: 7×7/2 conv and 3×3/2 max pool; ``deep``: three 3×3 convs (SENet-154) and the pool;
    ``cifar``: one 3×3 conv, BN, ReLU; ``cifar_preact``: one 3×3 conv (the first block normalises)."""
    if kind == "cifar_preact":
        return nn.Sequential(OrderedDict(conv1=conv3x3(in_chans, width)))
    if kind == "cifar":
        return nn.Sequential(
            OrderedDict(conv1=conv3x3(in_chans, width), bn1=nn.BatchNorm2d(width), act1=nn.ReLU(inplace=True))
        )
    if kind == "imagenet":
        layers = [("conv1", nn.Conv2d(in_chans, width, 7, 2, 3, bias=False)), ("bn1", nn.BatchNorm2d(width))]
        layers.append(("act1", nn.ReLU(inplace=True)))
    elif kind == "deep":
        half = width // 2
        chans = [(in_chans, half, 2), (half, half, 1), (half, width, 1)]
        layers = []
        for i, (cin, cout, stride) in enumerate(chans, 1):
            layers += [(f"conv{i}", conv3x3(cin, cout, stride)), (f"bn{i}", nn.BatchNorm2d(cout))]
            layers.append((f"act{i}", nn.ReLU(inplace=True)))
    else:
        raise ValueError(f"stem={kind!r} is not one of 'imagenet', 'deep', 'cifar', 'cifar_preact'")
    # Caffe rounds the pooled size up and pads nothing; torchvision pads by 1. Both give 56×56 from 224×224.
    pool = nn.MaxPool2d(3, 2, ceil_mode=True) if ceil_pool else nn.MaxPool2d(3, 2, padding=1)
    return nn.Sequential(OrderedDict([*layers, ("pool", pool)]))


def _shortcut(kind: str, cin: int, cout: int, stride: int) -> nn.Module:
    """The projection on the identity path where a block changes shape.

    ``conv1x1``: strided 1×1 conv + BN (ResNet "option B"); ``conv3x3``: 3×3 conv + BN (SENet-154);
    ``pad``: subsample and zero-pad (CIFAR ResNet "option A"); ``preact``: a bare 1×1 conv (pre-activation nets);
    ``avg``: 2×2 average pooling (ceil mode, padding not counted) where strided, then 1×1 conv + BN (ResNet-D).
    """
    if kind == "pad":
        return PadShortcut(cin, cout, stride)
    if kind == "avg":
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        return nn.Sequential(pool, conv1x1(cin, cout), nn.BatchNorm2d(cout))
    if kind == "preact":
        return conv1x1(cin, cout, stride)
    conv = conv3x3(cin, cout, stride) if kind == "conv3x3" else conv1x1(cin, cout, stride)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


@dataclass(frozen=True)
class ResNetSpec:
    """A residual network as data: everything that differs between the networks of the family.

    Bottleneck widths follow ResNeXt: a stage of output width ``cout`` has ``cout / 4`` planes and a 3×3
    convolution of ``planes · base_width / 64 · groups`` channels (ResNet-50: 64 → 64; ResNeXt-50 32×4d: 64 → 128).
    """

    name: str  # for messages: "ResNet-50", "CIFAR ResNet-20", ...
    block: type[ResidualBlock]
    depths: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # output channels of each stage
    strides: tuple[int, ...] = (1, 2, 2, 2)  # of each stage's first block
    stem: str = "imagenet"  # see _stem
    stem_width: int = 64
    shortcut: str = "conv1x1"  # see _shortcut
    first_shortcut: str | None = None  # stage 1's where it differs (SENet-154: 1×1)
    groups: int = 1  # bottlenecks: groups of the 3×3 convolution (ResNeXt's cardinality)
    base_width: int = 64  # bottlenecks: see above
    halve_first: bool = False  # bottlenecks: the first 1×1 at half the 3×3's width (SENet-154)
    final_act: bool = False  # BN and ReLU after the last stage (pre-activation networks)

    def block_args(self, cout: int, *, stride_in_1x1: bool, block_drop_rate: float, relu_before_se: bool) -> dict:
        """The keyword arguments of a block of output width ``cout``."""
        if relu_before_se and self.block is not BasicBlock:
            raise ValueError(f"relu_before_se=True applies to basic blocks (ResNet-18/34); {self.name} has "
                             f"{self.block.__name__}s")  # fmt: skip
        if self.block is Bottleneck:
            width = cout // 4 * self.base_width // 64 * self.groups
            width1 = width // 2 if self.halve_first else None
            return dict(width=width, groups=self.groups, stride_in_1x1=stride_in_1x1, width1=width1)
        if self.block is PreActBottleneck:
            return dict(width=cout // 4)
        if self.block is PreActBasicBlock:
            return dict(drop_rate=block_drop_rate)
        return dict(branch_relu=relu_before_se)


class ResNet(Staged):
    """A residual network: a stem, stages of residual blocks, global average pooling and a linear classifier.

    Args:
        spec: the network (see `ResNetSpec`).
        se: the SE configuration, or None for the plain network.
        ceil_pool: the stem's max pool in Caffe's ceil mode without padding (``layout="original"``).
        stride_in_1x1: the stride of a downsampling bottleneck on its first 1×1 (Caffe's SE-ResNet).
        zero_init_last: the last BN of every block starts at 0, so that each block starts as the identity.
        block_drop_rate: dropout between the two convolutions of a pre-activation basic block (wide ResNets).
        relu_before_se: basic blocks rectify their branch before SE (see `BasicBlock`).
    """

    def __init__(
        self,
        spec: ResNetSpec,
        se: SEConfig | None,
        *,
        num_classes: int,
        in_chans: int,
        ceil_pool: bool = False,
        stride_in_1x1: bool = False,
        drop_rate: float = 0.0,
        zero_init_last: bool = False,
        block_drop_rate: float = 0.0,
        relu_before_se: bool = False,
    ) -> None:
        super().__init__()
        if not len(spec.depths) == len(spec.widths) == len(spec.strides):
            raise ValueError(f"{spec.name}: depths, widths and strides must have one entry per stage")
        if se is not None:
            se.check(len(spec.depths), spec.block.positions, f"{spec.name} with {spec.block.__name__}")
        self.se_config = se
        self.stem = _stem(spec.stem, in_chans, spec.stem_width, ceil_pool)
        cin = spec.stem_width
        for i, (depth, cout, stride) in enumerate(zip(spec.depths, spec.widths, spec.strides, strict=True), 1):
            kind = spec.first_shortcut if (i == 1 and spec.first_shortcut) else spec.shortcut
            args = spec.block_args(
                cout, stride_in_1x1=stride_in_1x1, block_drop_rate=block_drop_rate, relu_before_se=relu_before_se
            )
            blocks = []
            for j in range(depth):
                s = stride if j == 0 else 1
                down = _shortcut(kind, cin, cout, s) if (s != 1 or cin != cout) else None
                blocks.append(spec.block(cin, cout, s, down, se=se, stage=i, **args))
                cin = cout
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.num_stages = len(spec.depths)
        self.final_bn = nn.BatchNorm2d(cin) if spec.final_act else None
        self.final_act = nn.ReLU(inplace=True) if spec.final_act else None
        pooled = spec.stem in ("imagenet", "deep")  # a stride-2 stem and a stride-2 pool
        reductions = [(4 if pooled else 1) * math.prod(spec.strides[: i + 1]) for i in range(len(spec.strides))]
        self._init_head(cin, num_classes, in_chans, drop_rate, min_size=reductions[-1])
        maps = list(zip(spec.widths, reductions, strict=True))
        self._init_staged_features((spec.stem_width, 2) if pooled else None, maps)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        init_convs(self)
        if zero_init_last:  # each block starts as the identity (Goyal et al. 2017)
            for stage in self.stages():
                for blk in stage:
                    bn = blk.last_bn()
                    if bn is None:
                        raise ValueError(f"zero_init_last needs a BN at the end of the branch; {type(blk).__name__}")
                    nn.init.zeros_(bn.weight)

    def _after_stages(self) -> list[tuple[str, nn.Module]]:
        return [] if self.final_bn is None else [("final_bn", self.final_bn), ("final_act", self.final_act)]


# ---------------------------------------------------------------------------------------------------------------------
# The networks. A builder makes the SE model of a spec (se = SEConfig) or its plain twin (se = None); its keyword
# arguments are the options `senet.create_model` accepts for the network.


def _imagenet(
    spec: ResNetSpec,
    se: SEConfig | None,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    layout: str = "original",
    drop_rate: float = 0.0,
    zero_init_last: bool = False,
    relu_before_se: bool = False,
) -> ResNet:
    """An ImageNet ResNet, ResNeXt or SENet-154 in the ``layout`` of the released Caffe models or of torchvision.

    ``relu_before_se=True`` (ResNet-18/34 only) rectifies each basic block's branch before SE and the addition, as
    timm's ``legacy_seresnet18/34`` do (not the paper's block; see `BasicBlock`); the plain twin gets the same ReLU.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS} (original = the released Caffe models)")
    original = layout == "original"
    return ResNet(
        spec, se, num_classes=num_classes, in_chans=in_chans, ceil_pool=original,
        stride_in_1x1=original and spec.groups == 1, drop_rate=drop_rate, zero_init_last=zero_init_last,
        relu_before_se=relu_before_se,
    )  # fmt: skip


def _cifar(
    spec: ResNetSpec,
    se: SEConfig | None,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    zero_init_last: bool = False,
) -> ResNet:
    """He et al.'s CIFAR ResNet (§4.2 of the ResNet paper; the SE paper's Table 4): 32×32 input, a 3×3 stem without
    pooling, 3 stages of basic blocks of 16-32-64 channels, zero-padding shortcuts (option A)."""
    return ResNet(
        spec, se, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, zero_init_last=zero_init_last
    )


def _resnet_d(
    spec: ResNetSpec,
    se: SEConfig | None,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    zero_init_last: bool = False,
) -> ResNet:
    """A ResNet-D (He et al., "Bag of Tricks", CVPR 2019; timm's resnet50d, resnet101d): the v1.5 layout (stride in
    the 3×3), a deep stem of three 3×3 convolutions (32-32-64) and average-pool shortcuts; 224×224 input, 1000
    classes."""
    return ResNet(
        spec, se, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, zero_init_last=zero_init_last
    )


def _preact(spec: ResNetSpec, se: SEConfig | None, *, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0):
    """A pre-activation CIFAR network (no BN ends a block's branch, so no ``zero_init_last``)."""
    return ResNet(spec, se, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)


def _wide(
    spec: ResNetSpec,
    se: SEConfig | None,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    block_drop_rate: float = 0.0,
) -> ResNet:
    """A wide ResNet; ``block_drop_rate`` is the dropout between the two convolutions of a block."""
    return ResNet(
        spec, se, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, block_drop_rate=block_drop_rate
    )


_BASIC = (64, 128, 256, 512)
_BOTTLENECK = (256, 512, 1024, 2048)
_CIFAR = dict(strides=(1, 2, 2), stem="cifar", stem_width=16, shortcut="pad")  # He et al. §4.2, option A
_RESNET_D = dict(stem="deep", shortcut="avg")  # deep stem 32-32-64 (stem_width 64), average-pool shortcuts
_PREACT = dict(strides=(1, 2, 2), stem="cifar_preact", stem_width=16, shortcut="preact", final_act=True)


def _cifar_resnet(depth: int) -> ResNetSpec:
    """He et al.'s CIFAR ResNet-{depth}: 3 stages of (depth - 2) / 6 basic blocks, 16-32-64 channels."""
    n = (depth - 2) // 6
    return ResNetSpec(f"CIFAR ResNet-{depth}", BasicBlock, (n, n, n), (16, 32, 64), **_CIFAR)


SENET154 = ResNetSpec(
    "SENet-154", Bottleneck, (3, 8, 36, 3), _BOTTLENECK, stem="deep", stem_width=128, shortcut="conv3x3",
    first_shortcut="conv1x1", groups=64, base_width=4, halve_first=True,
)  # fmt: skip

# SE model, plain twin, builder, spec, and what the pair is (the SE model's line first).
_NETWORKS = [
    ("se_resnet18", "resnet18", _imagenet, ResNetSpec("ResNet-18", BasicBlock, (2, 2, 2, 2), _BASIC),
     "ResNet-18 (He et al., CVPR 2016, Table 1) with SE on each basic block's residual branch",
     "ResNet-18 (He et al., CVPR 2016, Table 1)"),
    ("se_resnet34", "resnet34", _imagenet, ResNetSpec("ResNet-34", BasicBlock, (3, 4, 6, 3), _BASIC),
     "ResNet-34 (He et al., CVPR 2016, Table 1) with SE on each basic block's residual branch",
     "ResNet-34 (He et al., CVPR 2016, Table 1)"),
    ("se_resnet50", "resnet50", _imagenet, ResNetSpec("ResNet-50", Bottleneck, (3, 4, 6, 3), _BOTTLENECK),
     "SE-ResNet-50 (paper Table 2: 28.1M parameters, 3.87 GFLOPs; released model 22.37% top-1 error)",
     "ResNet-50 (He et al., CVPR 2016; paper Table 2: 25.6M parameters, 3.86 GFLOPs)"),
    ("se_resnet101", "resnet101", _imagenet, ResNetSpec("ResNet-101", Bottleneck, (3, 4, 23, 3), _BOTTLENECK),
     "SE-ResNet-101 (paper Table 2: 49.3M parameters, 7.60 GFLOPs; released model 21.75% top-1 error)",
     "ResNet-101 (He et al., CVPR 2016; paper Table 2: 44.5M parameters, 7.58 GFLOPs)"),
    ("se_resnet152", "resnet152", _imagenet, ResNetSpec("ResNet-152", Bottleneck, (3, 8, 36, 3), _BOTTLENECK),
     "SE-ResNet-152 (paper Table 2: 66.8M parameters, 11.32 GFLOPs; released model 21.34% top-1 error)",
     "ResNet-152 (He et al., CVPR 2016; paper Table 2: 60.2M parameters, 11.30 GFLOPs)"),
    ("se_resnext50_32x4d", "resnext50_32x4d", _imagenet,
     ResNetSpec("ResNeXt-50", Bottleneck, (3, 4, 6, 3), _BOTTLENECK, groups=32, base_width=4),
     "SE-ResNeXt-50 32×4d (paper Table 2: 27.6M parameters, 4.25 GFLOPs; released model 20.97% top-1 error)",
     "ResNeXt-50 32×4d (Xie et al., CVPR 2017; paper Table 2: 25.0M parameters, 4.24 GFLOPs)"),
    ("se_resnext101_32x4d", "resnext101_32x4d", _imagenet,
     ResNetSpec("ResNeXt-101", Bottleneck, (3, 4, 23, 3), _BOTTLENECK, groups=32, base_width=4),
     "SE-ResNeXt-101 32×4d (paper Table 2: 49.0M parameters, 8.00 GFLOPs; released model 19.81% top-1 error)",
     "ResNeXt-101 32×4d (Xie et al., CVPR 2017; paper Table 2: 44.2M parameters, 7.99 GFLOPs)"),
    ("se_resnet50d", "resnet50d", _resnet_d,
     ResNetSpec("ResNet-50-D", Bottleneck, (3, 4, 6, 3), _BOTTLENECK, **_RESNET_D),
     "SE-ResNet-50-D: ResNet-50-D with SE on each bottleneck's residual branch",
     "ResNet-50-D (He et al., 'Bag of Tricks', CVPR 2019, §4.1: deep stem, average-pool shortcuts; timm resnet50d)"),
    ("se_resnet101d", "resnet101d", _resnet_d,
     ResNetSpec("ResNet-101-D", Bottleneck, (3, 4, 23, 3), _BOTTLENECK, **_RESNET_D),
     "SE-ResNet-101-D: ResNet-101-D with SE on each bottleneck's residual branch",
     "ResNet-101-D (He et al., 'Bag of Tricks', CVPR 2019, §4.1; timm resnet101d)"),
    ("senet154", "resnext154_64x4d", functools.partial(_imagenet, drop_rate=0.2), SENET154,
     "SENet-154 (paper §6.1: the ILSVRC 2017 winner's base model; released model 18.68% top-1 error, 20.7 GFLOPs)",
     "SENet-154 without SE: ResNeXt-152 64×4d with SENet-154's stem, halved first 1×1s and 3×3 shortcuts"),
    ("se_resnet20", "resnet20", _cifar, _cifar_resnet(20),
     "SE-ResNet-20 for CIFAR (paper Table 4 reports ResNet-110 and -164)", "He et al.'s CIFAR ResNet-20 (§4.2)"),
    ("se_resnet32", "resnet32", _cifar, _cifar_resnet(32),
     "SE-ResNet-32 for CIFAR", "He et al.'s CIFAR ResNet-32 (§4.2)"),
    ("se_resnet56", "resnet56", _cifar, _cifar_resnet(56),
     "SE-ResNet-56 for CIFAR", "He et al.'s CIFAR ResNet-56 (§4.2)"),
    ("se_resnet110", "resnet110", _cifar, _cifar_resnet(110),
     "SE-ResNet-110 (paper Table 4: CIFAR-10 error 6.37 → 5.21%)", "He et al.'s CIFAR ResNet-110 (§4.2)"),
    ("se_preact_resnet164", "preact_resnet164", _preact,
     ResNetSpec("pre-activation ResNet-164", PreActBottleneck, (18, 18, 18), (64, 128, 256), **_PREACT),
     "SE pre-activation ResNet-164 (paper Table 4: CIFAR-10 error 5.46 → 4.39%)",
     "Pre-activation ResNet-164 (He et al., ECCV 2016, 'Identity Mappings'): 3 stages of 18 bottlenecks"),
    ("se_wrn16_8", "wrn16_8", _wide, ResNetSpec("WRN-16-8", PreActBasicBlock, (2, 2, 2), (128, 256, 512), **_PREACT),
     "SE-WRN-16-8 (paper Table 4 reports WRN-16-8 on CIFAR)",
     "Wide ResNet-16-8 (Zagoruyko & Komodakis, BMVC 2016): 3 stages of 2 pre-activation basic blocks"),
]  # fmt: skip
# The CIFAR-style ResNet-18 with SE of kuangliu/pytorch-cifar (SENet18, widely used for CIFAR): a 3×3 stride-1 stem
# (conv, BN, ReLU) and no max-pool, pre-activation basic blocks in stages [2, 2, 2, 2] of 64-128-256-512 channels
# (1×1-convolution shortcuts on the pre-activated input), SE by two 1×1 convolutions on the residual branch before the
# addition, average pooling and a linear classifier. 11.3M parameters.
_SEED_18 = ResNetSpec("CIFAR SENet-18", PreActBasicBlock, (2, 2, 2, 2), _BASIC, stem="cifar", shortcut="preact")

for _se, _plain, _build, _spec, _se_doc, _plain_doc in _NETWORKS:
    _cifar_net = _spec.stem != "imagenet" and _spec.stem != "deep"
    register_twins(
        _se, _plain, functools.partial(_build, _spec), family="cifar" if _cifar_net else "resnet",
        input_size=(3, 32, 32) if _cifar_net else (3, 224, 224), summaries=(_se_doc, _plain_doc),
    )  # fmt: skip
register_twins(
    "se_resnet18_cifar", "resnet18_cifar", functools.partial(_preact, _SEED_18), family="cifar",
    input_size=(3, 32, 32), se_defaults={"se_conv": True},
    summaries=("CIFAR-style SE-ResNet-18 (3×3 stem, no max-pool; pre-activation basic blocks, SE as two 1×1 "
               "convolutions), as kuangliu/pytorch-cifar's SENet18",
               "CIFAR-style ResNet-18 (3×3 stem, no max-pool, pre-activation basic blocks) without SE"),
)  # fmt: skip
# timm's ECA-ResNet-D models (ecaresnet50d, ecaresnet101d): ECA in SE's place, its kernel size ψ(C) per block.
for _depth in (50, 101):
    register_attention_model(
        f"eca_resnet{_depth}d", f"se_resnet{_depth}d", "eca",
        summary=f"ECA-ResNet-{_depth}-D (Wang et al., CVPR 2020, ECA in SE's place; timm ecaresnet{_depth}d)",
    )  # fmt: skip
