"""SE-ResNet, SE-ResNeXt, SENet-154 and the CIFAR residual networks (paper §4, Tables 2, 4 and 14).

One `ResNet` class stacks residual blocks in stages; the builders at the end of this file write each network of
the paper as a row of numbers. The SE unit sits on the residual branch before the addition (paper Fig. 3) unless
``se_position`` moves it (Fig. 5, Table 15).

Two layouts of the ImageNet bottleneck networks exist, chosen by ``layout``:

* ``"original"`` (default): the released Caffe models and their widely used PyTorch port. In SE-ResNet the stride 2
  of a downsampling bottleneck is on its first 1×1 convolution; SE-ResNeXt and SENet-154 put it on the 3×3. The
  stem's 3×3 max pool has no padding and rounds up (Caffe's ceil mode). This is the layout the paper's complexity
  figures describe (ResNet-50: 3.86 GMACs).
* ``"v1.5"``: torchvision and timm (``seresnet50``). The stride is on the 3×3 convolution of every bottleneck and
  the max pool pads by 1. Slightly more accurate and more costly (ResNet-50: 4.09 GMACs).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import POSITIONS, SEConfig, se_for_block
from ._base import Classifier
from ._registry import register_twins

__all__ = ["BasicBlock", "Bottleneck", "PreActBasicBlock", "PreActBottleneck", "ResNet"]

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


class _Residual(nn.Module):
    """The addition of a residual block and the SE unit around it; subclasses build the branch.

    ``self.se_position`` is None in a block without SE.
    """

    post_act = True  # ReLU after the addition (False in pre-activation blocks)
    se: nn.Module | None

    def _attach_se(self, se: SEConfig | None, stage: int, widths: dict[str, int]) -> None:
        cfg = se_for_block(se, stage)
        self.se_position = cfg.position if cfg is not None else None
        self.se = cfg.make(widths[cfg.position], stage) if cfg is not None else None
        self.act = nn.ReLU(inplace=True) if self.post_act else nn.Identity()

    def _merge(self, out: Tensor, shortcut: Tensor) -> Tensor:
        # ``out`` is the branch's own last result (a BN or convolution output that backward does not need), so the
        # merge writes into it rather than into fresh memory; the SE unit does so only when autograd and hooks let it.
        pos = self.se_position
        if pos == "standard":
            if self.post_act and self.se.kernel == "triton":
                return self.se(out, shortcut, relu=True)  # relu(s·out + shortcut), one kernel on CUDA
            out = self.se(out, shortcut, inplace=True)  # s·out + shortcut, fused
        elif pos == "identity":
            out += self.se(shortcut)
        else:
            out += shortcut
        out = self.act(out)  # in place
        return self.se(out, inplace=True) if pos == "post" else out

    def _pre(self, x: Tensor) -> Tensor:
        return self.se(x) if self.se_position == "pre" else x

    def _mid(self, x: Tensor) -> Tensor:
        return self.se(x, inplace=True) if self.se_position == "after_3x3" else x


class BasicBlock(_Residual):
    """Two 3×3 convolutions, each followed by BN (He et al. 2016); ``stride`` on the first."""

    positions = ("standard", "pre", "post", "identity")

    def __init__(self, cin: int, cout: int, stride: int, downsample: nn.Module | None, *, se, stage: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample
        self._attach_se(se, stage, {"standard": cout, "pre": cin, "post": cout, "identity": cout})

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(self._pre(x))))
        out = self.bn2(self.conv2(out))
        return self._merge(out, shortcut)


class Bottleneck(_Residual):
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


class PreActBasicBlock(_Residual):
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


class PreActBottleneck(_Residual):
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
    ``pad``: subsample and zero-pad (CIFAR ResNet "option A"); ``preact``: a bare 1×1 conv (pre-activation nets).
    """
    if kind == "pad":
        return PadShortcut(cin, cout, stride)
    if kind == "preact":
        return conv1x1(cin, cout, stride)
    conv = conv3x3(cin, cout, stride) if kind == "conv3x3" else conv1x1(cin, cout, stride)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


