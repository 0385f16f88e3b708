"""SE-MobileNet (v1) and SE-ShuffleNet (v1): the paper's mobile setting (§5.1, Table 3).

SE-MobileNet rescales the output of each depthwise-separable block (after its pointwise convolution, BN and ReLU);
SE-ShuffleNet rescales the residual branch of each ShuffleNet unit before the addition or concatenation with the
shortcut, as SE-ResNet does (paper §3.3: "following similar schemes"). ``se_position="after_3x3"`` moves the unit
to the output of the 3×3 depthwise convolution (the paper's SE_3×3 variant, Table 15; where MobileNetV3 puts it).

Complexity (224², 1000 classes, r = 16 in every SE unit, the paper's default; `senet.profile`):

* MobileNet 4.232M → 4.718M parameters, 568.7 → 574.6 MMACs. The paper's Table 3: 4.2M → 4.7M, 569 → 572.
* ShuffleNet 1× (g = 3) 1.866M → 2.485M parameters, 137.5 → 141.3 MMACs. The paper's Table 3: 1.8M → 2.4M,
  140 → 142. Its parameter counts are ours truncated to one decimal (the SE increase, 0.62M, is its 0.6M); no other
  reduction ratio or width rule is needed. Its 140 is the ShuffleNet paper's budget for the whole 1× family
  ("~140 MFLOPs"); that paper's Table 1 gives 137M for g = 3, as counted here.
* `senet.profile` counts each SE unit's squeeze and scale, one multiply-add per element each, plus its FCs:
  +5.9 MMACs in MobileNet, +3.8 in ShuffleNet. One per element gives +3.2 and +2.2, the paper's +3 and +2
  (568.7 + 3.2 = 571.9, its 572). SE-VGG-16 shows the same (`senet.models.vgg`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from ..layers import SEConfig, se_for_block
from ._convs import conv_bn, init_convs
from .base import ResidualBlock, Staged
from .registry import register_twins

__all__ = ["DepthwiseSeparable", "MobileNet", "ShuffleNet", "ShuffleUnit", "channel_shuffle"]


# ---------------------------------------------------------------------------------------------------------------------
# MobileNet v1 (Howard et al. 2017, Table 1): a 3×3 stride-2 convolution, then 13 depthwise-separable blocks.

_ACTS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}

#   output channels  stride of the first block  blocks
_MOBILENET = (
    (64, 1, 1),  # 112×112
    (128, 2, 2),  # 56×56
    (256, 2, 2),  # 28×28
    (512, 2, 6),  # 14×14
    (1024, 2, 2),  # 7×7
)  # fmt: skip


class DepthwiseSeparable(nn.Module):
    """3×3 depthwise convolution → BN → ReLU, 1×1 pointwise convolution → BN → ReLU (MobileNet Fig. 3), then SE."""

    positions = ("standard", "after_3x3")

    def __init__(
        self, cin: int, cout: int, stride: int, *, se: SEConfig | None, stage: int, act: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__()
        self.depthwise = conv_bn(cin, cin, 3, stride, 1, groups=cin, act_layer=act)
        self.pointwise = conv_bn(cin, cout, 1, act_layer=act)
        cfg = se_for_block(se, stage)
        self.se_position = cfg.position if cfg is not None else None
        self.se = cfg.make(cin if self.se_position == "after_3x3" else cout, stage) if cfg is not None else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.depthwise(x)
        if self.se_position == "after_3x3":
            x = self.se(x)
        x = self.pointwise(x)
        return self.se(x) if self.se_position == "standard" else x


class MobileNet(Staged):
    """MobileNet v1 (Howard et al. 2017) and SE-MobileNet (paper Table 3: 569 → 572 MMACs); ``width_mult`` is the
    width multiplier α: 1.0 ("1.0 MobileNet-224", the paper's), 0.75, 0.5, 0.25.

    ``se_stages`` numbers the five resolutions of `_MOBILENET` (1 = 112×112 ... 5 = 7×7); ``r`` may give one ratio
    per stage. ``min_size`` is the total stride, 32. ``act`` is the activation after every BN: ``"relu"`` (the
    MobileNet paper's) or ``"relu6"`` (min(max(x, 0), 6), as TensorFlow's and timm's MobileNet v1 and their weights);
    the SE unit's own δ stays ReLU (paper eq. 3).
    """

    def __init__(
        self,
        se: SEConfig | None,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        act: str = "relu",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not 0 < width_mult <= 4:
            raise ValueError(f"width_mult={width_mult!r} must be a number in (0, 4]; the paper uses 1, 0.75, 0.5, 0.25")
        if act not in _ACTS:
            raise ValueError(f"act={act!r} is not one of {', '.join(map(repr, _ACTS))}")
        if se is not None:
            se.check(len(_MOBILENET), DepthwiseSeparable.positions, "MobileNet")
        self.se_config = se
        self.width_mult = width_mult

        def width(c: int) -> int:
            return max(1, round(c * width_mult))

        layer = _ACTS[act]
        self.stem = conv_bn(in_chans, width(32), 3, 2, 1, act_layer=layer)
        rows = [(width(cout), stride, blocks) for cout, stride, blocks in _MOBILENET]
        cin = self._add_stages(
            width(32),
            rows,
            lambda cin, cout, stride, stage, j: DepthwiseSeparable(cin, cout, stride, se=se, stage=stage, act=layer),
        )
        self._init_head(cin, num_classes, in_chans, drop_rate, min_size=32)
        self._init_staged_features(None, [(c, 2 ** (i + 1)) for i, (c, _, _) in enumerate(rows)])  # 112² ... 7²
        init_convs(self)


# ---------------------------------------------------------------------------------------------------------------------
# ShuffleNet v1 (Zhang et al. 2018, Table 1): a 3×3 stride-2 convolution and a max pool, then three stages of units.

_SHUFFLENET_UNITS = (4, 8, 4)  # units in stages 2, 3, 4; the first unit of each halves the resolution
#                  groups  output channels of stages 2, 3, 4 (ShuffleNet 1×)
_SHUFFLENET_WIDTHS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}  # fmt: skip


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` groups (ShuffleNet Fig. 1c): (B, g·n, H, W) → groups of n, transposed."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(ResidualBlock):
    """A ShuffleNet unit (Fig. 2b, c): 1×1 group conv → BN → ReLU → channel shuffle → 3×3 depthwise conv → BN →
    1×1 group conv → BN, added to the input (stride 1) or concatenated with its 3×3 average pool (stride 2); ReLU.

    The bottleneck has a quarter of the stage's output channels. With stride 2 the branch makes ``cout - cin``
    channels so that the concatenation has ``cout``. ``first_groups`` is the first convolution's groups (1 in the
    network's first unit, whose input has only 24 channels). SE sits on the branch before the merge ("standard"),
    after the depthwise convolution ("after_3x3") or after the merge and its ReLU ("post").
    """

    positions = ("standard", "after_3x3", "post")

    def __init__(
        self, cin: int, cout: int, stride: int, *, groups: int, first_groups: int, se: SEConfig | None, stage: int
    ) -> None:
        super().__init__()
        mid = cout // 4
        branch_out = cout - cin if stride == 2 else cout
        self.groups = groups
        self.stride = stride
        self.conv1 = conv_bn(cin, mid, 1, groups=first_groups)
        self.conv2 = conv_bn(mid, mid, 3, stride, 1, groups=mid, act=False)
        self.conv3 = conv_bn(mid, branch_out, 1, groups=groups, act=False)
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self._attach_se(se, stage, {"standard": branch_out, "after_3x3": mid, "post": cout})

    def forward(self, x: Tensor) -> Tensor:
        out = channel_shuffle(self.conv1(x), self.groups)
        out = self.conv3(self._mid(self.conv2(out)))
        if self.pool is None:
            return self._merge(out, x)
        if self.se_position == "standard":
            out = self.se(out)
        out = self.act(torch.cat([self.pool(x), out], 1))
        return self.se(out) if self.se_position == "post" else out


class ShuffleNet(Staged):
    """ShuffleNet v1 1× (Zhang et al. 2018) and SE-ShuffleNet (paper Table 3: 140 → 142 MMACs); ``groups`` g ∈
    {1, 2, 3, 4, 8}, 3 by default as in the paper.

    ``se_stages`` numbers the three stages of units (1 = the paper's Stage2 at 28×28 ... 3 = Stage4 at 7×7).
    ``min_size`` is the total stride, 32.
    """

    def __init__(
        self,
        se: SEConfig | None,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        groups: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if groups not in _SHUFFLENET_WIDTHS:
            raise ValueError(f"groups={groups!r} is not one of {tuple(_SHUFFLENET_WIDTHS)} (ShuffleNet Table 1)")
        if se is not None:
            se.check(len(_SHUFFLENET_UNITS), ShuffleUnit.positions, "ShuffleNet")
        self.se_config = se
        self.groups = groups
        self.stem = nn.Sequential(OrderedDict(conv1=conv_bn(in_chans, 24, 3, 2, 1), pool=nn.MaxPool2d(3, 2, 1)))

        def unit(cin: int, cout: int, stride: int, stage: int, j: int) -> ShuffleUnit:
            first_groups = 1 if (stage, j) == (1, 0) else groups  # the 24 input channels are not grouped
            return ShuffleUnit(cin, cout, stride, groups=groups, first_groups=first_groups, se=se, stage=stage)

        widths = _SHUFFLENET_WIDTHS[groups]
        cin = self._add_stages(24, [(c, 2, n) for c, n in zip(widths, _SHUFFLENET_UNITS, strict=True)], unit)
        self._init_head(cin, num_classes, in_chans, drop_rate, min_size=32)
        self._init_staged_features((24, 2), [(c, 8 * 2**i) for i, c in enumerate(widths)])  # the conv, 28² ... 7²
        init_convs(self)


register_twins(
    "se_mobilenet", "mobilenet", MobileNet, family="mobile",
    summaries=("SE-MobileNet (paper Table 3: 572 MFLOPs, 4.7M parameters)",
               "MobileNet v1 1.0 (Howard et al., 2017; paper Table 3: 569 MFLOPs, 4.2M parameters)"),
)  # fmt: skip
register_twins(
    "se_shufflenet", "shufflenet", ShuffleNet, family="mobile",
    summaries=("SE-ShuffleNet 1× (g = 3) (paper Table 3: 142 MFLOPs, 2.4M parameters)",
               "ShuffleNet v1 1× (g = 3) (Zhang et al., CVPR 2018; paper Table 3: 140 MFLOPs, 1.8M parameters)"),
)  # fmt: skip
