"""What senet's networks share, for the families to build on: `Classifier` (input checks, ``forward_features`` /
``forward_head``, the feature maps of every stage, the head), `Staged` (a stem and numbered stages) and
`ResidualBlock` (the SE unit around a residual addition, in every position of the paper's Fig. 5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import SEConfig, se_for_block
from .features import FeatureInfo, take_indices

__all__ = ["Classifier", "ResidualBlock", "Staged", "check_input", "global_pool"]


def global_pool(x: Tensor) -> Tensor:
    """Global average pooling to (B, C)."""
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def check_input(x: Tensor, in_chans: int, min_size: int, name: str) -> None:
    """Raise ValueError naming the expected shape unless ``x`` is (B, in_chans, H, W) with H, W >= min_size.

    A function that ``torch.fx`` keeps as one call (`torch.fx.wrap` below): a symbolic trace (torchvision's
    ``create_feature_extractor``) cannot branch on a traced shape, and the traced module still checks its input.
    """
    ok = x.ndim == 4 and x.shape[1] == in_chans and x.shape[2] >= min_size and x.shape[3] >= min_size and x.shape[0] > 0
    if not ok:
        raise ValueError(f"{name} expects input of shape (B, {in_chans}, H, W) with H, W >= {min_size}; "
                         f"got {tuple(x.shape)}")  # fmt: skip


torch.fx.wrap("check_input")


class Classifier(nn.Module):
    """Base of senet's networks: a feature extractor followed by global pooling, dropout and a linear layer (none
    with ``num_classes=0``: the network then returns the pooled features, as timm's models do).

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
        self.fc = nn.Linear(num_features, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        """The classifier on the pooled features (timm's convention): ``fc``, an ``nn.Identity`` without classes."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier of ``num_classes`` outputs, freshly initialised (0: none, the model returns the pooled
        features, (B, num_features)); the model's record (``model_config``) follows."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes={num_classes!r} must be an int >= 0 (0: pooled features, no classifier)")
        like = next(self.parameters())
        fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.fc = fc.to(device=like.device, dtype=like.dtype)
        self.num_classes = num_classes
        if getattr(self, "model_config", None) is not None:
            self.model_config = {**self.model_config, "num_classes": num_classes}

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError naming the expected shape unless ``x`` is (B, in_chans, H, W) with H, W >= min_size."""
        check_input(x, self.in_chans, self.min_size, self.model_name or type(self).__name__)

    # -- the network as a sequence of modules, and its feature maps ------------------------------------------------

    feature_info: FeatureInfo

    def module_sequence(self) -> list[tuple[str, nn.Module]]:
        """The modules from the input to the last feature map of ``forward_features``, in order, with their paths.

        Read from the attributes at every call, so that a module replaced later (`senet.optimize` folds BN into
        `nn.Identity`) is the one that runs. ``feature_info`` names the modules after which the maps are taken.
        """
        raise NotImplementedError

    def _init_features(self, maps: Sequence[tuple[str, int, int]]) -> None:
        """Record the feature maps: (path of the module that outputs it, channels, reduction) for each, in order."""
        paths = [path for path, _ in self.module_sequence()]
        missing = [path for path, _, _ in maps if path not in paths]
        if missing:  # a defect of the family's table, found when the network is built
            raise ValueError(f"{type(self).__name__}: feature maps at {missing} are not in its module sequence")
        self.feature_info = FeatureInfo(dict(num_chs=c, reduction=r, module=path) for path, c, r in maps)

    def _features(self, x: Tensor) -> Tensor:
        for _, module in self.module_sequence():
            x = module(x)
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map, (B, num_features, h, w)."""
        self.check_input(x)
        return self._features(x)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The feature maps ``indices`` of ``feature_info`` (timm's ``forward_intermediates``).

        Args:
            indices: None for every map, an int n for the last n, or a sequence of indices (negative from the end).
            norm: accepted as timm's networks accept it; senet's networks have no normalisation outside their stages
                (pre-activation networks apply their final BN and ReLU in the last stage), so it changes nothing.
            stop_early: stop after the last map asked for (then the first result is that map, not the last one).
            output_fmt: ``"NCHW"``, the only layout senet's maps have.
            intermediates_only: return only the list of maps.

        Returns:
            ``(forward_features(x), maps)``, or ``maps`` with ``intermediates_only``; maps in the network's order.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: senet's feature maps are 'NCHW'")
        take = take_indices(len(self.feature_info), indices)
        taps = {self.feature_info[i]["module"] for i in take}
        last = self.feature_info[take[-1]]["module"]
        self.check_input(x)
        maps = []
        for path, module in self.module_sequence():
            x = module(x)
            if path in taps:
                maps.append(x)
                if stop_early and path == last:
                    break
        return maps if intermediates_only else (x, maps)

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

    def _after_stages(self) -> list[tuple[str, nn.Module]]:
        """What follows the last stage before pooling (pre-activation networks: BN and ReLU)."""
        return []

    def module_sequence(self) -> list[tuple[str, nn.Module]]:
        # A stem that ends in a pooling is taken apart, so that the map before the pooling can be a feature map.
        stem = dict(self.stem.named_children())
        first = [(f"stem.{name}", m) for name, m in stem.items()] if "pool" in stem else [("stem", self.stem)]
        stages = [(name, m) for name, m in self.named_children() if name.startswith("layer")]
        return first + stages + self._after_stages()

    def _init_staged_features(self, stem: tuple[int, int] | None, rows: Sequence[tuple[int, int]]) -> None:
        """Feature maps: the stem's before its pooling (``stem`` = (channels, reduction); None if it has none),
        then each stage's output (rows of (channels, reduction)), the last one after `_after_stages`."""
        paths = [path for path, _ in self.module_sequence()]
        maps = [(paths[paths.index("stem.pool") - 1], *stem)] if stem else []
        last = paths[-1]
        for i, (channels, reduction) in enumerate(rows, 1):
            maps.append((last if i == len(rows) else f"layer{i}", channels, reduction))
        self._init_features(maps)


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
