"""Insert SE into an existing network without changing what it computes (paper §4, Figs. 2–3).

The paper (§4) builds SE networks by inserting SE units into standard architectures: in residual networks on the
residual branch, before the summation with the identity branch (Fig. 3); in others after the non-linearity that
follows a convolution. `add_se` does this to a model that is already built, and possibly already trained:

* residual blocks it recognises (senet's own, torchvision's and timm's ResNet/ResNeXt ``BasicBlock`` and
  ``Bottleneck``) get an SE unit on the residual branch, after its last BN and before the addition;
* any other module named by ``pattern`` (e.g. ``"features.*.conv"``, the residual branch of each of torchvision's
  MobileNetV2 blocks) is followed by an SE unit that rescales its output.

Each new unit starts as the identity: with ``gate="sigmoid_x2"`` (2σ, which is 1 at 0) and its second FC zeroed
(`SqueezeExcite.reset_to_identity`), every gate is exactly 1, so the network's outputs are unchanged at insertion
and a pretrained model keeps its accuracy on the first step of fine-tuning; gradients still reach the unit, and
training moves the gates from there.
"""

from __future__ import annotations

import fnmatch
import sys

import torch
from torch import Tensor, nn

from .layers import SqueezeExcite
from .models import ResidualBlock, build_model, get_entry

__all__ = ["SEAfter", "add_se"]


class SEAfter(nn.Module):
    """``module`` followed by an SE unit that rescales its output: ``se(module(x))``."""

    def __init__(self, module: nn.Module, se: SqueezeExcite) -> None:
        super().__init__()
        self.module = module
        self.se = se

    def forward(self, x: Tensor) -> Tensor:
        return self.se(self.module(x))


def _torchvision_blocks() -> tuple[type, ...]:
    from torchvision.models import resnet

    return (resnet.BasicBlock, resnet.Bottleneck)


def _timm_blocks() -> tuple[type, ...]:
    timm_resnet = sys.modules.get("timm.models.resnet")  # a timm model means timm is already imported
    return (timm_resnet.BasicBlock, timm_resnet.Bottleneck) if timm_resnet else ()


def _branch_end(block: nn.Module) -> str:
    """The attribute holding the last layer of a residual block's branch: conv3/bn3 in bottlenecks, else conv2/bn2."""
    return "3" if hasattr(block, "conv3") else "2"


def _is_block(module: nn.Module) -> bool:
    return isinstance(module, (ResidualBlock, *_torchvision_blocks(), *_timm_blocks()))


def _out_channels(module: nn.Module) -> int | None:
    """Channels of ``module``'s output: a BN's or conv's own; for a container, those of the last one it holds."""
    last = None
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            last = m.num_features
        elif isinstance(m, nn.Conv2d):
            last = m.out_channels
    return last


def _matches(name: str, pattern: str) -> bool:
    """Shell-style match of a module's dotted name, one ``*`` per name segment (``features.*.conv``)."""
    parts, pats = name.split("."), pattern.split(".")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pats, strict=True))


def _make(channels: int, like: nn.Module, r: float, rounding: str, gate: str, identity: bool) -> SqueezeExcite:
    se = SqueezeExcite(channels, r, rounding=rounding, gate=gate)
    if identity:
        se.reset_to_identity()
    p = next(like.parameters(), None)
    return se.to(device=p.device, dtype=p.dtype) if p is not None else se


def _into_block(block: nn.Module, make) -> bool:
    """Put an SE unit on ``block``'s residual branch, after its last BN; False if the block already has one."""
    end = _branch_end(block)
    channels = getattr(block, f"conv{end}").out_channels
    if isinstance(block, ResidualBlock):  # senet: the block's own SE slot, fused with the addition
        if block.se is not None:
            return False
        block.se, block.se_position = make(channels, block), "standard"
    elif isinstance(block, _timm_blocks()):  # timm: applies `self.se` after the last BN when it is set
        if block.se is not None:
            return False
        block.se = make(channels, block)
    else:  # torchvision: the last BN, then SE, then the block's own addition
        bn = getattr(block, f"bn{end}")
        if isinstance(bn, SEAfter):
            return False
        setattr(block, f"bn{end}", SEAfter(bn, make(channels, bn)))
    return True


