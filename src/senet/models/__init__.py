"""The model zoo: every family's networks, each SE model beside its plain twin. Importing it registers them all.

`registry` holds the names (`list_models`, `get_entry`) and builds networks with fresh weights (`build_model`);
`base` the classes the families build on. Published weights are loaded by `senet.create_model` (senet.factory).
"""

from . import inception, mobile, resnet, vgg  # noqa: F401  (register their models)
from .base import Classifier, ResidualBlock, Staged
from .features import FeatureInfo, FeatureNet, take_indices
from .registry import SE_OPTIONS, ModelEntry, build_model, get_entry, list_models, register_twins

__all__ = [
    "SE_OPTIONS",
    "Classifier",
    "FeatureInfo",
    "FeatureNet",
    "ModelEntry",
    "ResidualBlock",
    "Staged",
    "build_model",
    "get_entry",
    "list_models",
    "register_twins",
    "take_indices",
]
