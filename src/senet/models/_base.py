"""What every senet classifier shares: input checks, ``forward_features`` / ``forward_head``, the classifier head."""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import global_pool

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
