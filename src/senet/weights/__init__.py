"""Weights: converting the layouts people hold (`convert`), and the published weights with their downloads
(`published`). Building a model and loading published weights into it is `senet.create_model` (senet.factory)."""

from .convert import (
    LAYOUTS,
    ConversionError,
    convert_state_dict,
    convert_timm_unit,
    detect_layout,
    load_weights,
    model_options,
    read_state,
)
from .published import KNOWN_WEIGHTS, KnownWeights, fetch, get_weights, list_weights

__all__ = [
    "KNOWN_WEIGHTS",
    "LAYOUTS",
    "ConversionError",
    "KnownWeights",
    "convert_state_dict",
    "convert_timm_unit",
    "detect_layout",
    "fetch",
    "get_weights",
    "list_weights",
    "load_weights",
    "model_options",
    "read_state",
]
