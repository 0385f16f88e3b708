"""SE-VGG-16 with batch normalisation (paper §3.3 and Table 2: 15.47 → 15.48 GFLOPs).

The paper integrates SE into VGGNet "by insertion after the non-linearity following each convolution" (§3.3) and
trains VGG-16 "with Batch Normalization layers after each convolution" (§5.1). So every 3×3 convolution is followed by
BN, ReLU and an SE unit: 13 units.

Multiply-adds: plain VGG-16 is 15.470 G. The 13 SE units add 0.0136 G per pass over their inputs (13.5M elements)
and 0.0002 G of FCs; `senet.profile` counts two passes (squeeze and scale), 15.498 G, while the paper's 15.48 matches
one (15.484 G), as its MobileNet and ShuffleNet figures do (see `senet.models.mobile`). One SE unit per stage, after
its last convolution, also gives 15.48 under two passes (15.483 G), but contradicts §3.3.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import SEConfig, se_for_block
from ._convs import conv_bn, init_convs
from .base import Classifier
from .registry import register_twins

__all__ = ["VGG"]

# VGG-16 (Simonyan & Zisserman 2015, Table 1, configuration D): 3×3 convolutions, a 2×2 max pool after each stage.
#   output channels  convolutions
_VGG16 = (
    (64, 2),  # 224×224
    (128, 2),  # 112×112
    (256, 3),  # 56×56
    (512, 3),  # 28×28
    (512, 3),  # 14×14, pooled to 7×7
)  # fmt: skip


def at_least_7(x: Tensor) -> Tensor:
    """``x`` average-pooled up to 7×7 where it is smaller (a no-op on maps of 7×7 and more): timm's ``ConvMlp``.

    Kept as one call by ``torch.fx`` (`torch.fx.wrap` below): its size test cannot be traced symbolically.
    """
    h, w = x.shape[-2:]
    return x if h >= 7 and w >= 7 else F.adaptive_avg_pool2d(x, (max(7, h), max(7, w)))


torch.fx.wrap("at_least_7")


class _AtLeast7(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return at_least_7(x)


HEADS = ("pool", "dense")


class VGG(Classifier):
    """VGG-16 with BN after every convolution and SE-VGG-16 (paper Table 2): 13 convolutions → BN → ReLU (→ SE),
    then the three fully connected layers; 138.366M parameters.

    fc6 and fc7 (4096 wide, ReLU and dropout after each) are held as a 7×7 and a 1×1 convolution, as VGG's dense
    evaluation converts them (its §3.2): the same weights and multiply-adds as linear layers, and any input of at
    least 32 pixels (five 2×2 poolings; ``min_size``). ``head`` says where fc6 looks:

    * ``"pool"`` (default): at the last map average-pooled to 7×7, as torchvision's ``vgg16_bn`` (one window).
    * ``"dense"``: slid over the whole map (smaller maps pooled up to 7×7), class scores averaged over the windows:
      VGG's dense evaluation (§3.2), as timm's ``vgg16_bn``. The two are the same function where the last map is
      7×7 or smaller (inputs below 256 pixels), and differ above.

    ``forward_features`` returns fc7's output, (B, 4096, h, w) (1×1 with ``head="pool"``), and fc8 is the
    classifier ``fc``. ``se_stages`` numbers the five stages of `_VGG16`; ``r`` may give one ratio per stage. The
    convolutions keep their biases before BN, as torchvision's ``vgg16_bn``. The feature maps are each stage's last
    map before its pooling (strides 1 to 16), as timm's.
    """

    def __init__(
        self,
        se: SEConfig | None,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        head: str = "pool",
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head={head!r} is not one of {', '.join(map(repr, HEADS))}")
        if se is not None:
            se.check(len(_VGG16), ("standard",), "VGG-16")
        self.se_config = se
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        maps = []
        cin = in_chans
        for stage, (cout, convs) in enumerate(_VGG16, 1):
            cfg = se_for_block(se, stage)
            for i in range(1, convs + 1):
                layers[f"conv{stage}_{i}"] = conv_bn(cin, cout, 3, 1, 1, bias=True)
                if cfg is not None:
                    layers[f"se{stage}_{i}"] = cfg.make(cout, stage)
                cin = cout
            maps.append((f"features.{next(reversed(layers))}", cout, 2 ** (stage - 1)))
            layers[f"pool{stage}"] = nn.MaxPool2d(2, 2)
        self.features = nn.Sequential(layers)
        self.pre_logits = nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(7) if head == "pool" else _AtLeast7(),
                fc6=nn.Conv2d(cin, 4096, 7),  # → (B, 4096, 1, 1) after the 7×7 pooling
                act6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(drop_rate),
                fc7=nn.Conv2d(4096, 4096, 1),
                act7=nn.ReLU(inplace=True),
            )
        )
        self._init_head(4096, num_classes, in_chans, drop_rate, min_size=32)
        self._init_features(maps)
        init_convs(self)

    def module_sequence(self) -> list[tuple[str, nn.Module]]:
        return [(f"features.{n}", m) for n, m in self.features.named_children()] + [
            (f"pre_logits.{n}", m) for n, m in self.pre_logits.named_children()
        ]


register_twins(
    "se_vgg16_bn", "vgg16_bn", VGG, family="vgg",
    summaries=("SE-VGG-16 with BN (paper Table 2: 15.48 GFLOPs), SE after every convolution's ReLU",
               "VGG-16 with BN after every convolution (Simonyan & Zisserman, ICLR 2015; paper Table 2: 15.47 GFLOPs)"),
)  # fmt: skip