def add_se(
    model: nn.Module,
    r: float = 16,
    *,
    pattern: str | None = None,
    gate: str = "sigmoid_x2",
    rounding: str = "floor",
    identity_init: bool = True,
) -> nn.Module:
    """Insert SE units into ``model`` in place and return it.

    Args:
        r: reduction ratio of each unit (paper §6.4: 16).
        pattern: dotted module names to put SE into (a recognised residual block) or after (any other module),
            with ``*`` matching one name segment, e.g. ``"layer4.*"`` (the last stage's blocks only) or
            ``"features.*.conv"`` (MobileNetV2's residual branches). Default: every recognised residual block.
        gate: the units' gate; ``"sigmoid_x2"`` (or ``"relu"``) can start as the identity.
        rounding: ``"floor"`` (paper) or ``"round8"`` (timm) for the reduced width C/r.
        identity_init: start every unit as the identity (gate exactly 1) so the outputs do not change.

    Raises:
        ValueError: nothing to insert SE into (the message says what to pass), or a gate that cannot start as the
            identity while ``identity_init`` is set.
    """
    if identity_init:  # fail before touching the model
        SqueezeExcite(8, 2, gate=gate).reset_to_identity()

    def make(channels: int, like: nn.Module) -> SqueezeExcite:
        return _make(channels, like, r, rounding, gate, identity_init)

    named = list(model.named_modules())
    if pattern is None:
        targets = [(n, m) for n, m in named if _is_block(m)]
        if not targets:
            raise ValueError(
                f"no ResNet/ResNeXt blocks recognised in {type(model).__name__}; pass pattern= naming the modules "
                "to follow with SE (e.g. 'features.*.conv' for torchvision's MobileNetV2)"
            )
    else:
        targets = [(n, m) for n, m in named if n and _matches(n, pattern)]
        if not targets:
            sample = ", ".join(n for n, _ in named[1:9])
            raise ValueError(f"no module of {type(model).__name__} matches pattern={pattern!r}; names look like "
                             f"{sample}, ... (`*` matches one dotted segment)")  # fmt: skip
    modules = dict(named)
    inserted = 0
    for name, module in targets:
        if _is_block(module):
            inserted += _into_block(module, make)
            continue
        channels = _out_channels(module)
        if channels is None:
            raise ValueError(f"cannot tell the output channels of {name!r} ({type(module).__name__}): it holds no "
                             "convolution or BatchNorm; choose a module that ends in one")  # fmt: skip
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name], attr, SEAfter(module, make(channels, module)))
        inserted += 1
    if not inserted:
        raise ValueError(f"every block {pattern or 'of the model'} already has an SE unit; nothing was inserted")
    call = {"r": r, "pattern": pattern, "gate": gate, "rounding": rounding, "identity_init": identity_init}
    _update_config(model, complete=pattern is None and inserted == len(targets), call=call)
    return model


def _update_config(model: nn.Module, *, complete: bool, call: dict[str, object]) -> None:
    """Keep the record that rebuilds the model (``model.model_config``, see senet.factory) true: a senet plain model
    with SE in every block is its SE twin with these options; any other model records the call under ``add_se``,
    which `senet.create_model` makes again after building it."""
    config = getattr(model, "model_config", None)
    if config is None:
        return
    entry = get_entry(config["name"]) if ":" not in config["name"] else None  # not torchvision's or timm's
    if entry and complete and not config.get("add_se") and not entry.has_se and get_entry(entry.twin).has_se:
        se_options = {"r": call["r"], "se_gate": call["gate"], "se_rounding": call["rounding"], "se_conv": False}
        options = {**config["options"], **se_options}
        with torch.device("meta"):  # the twin must have exactly these weights, or it does not rebuild this model
            twin = build_model(entry.twin, num_classes=config["num_classes"], in_chans=config["in_chans"], **options)
        if _shapes(twin) == _shapes(model):
            model.model_config = {**config, "name": entry.twin, "options": options}
            model.model_name = entry.twin
            return
    model.model_config = {**config, "add_se": [*config.get("add_se", []), call]}


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
