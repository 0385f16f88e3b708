"""What senet's networks share, for the families to build on: `Classifier` (input checks, ``forward_features`` /
``forward_head``, the head), `Staged` (a stem and numbered stages) and `ResidualBlock` (the SE unit around a
residual addition, in every position of the paper's Fig. 5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import SEConfig, se_for_block

__all__ = ["Classifier", "ResidualBlock", "Staged", "global_pool"]


def global_pool(x: Tensor) -> Tensor:
    """Global average pooling to (B, C)."""
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


class Classifier(nn.Module):
    """Base of senet's networks: a feature extractor followed by global pooling, dropout and a linear layer.

    Subclasses build ``self.fc`` through `_init_head` and implement `_features`. ``forward_features`` checks the
    input before any convolution runs: 4-D, ``in_chans`` channels, and at least ``min_size`` pixels high and wide
    (the smallest size for which every stage still has a pixel).
    """

    model_name: str = ""
    min_size: int = 1

    def _init_head(self, num_features: int, num_classes: int, in_chans: int, drop_rate: float, min_size: int) -> None:
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate={drop_rate!r} must be in [0, 1)")
        self.num_features = num_features
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.min_size = min_size
        self.drop_rate = drop_rate
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(num_features, num_classes)

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError naming the expected shape unless ``x`` is (B, in_chans, H, W) with H, W >= min_size."""
        ok = (
            x.ndim == 4
            and x.shape[1] == self.in_chans
            and x.shape[2] >= self.min_size
            and x.shape[3] >= self.min_size
            and x.shape[0] > 0
        )
        if not ok:
            name = self.model_name or type(self).__name__
            raise ValueError(
                f"{name} expects input of shape (B, {self.in_chans}, H, W) with H, W >= {self.min_size}; "
                f"got {tuple(x.shape)}"
            )

    def _features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map, (B, num_features, h, w)."""
        self.check_input(x)
        return self._features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool a feature map and classify it; ``pre_logits=True`` stops before the linear layer."""
        x = self.drop(global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class Staged(Classifier):
    """A ``stem``, then the stages ``layer1``, ``layer2``, ... in order (as torchvision's and timm's ResNets)."""

    def _add_stages(
        self, cin: int, rows: Sequence[tuple[int, int, int]], block: Callable[[int, int, int, int, int], nn.Module]
    ) -> int:
        """Add a stage per row (output channels, stride of its first block, blocks), each block made by
        ``block(cin, cout, stride, stage, index)``; return the last stage's channels."""
        for stage, (cout, stride, blocks) in enumerate(rows, 1):
            layers = [block(cin if j == 0 else cout, cout, stride if j == 0 else 1, stage, j) for j in range(blocks)]
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
            cin = cout
        return cin

    def stages(self) -> list[nn.Sequential]:
        return [module for name, module in self.named_children() if name.startswith("layer")]

    def _after_stages(self, x: Tensor) -> Tensor:
        """What follows the last stage before pooling (pre-activation networks: BN and ReLU)."""
        return x

    def _features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        return self._after_stages(x)


class ResidualBlock(nn.Module):
    """The addition of a residual block and the SE unit around it; subclasses build the branch.

    `_attach_se` creates ``self.se`` (None in a block without SE) for the position its `SEConfig` names;
    `_merge` adds the branch to the shortcut with the unit where the position puts it (paper Fig. 5):
    ``standard`` rescales the branch before the addition (Fig. 3), ``identity`` the shortcut, ``post`` the sum after
    its ReLU; ``pre`` (`_pre`) rescales the block's input and ``after_3x3`` (`_mid`) the inside of a bottleneck.
    """

    positions: tuple[str, ...] = ("standard", "pre", "post", "identity")
    post_act = True  # ReLU after the addition (False in pre-activation blocks)
    se: nn.Module | None

    def _attach_se(self, se: SEConfig | None, stage: int, widths: dict[str, int]) -> None:
        """``widths``: the channels the unit rescales in each position this block offers."""
        cfg = se_for_block(se, stage)
        self.se_position = cfg.position if cfg is not None else None
        self.se = cfg.make(widths[cfg.position], stage) if cfg is not None else None
        self.act = nn.ReLU(inplace=True) if self.post_act else nn.Identity()

    def _merge(self, out: Tensor, shortcut: Tensor) -> Tensor:
        # ``out`` is the branch's own last result (a BN or convolution output that backward does not need), so the
        # merge writes into it rather than into fresh memory; the SE unit does so only when autograd and hooks let it.
        pos = self.se_position
        if pos == "standard":  # s·out + shortcut: the original models' "Axpy" layer
            if self.post_act and self.se.fuses_relu:
                return self.se(out, shortcut, relu=True)  # relu(s·out + shortcut) in one kernel
            out = self.se(out, shortcut, inplace=True)
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
