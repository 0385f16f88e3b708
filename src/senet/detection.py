"""SE networks as backbones of torchvision's detection models: a feature pyramid (Lin et al., "Feature Pyramid
Networks for Object Detection", CVPR 2017) on the stage outputs of any senet network, SE-ResNet-50 and
SE-ResNeXt-101 above all (the paper detects objects on COCO with SE-ResNet-50 and -101 in Faster R-CNN).

``fpn_backbone("se_resnet50", weights="DEFAULT")`` returns a module that torchvision's ``FasterRCNN``,
``MaskRCNN``, ``KeypointRCNN``, ``RetinaNet`` and ``FCOS`` take as ``backbone``: its forward returns an ordered dict of
maps ("0", "1", ..., "pool"), all of ``out_channels`` channels, as torchvision's ``resnet_fpn_backbone`` does.
Pretrained backbones follow torchvision's recipe: BatchNorm frozen (detection batches are small) and the first stages
not trained.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from .factory import create_model
from .models import FeatureNet

# torchvision is imported where it is used: `import senet` does not pay for it (1.5 s on 2 cores). ``extra_blocks``
# are torchvision's ``ExtraFPNBlock`` modules, annotated as the ``nn.Module`` they are so that the hints resolve.

__all__ = ["FPNBackbone", "fpn_backbone", "freeze_batchnorm"]


class FPNBackbone(nn.Module):
    """``body`` (a `senet.models.FeatureNet`) and a feature pyramid on its maps; ``out_channels`` as torchvision's
    detection models read it. ``body.weights_meta`` (published weights) gives the normalisation the weights expect,
    for the detection model's ``image_mean`` / ``image_std``."""

    def __init__(self, body: FeatureNet, out_channels: int = 256, extra_blocks: nn.Module | None = None) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            body.feature_info.channels(), out_channels, extra_blocks=extra_blocks or LastLevelMaxPool()
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        maps = self.body(x)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by torchvision's ``FrozenBatchNorm2d`` with the same statistics,
    scale and shift (the same function as the BN in eval mode, in training too); returns ``module``."""
    from torchvision.ops import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen.to(child.weight.device))
        else:
            freeze_batchnorm(child)
    return module


def fpn_backbone(
    name: str = "se_resnet50",
    *,
    weights: str | None = None,
    out_indices: Sequence[int] = (1, 2, 3, 4),
    trainable_stages: int | None = None,
    frozen_bn: bool | None = None,
    out_channels: int = 256,
    extra_blocks: nn.Module | None = None,
    **options,
) -> FPNBackbone:
    """A feature-pyramid backbone for torchvision's detection models, from any senet network.

    Args:
        name: a senet model (`senet.list_models()`); SE-ResNet / SE-ResNeXt above all.
        weights: published weights (``"DEFAULT"`` or a tag of `senet.list_weights(name)`), or None for fresh ones.
        out_indices: the maps the pyramid reads, indices into the network's ``feature_info`` (ResNets: 0 = the
            stem's stride-2 map, 1-4 = the stages at strides 4-32; (1, 2, 3, 4) as torchvision's).
        trainable_stages: how many of the maps, counted from the last, have trainable modules before them; the
            modules up to the others are frozen (``requires_grad=False``). Default: 3 with weights (torchvision's
            recipe: the stem and the first stage frozen), every map without.
        frozen_bn: BatchNorm as ``FrozenBatchNorm2d`` (fixed statistics and affine). Default: with weights.
        out_channels: channels of every pyramid level.
        extra_blocks: the pyramid's extra levels (torchvision's ``LastLevelMaxPool`` by default; ``LastLevelP6P7``
            for RetinaNet).
        **options: ``create_model`` options of the network (``layout="v1.5"``, SE options, ...).

    Raises:
        ValueError: an unknown model or option (as `senet.create_model`), or ``trainable_stages`` outside
            0..number of maps.
    """
    body = create_model(name, weights=weights, features_only=True, out_indices=out_indices, **options)
    network = body.network
    count = len(network.feature_info)
    trainable = count if trainable_stages is None and weights is None else trainable_stages
    trainable = 3 if trainable is None else trainable
    if isinstance(trainable, bool) or not isinstance(trainable, int) or not 0 <= trainable <= count:
        raise ValueError(f"trainable_stages={trainable_stages!r} must be an int in 0..{count} ({name} has {count} "
                         "feature maps)")  # fmt: skip
    if trainable < count:  # freeze every module up to the last map that is not trained
        last_frozen = network.feature_info[count - trainable - 1]["module"]
        for path, module in network.module_sequence():
            module.requires_grad_(False)
            if path == last_frozen:
                break
    if frozen_bn if frozen_bn is not None else weights is not None:
        freeze_batchnorm(body)
    return FPNBackbone(body, out_channels, extra_blocks)
