"""Weights: the layouts people hold (`layouts`, as data) converted exactly or refused (`convert`), and the published
weights with their downloads (`published`). Building a model and loading published weights into it is
`senet.create_model` (senet.factory)."""

from .convert import (
    LAYOUTS,
    SHAPE_OR_TRAINING_OPTIONS,
    ConversionError,
    convert_state_dict,
    convert_timm_unit,
    detect_layout,
    get_layout,
    load_weights,
    model_options,
    read_source,
    read_state,
    senet_name,
)
from .layouts import Layout
from .published import KNOWN_WEIGHTS, KnownWeights, fetch, get_weights, imagenet_classes, list_weights

__all__ = [
    "KNOWN_WEIGHTS",
    "LAYOUTS",
    "SHAPE_OR_TRAINING_OPTIONS",
    "ConversionError",
    "KnownWeights",
    "Layout",
    "convert_state_dict",
    "convert_timm_unit",
    "detect_layout",
    "fetch",
    "get_layout",
    "get_weights",
    "imagenet_classes",
    "list_weights",
    "load_weights",
    "model_options",
    "read_source",
    "read_state",
    "senet_name",
]
