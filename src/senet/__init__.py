"""senet: Squeeze-and-Excitation networks (Hu et al., CVPR 2018 / TPAMI 2019) for PyTorch.

>>> import senet
>>> model = senet.create_model("se_resnet50")            # beside its plain twin "resnet50"
>>> senet.profile(model).macs / 1e9                       # doctest: +SKIP
3.87
"""

from . import fused
from .analysis import Profile, profile
from .export import export
from .layers import SEConfig, SqueezeExcite, reduced_width
from .models import Classifier, create_model, get_entry, list_models
from .optimize import optimize_for_inference
from .retrofit import add_se
from .training import RunResult, TrainConfig, compare, evaluate, train
from .weights import list_weights, load_weights

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "Profile",
    "RunResult",
    "SEConfig",
    "SqueezeExcite",
    "TrainConfig",
    "add_se",
    "compare",
    "create_model",
    "evaluate",
    "export",
    "fused",
    "get_entry",
    "list_models",
    "list_weights",
    "load_weights",
    "optimize_for_inference",
    "profile",
    "reduced_width",
    "train",
]
