"""Fine-tuning controls: which parts of a network train, which keep their BatchNorm statistics, and at which
learning rate each part trains.

The parts are named as in torchvision's and timm's ResNets, which senet's staged networks follow: the stages are
the top-level modules ``layer1``, ``layer2``, ...; the stem is everything before ``layer1``; the head is the
classifier (`senet.transfer.classifier_name`); the backbone is everything but the head.

* ``freeze``: ``none``; ``backbone``; ``stem``; or ``layerN``, the stem and the stages up to N. Frozen parameters
  get no gradient and are left out of the optimizer (weight decay does not touch them either).
* ``freeze_bn``: the BatchNorm layers that keep the running statistics they were loaded with (they normalise with
  them, as at evaluation): ``frozen`` (those in the frozen part, default), ``all``, or ``none``.
* ``backbone_lr`` and ``layer_decay``: the learning rate of a backbone parameter is the run's, times
  ``backbone_lr``, times ``layer_decay`` once per stage between it and the head (the last stage: once; the stem:
  once more than the first stage).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from torch import nn

from ..transfer import classifier_name

__all__ = ["FREEZE_BN", "Finetune", "check_freeze", "train_mode"]

FREEZE_BN = ("frozen", "all", "none")
_STAGE = re.compile(r"layer(\d+)$")


def check_freeze(value: str) -> None:
    """ValueError unless ``value`` is one of the forms of ``freeze`` (whether the model has the stage is checked
    when it is built)."""
    if value not in ("none", "backbone", "stem") and not _STAGE.match(value):
        raise ValueError(f"freeze={value!r}; choose none, backbone, stem, or layerN (the stem and stages 1..N)")


def _parts(model: nn.Module) -> tuple[list[str], list[str]]:
    """The top-level modules of the stem and of the stages (``layer1``, ...), in order."""
    names = [n for n, _ in model.named_children()]
    stages = sorted((n for n in names if _STAGE.match(n)), key=lambda n: int(_STAGE.match(n).group(1)))
    stem = names[: names.index(stages[0])] if stages else []
    return stem, stages


@dataclass(frozen=True)
class Finetune:
    """The fine-tuning controls of a run, applied to its model."""

    freeze: str = "none"
    freeze_bn: str = "frozen"
    backbone_lr: float = 1.0
    layer_decay: float = 1.0

    def __post_init__(self) -> None:
        check_freeze(self.freeze)
        if self.freeze_bn not in FREEZE_BN:
            raise ValueError(f"freeze_bn={self.freeze_bn!r}; choose from {', '.join(FREEZE_BN)}")
        for key in ("backbone_lr", "layer_decay"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ValueError(f"{key}={getattr(self, key)!r} must be in (0, 1]")

    def frozen(self, model: nn.Module) -> list[str]:
        """The dotted names of the modules ``freeze`` freezes in ``model`` (ValueError for a stage it lacks)."""
        if self.freeze == "none":
            return []
        head = classifier_name(model)
        if self.freeze == "backbone":
            return [n for n, _ in model.named_children() if n != head.split(".")[0]] + _siblings(model, head)
        stem, stages = _parts(model)
        name = getattr(model, "model_name", "") or type(model).__name__
        if not stages:
            raise ValueError(f"freeze={self.freeze!r}: {name} has no numbered stages (layer1, ...); use freeze=none "
                             "or backbone")  # fmt: skip
        if self.freeze == "stem":
            return stem
        n = int(_STAGE.match(self.freeze).group(1))
        if not 1 <= n <= len(stages):
            raise ValueError(f"freeze={self.freeze!r}: {name} has stages layer1..layer{len(stages)}; choose none, "
                             f"backbone, stem or one of {', '.join(stages)}")  # fmt: skip
        return stem + stages[:n]

    def apply(self, model: nn.Module, new: Collection[str] = ()) -> list[nn.Module]:
        """Freeze ``model``'s parameters as ``freeze`` says, except the ``new`` ones (tensors the init source did not
        give, e.g. a retrofit's SE units: frozen at their random start they would only scale the features by fixed
        random gates); return the BatchNorm layers whose statistics stay (see `train_mode`)."""
        frozen = [model.get_submodule(n) for n in self.frozen(model)]
        for m in frozen:
            m.requires_grad_(False)
        for name, p in model.named_parameters():
            if name in new:
                p.requires_grad_(True)
        if self.freeze_bn == "none":
            return []
        scope = [model] if self.freeze_bn == "all" else frozen
        return [bn for m in scope for bn in m.modules() if isinstance(bn, nn.modules.batchnorm._BatchNorm)]

    def lr_scales(self, model: nn.Module) -> dict[str, float]:
        """The learning-rate factor of each trainable parameter of ``model``, by name."""
        head = classifier_name(model) + "."
        stem, stages = _parts(model)
        if self.layer_decay != 1.0 and not stages:
            name = getattr(model, "model_name", "") or type(model).__name__
            raise ValueError(f"layer_decay={self.layer_decay!r}: {name} has no numbered stages (layer1, ...) to "
                             "decay over; use backbone_lr")  # fmt: skip
        # stages between a module and the head: the last stage (and what follows it, e.g. a final BN) 1, the stem N+1
        depth = {s: len(stages) - i for i, s in enumerate(stages)} | {s: len(stages) + 1 for s in stem}
        out = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                steps = depth.get(name.split(".")[0], 1)
                out[name] = 1.0 if name.startswith(head) else self.backbone_lr * self.layer_decay ** (steps - 1)
        return out


def _siblings(model: nn.Module, head: str) -> list[str]:
    """Modules beside a nested head inside its top-level module (``classifier.0`` .. ``classifier.5`` of a
    ``classifier.6`` head): part of the backbone."""
    parts = head.split(".")
    out = []
    for i in range(1, len(parts)):
        parent = model.get_submodule(".".join(parts[:i]))
        out += [f"{'.'.join(parts[:i])}.{n}" for n, _ in parent.named_children() if n != parts[i]]
    return out


def train_mode(model: nn.Module, kept: list[nn.Module]) -> None:
    """``model.train()``, with the BatchNorm layers in ``kept`` left in evaluation mode (statistics unchanged)."""
    model.train()
    for bn in kept:
        bn.eval()
