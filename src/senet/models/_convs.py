"""The convolution → BatchNorm → ReLU unit that the Inception, mobile and VGG families are stacked from."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

__all__ = ["conv_bn", "init_convs", "same_padding"]

Size = int | tuple[int, int]


def same_padding(kernel: Size) -> int | tuple[int, int]:
    """The padding that keeps the size of a stride-1 map: k // 2 per side (1 for 3×3, (0, 3) for 1×7)."""
    return kernel // 2 if isinstance(kernel, int) else (kernel[0] // 2, kernel[1] // 2)


def conv_bn(
    cin: int,
    cout: int,
    kernel: Size,
    stride: int = 1,
    padding: Size = 0,
    *,
    groups: int = 1,
    bias: bool = False,
    eps: float = 1e-5,
    act: bool = True,
    act_layer: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """``conv`` (no bias unless asked: BN's shift replaces it), ``bn`` and, with ``act``, ``act`` = ``act_layer``
    (ReLU; MobileNet offers ReLU6).

    ``bias=True`` is for networks released with a bias before the BN (Caffe's BN-Inception, torchvision's VGG-BN);
    ``eps=1e-3`` is TensorFlow's BN epsilon, kept by the Inception-v3 and Inception-ResNet-v2 ports.
    """
    layers = [
        ("conv", nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias)),
        ("bn", nn.BatchNorm2d(cout, eps=eps)),
    ]
    if act:
        layers.append(("act", act_layer(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


def init_convs(model: nn.Module) -> None:
    """He et al.'s normal initialisation (fan-out, for ReLU) of every convolution; BN starts at weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.is_meta:  # meta: no values to draw (profile, cost)
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
