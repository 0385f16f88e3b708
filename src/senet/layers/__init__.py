"""The SE unit, its successors, and how networks use them (paper §3 and §6.5).

* `senet.layers.se`: `SqueezeExcite`, the paper's eq. 2–4, and `reduced_width` (C/r).
* `senet.layers.attention`: the units that followed SE (ECA, CBAM, Gather-Excite, GC, SRM, coordinate attention,
  FcaNet, eSE, SimAM, triplet attention) with SE's call signature; `make_attention` builds one by name.
* `senet.layers.config`: `SEConfig`, a network's choices (unit, ratio per stage, stages, position in the block).
* `senet.layers.fast`: the paths that compute the unit's numbers with less memory traffic (training, in place,
  Triton), chosen per call.
* `senet.layers.fused`: opt-in Triton kernels for the end of a residual SE block on CUDA.
"""

from . import fused
from .attention import ATTENTION_UNITS, AttentionUnit, make_attention
from .config import INITS, POSITIONS, SEConfig, se_for_block
from .se import GATES, ROUNDINGS, SQUEEZES, SqueezeExcite, reduced_width

# Every kind of unit a network's SE slot may hold.
UNIT_TYPES = (SqueezeExcite, AttentionUnit)

__all__ = [
    "ATTENTION_UNITS",
    "GATES",
    "INITS",
    "POSITIONS",
    "ROUNDINGS",
    "SQUEEZES",
    "UNIT_TYPES",
    "AttentionUnit",
    "SEConfig",
    "SqueezeExcite",
    "fused",
    "make_attention",
    "reduced_width",
    "se_for_block",
]
