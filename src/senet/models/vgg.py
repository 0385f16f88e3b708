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


class VGG(Classifier):
    """VGG-16 with BN after every convolution and SE-VGG-16 (paper Table 2): 13 convolutions → BN → ReLU (→ SE),
    then the three fully connected layers; 138.366M parameters.

    fc6 and fc7 (4096 wide, ReLU and dropout after each) are held as a 7×7 and a 1×1 convolution, as VGG's dense
    evaluation converts them (its §3.2), applied to the last map average-pooled to 7×7, as torchvision does: the same
    weights and multiply-adds as linear layers, and any input of at least 32 pixels (five 2×2 poolings; ``min_size``).
    ``forward_features`` returns fc7's output, (B, 4096, 1, 1), and fc8 is the classifier ``fc``. ``se_stages``
    numbers the five stages of `_VGG16`; ``r`` may give one ratio per stage. The convolutions keep their biases
    before BN, as torchvision's ``vgg16_bn`` (whose weights map onto these in order).
    """

    def __init__(
        self, se: SEConfig | None, *, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5
    ) -> None:
        super().__init__()
        if se is not None:
            se.check(len(_VGG16), ("standard",), "VGG-16")
        self.se_config = se
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin = in_chans
        for stage, (cout, convs) in enumerate(_VGG16, 1):
            cfg = se_for_block(se, stage)
            for i in range(1, convs + 1):
                layers[f"conv{stage}_{i}"] = conv_bn(cin, cout, 3, 1, 1, bias=True)
                if cfg is not None:
                    layers[f"se{stage}_{i}"] = cfg.make(cout, stage)
                cin = cout
            layers[f"pool{stage}"] = nn.MaxPool2d(2, 2)
        self.features = nn.Sequential(layers)
        self.pre_logits = nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(7),
                fc6=nn.Conv2d(cin, 4096, 7),  # → (B, 4096, 1, 1)
                act6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(drop_rate),
                fc7=nn.Conv2d(4096, 4096, 1),
                act7=nn.ReLU(inplace=True),
            )
        )
        self._init_head(4096, num_classes, in_chans, drop_rate, min_size=32)
        init_convs(self)

    def _features(self, x: Tensor) -> Tensor:
        return self.pre_logits(self.features(x))


register_twins(
    "se_vgg16_bn", "vgg16_bn", VGG, family="vgg",
    summaries=("SE-VGG-16 with BN (paper Table 2: 15.48 GFLOPs), SE after every convolution's ReLU",
               "VGG-16 with BN after every convolution (Simonyan & Zisserman, ICLR 2015; paper Table 2: 15.47 GFLOPs)"),
)  # fmt: skip
