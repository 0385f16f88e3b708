"""Multi-scale feature maps of senet's networks, in the form timm users know: `FeatureInfo` (``model.feature_info``),
the indices ``forward_intermediates`` and ``out_indices`` take (`take_indices`), and `FeatureNet`, what
``senet.create_model(name, features_only=True, out_indices=...)`` returns.

Every network is a sequence of modules from its input to its last feature map (`Classifier.module_sequence`), and
``feature_info`` names the module after which each map is taken: the output of each stage of resolution, the last
map at each stride (before the next stage downsamples). A detection or segmentation head reads these maps
(Lin et al., "Feature Pyramid Networks", CVPR 2017, §3: "the output of the last layer of each stage").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor, nn

__all__ = ["FeatureInfo", "FeatureNet", "take_indices"]


class FeatureInfo(list):
    """One dict per feature map, ``{"num_chs": C, "reduction": stride, "module": path}``, as timm's ``feature_info``.

    ``reduction`` is the map's stride with respect to the input (a 224² input gives a 224 / reduction map on networks
    with padded convolutions; Inception-v3 and Inception-ResNet-v2, whose convolutions are unpadded, give a little
    less: 35, 17 and 8 at 299², reductions 8, 16 and 32). ``module`` is the path of the module whose output the map
    is (``dict(model.named_modules())[path]``), the name torchvision's ``create_feature_extractor`` takes.
    """

    def __init__(self, maps: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(dict(m) for m in maps)

    def _get(self, key: str, idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return [m[key] for m in self]
        if isinstance(idx, int):
            return self[idx][key]
        return [self[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """The channels of map ``idx`` (an int), of the maps ``idx`` (a sequence), or of every map (None)."""
        return self._get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """The stride (reduction of the input's size) of map ``idx``, or of several maps, as `channels`."""
        return self._get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """The module path of map ``idx``, or of several maps, as `channels`."""
        return self._get("module", idx)


def take_indices(count: int, indices: int | Sequence[int] | None) -> list[int]:
    """The feature maps to return, as sorted indices into a ``feature_info`` of ``count`` maps (timm's rule).

    ``None``: every map; an int n: the last n maps; a sequence: those maps, negative indices counting from the end.

    Raises:
        ValueError: an index outside the ``count`` maps, a repeated one, or n outside 1..count.
    """
    if indices is None:
        return list(range(count))
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 1 <= indices <= count:
            raise ValueError(f"indices={indices!r} asks for the last {indices} maps of a network with {count}; "
                             f"use 1..{count}, or a sequence of map indices")  # fmt: skip
        return list(range(count - indices, count))
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence):
        raise TypeError(f"indices={indices!r} must be None, an int or a sequence of ints")
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not -count <= i < count]
    if bad or not indices:
        raise ValueError(f"indices={tuple(indices)!r}: this network has {count} feature maps, numbered 0..{count - 1} "
                         f"(or -{count}..-1); see model.feature_info")  # fmt: skip
    take = sorted(i % count for i in indices)
    if len(set(take)) != len(take):
        raise ValueError(f"indices={tuple(indices)!r} names a feature map twice")
    return take


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


class FeatureNet(nn.Module):
    """The feature maps of chosen stages of a senet network (timm's ``features_only``): ``forward(x)`` returns a
    list of (B, C_i, H_i, W_i) maps, one per entry of ``feature_info``.

    Built by ``senet.create_model(name, features_only=True, out_indices=...)``, or from a network, which it takes
    apart: the modules after the last chosen map and the classifier are removed (replaced by ``nn.Identity``, so that
    no unused parameter is left, which DistributedDataParallel would refuse), and the rest is registered under the
    network's own names, so that the state dict keys are the network's (without the removed ones, listed in
    ``removed``). The input is checked as the network checks it.

    Args:
        model: a senet network (`senet.models.Classifier`).
        out_indices: the maps to return, indices into ``model.feature_info`` (see `take_indices`); None: all.
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None) -> None:
        super().__init__()
        if not hasattr(model, "forward_intermediates"):
            raise TypeError(f"{type(model).__name__} is not a senet network; make it with senet.create_model")
        take = take_indices(len(model.feature_info), out_indices)
        last = model.feature_info[take[-1]]["module"]
        paths = [path for path, _ in model.module_sequence()]
        end = paths.index(last) + 1
        kept = {path.partition(".")[0] for path in paths[:end]}  # top-level modules that compute a chosen map
        removed = [name for name, _ in model.named_children() if name not in kept]
        removed += [path for path in paths[end:] if path.partition(".")[0] in kept]
        for path in removed:
            _replace(model, path, nn.Identity())
        self.removed = tuple(removed)
        self.out_indices = tuple(take)
        self.feature_info = FeatureInfo(model.feature_info[i] for i in take)
        self._net = (model,)  # a tuple: not a submodule, its modules are registered below under their own names
        # One dict of children for both: the network's forward runs the modules registered here, so that a module
        # replaced on this one (`senet.detection.freeze_batchnorm`, `nn.SyncBatchNorm.convert_sync_batchnorm`,
        # `setattr`) is the one that runs, and `train()` reaches every module that runs.
        self._modules = model._modules
        self.model_name = getattr(model, "model_name", "")
        self.in_chans, self.min_size = model.in_chans, model.min_size
        if hasattr(model, "weights_meta"):  # what the weights expect of the input (senet.create_model(weights=...))
            self.weights_meta = model.weights_meta
        config = getattr(model, "model_config", None)
        if config is not None:  # what rebuilds it (senet.factory.load_model)
            options = {**config["options"], "features_only": True, "out_indices": list(take)}
            self.model_config = {**config, "options": options}

    @property
    def network(self) -> nn.Module:
        """The network whose modules this runs (its full ``feature_info``, its ``module_sequence``)."""
        return self._net[0]

    def train(self, mode: bool = True) -> FeatureNet:
        self._net[0].training = mode
        return super().train(mode)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self._net[0].forward_intermediates(x, self.out_indices, stop_early=True, intermediates_only=True)
