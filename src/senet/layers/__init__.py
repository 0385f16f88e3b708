"""The SE unit and how networks use it (paper §3 and §6.5).

* `senet.layers.se`: `SqueezeExcite`, the paper's eq. 2–4, and `reduced_width` (C/r).
* `senet.layers.config`: `SEConfig`, a network's choices (ratio per stage, stages, position in the block).
* `senet.layers.fast`: the paths that compute the unit's numbers with less memory traffic (training, in place,
  Triton), chosen per call.
* `senet.layers.fused`: opt-in Triton kernels for the end of a residual SE block on CUDA.
"""

from . import fused
from .config import INITS, POSITIONS, SEConfig, se_for_block
from .se import GATES, ROUNDINGS, SQUEEZES, SqueezeExcite, reduced_width

__all__ = [
    "GATES",
    "INITS",
    "POSITIONS",
    "ROUNDINGS",
    "SQUEEZES",
    "SEConfig",
    "SqueezeExcite",
    "fused",
    "reduced_width",
    "se_for_block",
]
