"""SE networks as backbones of torchvision's detection models (`senet.detection`): a training step and an inference
step of Faster R-CNN with an SE-ResNet-50 FPN backbone and of RetinaNet with an SE-ResNeXt-50 one, on random images;
the pyramid's maps, the frozen stages and BatchNorm."""

import pytest
import torch
from conftest import slow
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import senet
from senet.detection import fpn_backbone, freeze_batchnorm

IMAGES = [torch.rand(3, 120, 150), torch.rand(3, 140, 110)]  # two sizes: the detector batches and resizes them
TARGETS = [
    {"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([1])},
    {"boxes": torch.tensor([[5.0, 5.0, 50.0, 40.0], [30.0, 30.0, 100.0, 120.0]]), "labels": torch.tensor([2, 1])},
]


def train_then_detect(model: torch.nn.Module) -> list[dict]:
    """One SGD step on the two images, then inference on them; checks that the step moved the trainable weights
    only, and returns the detections."""
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    losses = model.train()(IMAGES, TARGETS)
    loss = sum(losses.values())
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    optimizer.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in frozen.items())
    moved = [n for n, p in trainable.items() if not torch.equal(params[n], p)]
    assert any(n.startswith("backbone.body.layer4.") and ".se." in n for n in moved)  # SE units train
    assert any(n.startswith("backbone.fpn.") for n in moved)
    with torch.no_grad():
        detections = model.eval()(IMAGES)
    assert len(detections) == 2
    for found in detections:
        assert set(found) == {"boxes", "labels", "scores"} and found["boxes"].shape[1:] == (4,)
        assert torch.isfinite(found["boxes"]).all()
    return detections


@slow
def test_faster_rcnn_with_an_se_resnet50_fpn_backbone_trains_and_detects():
    backbone = fpn_backbone("se_resnet50", frozen_bn=True, trainable_stages=3)  # torchvision's pretrained recipe
    model = FasterRCNN(backbone, num_classes=3, min_size=128, max_size=160)
    train_then_detect(model)
    body = backbone.body
    assert not any(p.requires_grad for p in body.stem.parameters()) and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad and body.layer2[0].se.fc1.weight.requires_grad


@slow
def test_retinanet_with_an_se_resnext50_fpn_backbone_trains_and_detects():
    backbone = fpn_backbone(
        "se_resnext50_32x4d", layout="v1.5", out_indices=(2, 3, 4), extra_blocks=LastLevelP6P7(2048, 256)
    )  # RetinaNet's P3-P7 (Lin et al. 2017, Focal Loss)
    model = RetinaNet(backbone, num_classes=3, min_size=128, max_size=160)
    train_then_detect(model)
    assert all(p.requires_grad for p in backbone.parameters())  # fresh weights: every stage trains


def test_the_pyramid_reads_the_chosen_maps_and_freezes_what_it_is_told():
    backbone = fpn_backbone("se_resnet18", trainable_stages=2, frozen_bn=True)
    assert backbone.body.feature_info.channels() == [64, 128, 256, 512] and backbone.out_channels == 256
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = backbone.eval()(x)
    assert list(maps) == ["0", "1", "2", "3", "pool"]
    assert [m.shape[-1] for m in maps.values()] == [16, 8, 4, 2, 1] and all(m.shape[1] == 256 for m in maps.values())
    body = backbone.body
    assert not body.layer2[1].conv2.weight.requires_grad and body.layer3[0].conv1.weight.requires_grad
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    with pytest.raises(ValueError, match=r"trainable_stages=6 must be an int in 0\.\.5"):
        fpn_backbone("se_resnet18", trainable_stages=6)


def test_frozen_batchnorm_computes_the_eval_mode_batchnorm():
    model = senet.create_model("se_resnet20")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(), m.running_var.uniform_(0.5, 2), m.weight.normal_(), m.bias.normal_()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x)
        frozen = freeze_batchnorm(model).train()  # training mode changes nothing in a frozen BN
        assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())
        torch.testing.assert_close(frozen(x), expected, rtol=1e-5, atol=1e-5)


TOP_LEVEL_BN = ["preact_resnet164", "se_preact_resnet164", "wrn16_8", "se_wrn16_8"]  # final_bn, a child of the net


@pytest.mark.parametrize("name", [n if n == "se_wrn16_8" else pytest.param(n, marks=slow) for n in TOP_LEVEL_BN])
def test_frozen_bn_freezes_the_modules_that_run(name):
    # A BatchNorm that is a direct child of the network was once swapped on the feature network only, and the
    # network's forward kept running the old, unfrozen one (batch statistics in training and in eval mode).
    backbone = fpn_backbone(name, out_indices=(0, 1, 2), frozen_bn=True).double()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.body.network.modules())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)  # float64: random deep nets reach ~1e7, beyond float32's digits
    with torch.no_grad():
        backbone.train()  # a frozen BN uses its running statistics in training mode too: each image on its own
        alone, pair = backbone(x[:1]), backbone(x)
    for key in pair:
        scale = pair[key].abs().max().item()
        assert (alone[key][0] - pair[key][0]).abs().max().item() <= 1e-10 * scale, key


@slow
def test_every_network_with_a_top_level_batchnorm_is_tested_frozen():
    found = []
    for name in senet.list_models():
        with torch.device("meta"):  # no memory, no initialisation: the module tree only
            body = senet.create_model(name, features_only=True)
        if any(isinstance(m, torch.nn.BatchNorm2d) for m in body.network.children()):
            found.append(name)
        with torch.device("meta"):
            freeze_batchnorm(body)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.network.modules()), name
    assert sorted(found) == sorted(TOP_LEVEL_BN)