class ResNet(Classifier):
    """A residual network: a stem, stages of residual blocks, global average pooling and a linear classifier.

    Args:
        block: the block class, called as ``block(cin, cout, stride, downsample, se=..., stage=..., **block_args)``.
        depths: blocks per stage.
        widths: output channels of each stage.
        se: the SE configuration, or None for the plain network.
        strides: stride of each stage's first block.
        stem: see `_stem`; ``stem_width`` its output channels.
        shortcut: see `_shortcut`; ``first_shortcut`` overrides it for stage 1 (SENet-154 uses 1×1 there).
        block_args: a function of the stage's output width giving the block's keyword arguments.
        final_act: BN and ReLU after the last stage (pre-activation networks).
        min_size: the smallest input side; the overall stride of the network by default.
    """

    def __init__(
        self,
        block: type[_Residual],
        depths: Sequence[int],
        widths: Sequence[int],
        *,
        se: SEConfig | None,
        num_classes: int,
        in_chans: int,
        strides: Sequence[int] = (1, 2, 2, 2),
        stem: str = "imagenet",
        stem_width: int = 64,
        ceil_pool: bool = False,
        shortcut: str = "conv1x1",
        first_shortcut: str | None = None,
        block_args: Callable[[int], dict] = lambda cout: {},
        final_act: bool = False,
        drop_rate: float = 0.0,
        zero_init_last: bool = False,
        family: str = "ResNet",
    ) -> None:
        super().__init__()
        if not len(depths) == len(widths) == len(strides):
            raise ValueError(f"depths {depths}, widths {widths} and strides {strides} must have one entry per stage")
        if se is not None:
            se.check(len(depths), block.positions, f"{family} with {block.__name__}")
        self.se_config = se
        self.stem = _stem(stem, in_chans, stem_width, ceil_pool)
        cin = stem_width
        for i, (depth, cout, stride) in enumerate(zip(depths, widths, strides, strict=True), 1):
            blocks = []
            for j in range(depth):
                s = stride if j == 0 else 1
                kind = first_shortcut if (i == 1 and first_shortcut) else shortcut
                down = _shortcut(kind, cin, cout, s) if (s != 1 or cin != cout) else None
                blocks.append(block(cin, cout, s, down, se=se, stage=i, **block_args(cout)))
                cin = cout
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.num_stages = len(depths)
        self.final_bn = nn.BatchNorm2d(cin) if final_act else None
        self.final_act = nn.ReLU(inplace=True) if final_act else None
        total_stride = (4 if stem in ("imagenet", "deep") else 1) * math.prod(strides)
        self._init_head(cin, num_classes, in_chans, drop_rate, min_size=total_stride)
        self._init_weights(zero_init_last)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i}") for i in range(1, self.num_stages + 1)]

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:  # each block starts as the identity (Goyal et al. 2017)
            for stage in self.stages():
                for blk in stage:
                    bn = blk.last_bn()
                    if bn is None:
                        raise ValueError(f"zero_init_last needs a BN at the end of the branch; {type(blk).__name__}")
                    nn.init.zeros_(bn.weight)

    def _features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        if self.final_bn is not None:
            x = self.final_act(self.final_bn(x))
        return x


# ---------------------------------------------------------------------------------------------------------------------
# The networks. Each builder makes an SE model (se = SEConfig) or its plain twin (se = None).


def _bottleneck_args(groups: int, base_width: int, stride_in_1x1: bool, halve_first: bool = False):
    """Block arguments for a stage of output width ``cout``: planes = cout / 4, width = planes·base_width/64·groups."""

    def args(cout: int) -> dict:
        width = cout // 4 * base_width // 64 * groups
        return dict(width=width, groups=groups, stride_in_1x1=stride_in_1x1, width1=width // 2 if halve_first else None)

    return args


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS} (original = the released Caffe models)")


def _imagenet(block: type[_Residual], depths: tuple[int, ...], *, groups: int = 1, base_width: int = 64):
    """A builder for an ImageNet ResNet/ResNeXt of stage widths 64..512 (basic) or 256..2048 (bottleneck)."""
    widths = (64, 128, 256, 512) if block is BasicBlock else (256, 512, 1024, 2048)
    resnext = groups > 1

    def build(
        se: SEConfig | None,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        layout: str = "original",
        drop_rate: float = 0.0,
        zero_init_last: bool = False,
    ) -> ResNet:
        _check_layout(layout)
        original = layout == "original"
        block_args = (
            _bottleneck_args(groups, base_width, stride_in_1x1=original and not resnext)
            if block is Bottleneck
            else (lambda cout: {})
        )
        return ResNet(
            block,
            depths,
            widths,
            se=se,
            num_classes=num_classes,
            in_chans=in_chans,
            ceil_pool=original,
            block_args=block_args,
            drop_rate=drop_rate,
            zero_init_last=zero_init_last,
            family="ResNeXt" if resnext else "ResNet",
        )

    return build


def _senet154(
    se: SEConfig | None,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    layout: str = "original",
    drop_rate: float = 0.2,
    zero_init_last: bool = False,
) -> ResNet:
    """SENet-154 (paper §6.1, ILSVRC 2017 winner): 64×4d ResNeXt bottlenecks in stages [3, 8, 36, 3].

    The paper's changes to ResNeXt-152: the first 1×1 of each bottleneck has half the width; the 7×7 stem is three
    3×3 convolutions (64, 64, 128 channels); shortcuts that downsample are 3×3 stride-2 convolutions; dropout 0.2
    before the classifier. The plain twin ``resnext154_64x4d`` is the same network without SE.
    """
    _check_layout(layout)
    return ResNet(
        Bottleneck,
        (3, 8, 36, 3),
        (256, 512, 1024, 2048),
        se=se,
        num_classes=num_classes,
        in_chans=in_chans,
        stem="deep",
        stem_width=128,
        ceil_pool=layout == "original",
        shortcut="conv3x3",
        first_shortcut="conv1x1",
        block_args=_bottleneck_args(groups=64, base_width=4, stride_in_1x1=False, halve_first=True),
        drop_rate=drop_rate,
        zero_init_last=zero_init_last,
        family="SENet-154",
    )


