"""The model zoo. Importing this package registers every family."""

from . import inception, mobile, resnet, vgg  # noqa: F401  (register their models)
from ._base import Classifier
from ._registry import SE_OPTIONS, ModelEntry, create_model, get_entry, list_models, register_twins

__all__ = ["SE_OPTIONS", "Classifier", "ModelEntry", "create_model", "get_entry", "list_models", "register_twins"]
