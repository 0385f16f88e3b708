"""senet: Squeeze-and-Excitation networks (Hu et al., CVPR 2018 / TPAMI 2019) for PyTorch.

>>> import senet
>>> model = senet.create_model("se_resnet50")            # beside its plain twin "resnet50"
>>> senet.profile(model).macs / 1e9                       # doctest: +SKIP
3.87
"""

from .analysis import Profile, profile
from .layers import SEConfig, SqueezeExcite, reduced_width
from .models import Classifier, create_model, get_entry, list_models

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "Profile",
    "SEConfig",
    "SqueezeExcite",
    "create_model",
    "get_entry",
    "list_models",
    "profile",
    "reduced_width",
]