def _cifar_resnet(depth: int):
    """He et al.'s CIFAR ResNet-{depth}: 3 stages of (depth-2)/6 basic blocks, 16-32-64 channels, option-A shortcuts."""
    n = (depth - 2) // 6

    def build(
        se: SEConfig | None,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        zero_init_last: bool = False,
    ) -> ResNet:
        return ResNet(
            BasicBlock,
            (n, n, n),
            (16, 32, 64),
            se=se,
            num_classes=num_classes,
            in_chans=in_chans,
            strides=(1, 2, 2),
            stem="cifar",
            stem_width=16,
            shortcut="pad",
            drop_rate=drop_rate,
            zero_init_last=zero_init_last,
            family=f"CIFAR ResNet-{depth}",
        )

    return build


def _preact_resnet164(
    se: SEConfig | None, *, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0
) -> ResNet:
    """Pre-activation ResNet-164 for CIFAR (He et al., "Identity Mappings"): 3 stages of 18 bottlenecks,
    output widths 64-128-256, BN-ReLU before pooling."""
    return ResNet(
        PreActBottleneck,
        (18, 18, 18),
        (64, 128, 256),
        se=se,
        num_classes=num_classes,
        in_chans=in_chans,
        strides=(1, 2, 2),
        stem="cifar_preact",
        stem_width=16,
        shortcut="preact",
        block_args=lambda cout: dict(width=cout // 4),
        final_act=True,
        drop_rate=drop_rate,
        family="pre-activation ResNet-164",
    )


def _wrn16_8(
    se: SEConfig | None,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    block_drop_rate: float = 0.0,
) -> ResNet:
    """Wide ResNet-16-8 (Zagoruyko & Komodakis 2016): 3 stages of 2 pre-activation basic blocks, widths
    128-256-512; ``block_drop_rate`` is the dropout between the two convolutions of a block."""
    return ResNet(
        PreActBasicBlock,
        (2, 2, 2),
        (128, 256, 512),
        se=se,
        num_classes=num_classes,
        in_chans=in_chans,
        strides=(1, 2, 2),
        stem="cifar_preact",
        stem_width=16,
        shortcut="preact",
        block_args=lambda cout: dict(drop_rate=block_drop_rate),
        final_act=True,
        drop_rate=drop_rate,
        family="WRN-16-8",
    )


def _resnet18_cifar(se: SEConfig | None, *, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0) -> ResNet:
    """The source notes' CIFAR SENet-18: a 3×3 stem (conv, BN, ReLU), pre-activation basic blocks in stages
    [2, 2, 2, 2] of 64-128-256-512 channels, SE by two 1×1 convolutions on the residual branch before the addition,
    average pooling and a linear classifier. 11.3M parameters."""
    return ResNet(
        PreActBasicBlock,
        (2, 2, 2, 2),
        (64, 128, 256, 512),
        se=se,
        num_classes=num_classes,
        in_chans=in_chans,
        strides=(1, 2, 2, 2),
        stem="cifar",
        stem_width=64,
        shortcut="preact",
        drop_rate=drop_rate,
        family="CIFAR SENet-18",
    )


#                 SE model               plain twin             builder
_IMAGENET = [
    ("se_resnet18", "resnet18", _imagenet(BasicBlock, (2, 2, 2, 2))),
    ("se_resnet34", "resnet34", _imagenet(BasicBlock, (3, 4, 6, 3))),
    ("se_resnet50", "resnet50", _imagenet(Bottleneck, (3, 4, 6, 3))),
    ("se_resnet101", "resnet101", _imagenet(Bottleneck, (3, 4, 23, 3))),
    ("se_resnet152", "resnet152", _imagenet(Bottleneck, (3, 8, 36, 3))),
    ("se_resnext50_32x4d", "resnext50_32x4d", _imagenet(Bottleneck, (3, 4, 6, 3), groups=32, base_width=4)),
    ("se_resnext101_32x4d", "resnext101_32x4d", _imagenet(Bottleneck, (3, 4, 23, 3), groups=32, base_width=4)),
    ("senet154", "resnext154_64x4d", _senet154),
]
_CIFAR = [
    ("se_resnet20", "resnet20", _cifar_resnet(20)),
    ("se_resnet32", "resnet32", _cifar_resnet(32)),
    ("se_resnet56", "resnet56", _cifar_resnet(56)),
    ("se_resnet110", "resnet110", _cifar_resnet(110)),
    ("se_preact_resnet164", "preact_resnet164", _preact_resnet164),
    ("se_wrn16_8", "wrn16_8", _wrn16_8),
]

for _se, _plain, _build in _IMAGENET:
    register_twins(_se, _plain, _build, family="resnet")
for _se, _plain, _build in _CIFAR:
    register_twins(_se, _plain, _build, family="cifar", input_size=(3, 32, 32))
register_twins(
    "se_resnet18_cifar", "resnet18_cifar", _resnet18_cifar, family="cifar", input_size=(3, 32, 32),
    se_defaults={"se_conv": True},
)  # fmt: skip
