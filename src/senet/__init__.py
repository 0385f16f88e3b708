"""senet: Squeeze-and-Excitation networks (Hu et al., CVPR 2018 / TPAMI 2019) for PyTorch.

>>> import senet
>>> model = senet.create_model("se_resnet50")            # beside its plain twin "resnet50"
>>> senet.profile(model).macs / 1e9                       # doctest: +SKIP
3.87

The layers, bottom up (docs/architecture.md): `files` and `constants`; `layers` (the SE unit); `models` (the zoo and
its registry); `weights` (conversion, published weights); `factory` (`create_model`); `complexity`, `retrofit`,
`export`, `optimize`, `detection` and `data`; `conversion` (`convert_file`); `training`; `analysis`; `cli`.
"""

from ._version import __version__
from .complexity import Profile, profile
from .conversion import convert_file
from .detection import fpn_backbone
from .export import export
from .factory import create_model, load_model
from .layers import SEConfig, SqueezeExcite, fused, reduced_width
from .models import Classifier, get_entry, list_models
from .optimize import optimize_for_inference
from .retrofit import add_se
from .training import RunResult, TrainConfig, compare, evaluate, train
from .weights import list_weights, load_weights

__all__ = [
    "Classifier",
    "Profile",
    "RunResult",
    "SEConfig",
    "SqueezeExcite",
    "TrainConfig",
    "__version__",
    "add_se",
    "compare",
    "convert_file",
    "create_model",
    "evaluate",
    "export",
    "fpn_backbone",
    "fused",
    "get_entry",
    "list_models",
    "list_weights",
    "load_model",
    "load_weights",
    "optimize_for_inference",
    "profile",
    "reduced_width",
    "train",
]
