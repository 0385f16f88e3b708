"""How a network uses SE (paper §6.5 and Fig. 5): the unit's options, where it sits in a block, in which stages.

`SEConfig` is what every family's builder receives (None for the plain twin); `SEConfig.make` builds the unit of a
block, and `se_for_block` says whether a block of a given stage gets one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .se import GATES, ROUNDINGS, SQUEEZES, SqueezeExcite, check_choice, identity_problem

__all__ = ["INITS", "POSITIONS", "SEConfig", "se_for_block"]

INITS = ("default", "identity")
# Where the SE unit sits in a residual block (paper Fig. 5 and Table 15):
#   standard   on the residual branch, after its last BN, before the addition (Fig. 3)
#   pre        before the residual unit, on the input of the residual branch (SE-PRE)
#   post       after the addition with the identity branch, after its ReLU (SE-POST)
#   identity   on the identity branch, in parallel to the residual unit (SE-Identity)
#   after_3x3  inside a bottleneck, after the 3×3 convolution (SE_3×3)
POSITIONS = ("standard", "pre", "post", "identity", "after_3x3")


@dataclass(frozen=True)
class SEConfig:
    """How a network uses SE: the unit's options, where it sits in each block and in which stages.

    ``r`` is one ratio for every stage or one per stage (the paper's Table 10 uses one; a per-stage r is common
    in mobile networks). ``stages`` lists the 1-based stages that get SE (paper Table 13: SE in conv2_x only is
    ``stages=(1,)``); None means all. ``init="identity"`` asks `senet.create_model` to start every unit as the
    identity after the family's own initialisation (gate exactly 1, see `SqueezeExcite.reset_to_identity`), so a
    fresh SE network computes what its plain twin with the same weights computes and the gates move away from 1 as
    it trains; it needs ``gate="sigmoid_x2"`` (or ``"relu"``). Networks built directly from an SEConfig are left
    as their family initialises them.
    """

    r: float | tuple[float, ...] = 16
    reduced: int | None = None
    rounding: str = "floor"
    squeeze: str = "avg"
    gate: str = "sigmoid"
    bias: bool = True
    conv: bool = False
    position: str = "standard"
    stages: tuple[int, ...] | None = None
    init: str = "default"

    def __post_init__(self) -> None:
        check_choice("se_position", self.position, POSITIONS)
        check_choice("se_squeeze", self.squeeze, SQUEEZES)
        check_choice("se_gate", self.gate, GATES)
        check_choice("se_rounding", self.rounding, ROUNDINGS)
        check_choice("se_init", self.init, INITS)
        problem = identity_problem(self.gate, self.bias, prefix="se_") if self.init == "identity" else None
        if problem:
            raise ValueError(f"se_init='identity': {problem}")
        if isinstance(self.r, list):
            object.__setattr__(self, "r", tuple(self.r))
        if self.stages is not None:
            stages = (self.stages,) if isinstance(self.stages, int) else tuple(self.stages)
            if not all(isinstance(s, int) and not isinstance(s, bool) for s in stages):
                raise ValueError(f"se_stages={self.stages!r} must be stage numbers such as (1, 2, 3, 4)")
            object.__setattr__(self, "stages", stages)

    @classmethod
    def from_options(
        cls,
        *,
        r: float | Sequence[float] = 16,
        se_reduced: int | None = None,
        se_rounding: str = "floor",
        se_squeeze: str = "avg",
        se_gate: str = "sigmoid",
        se_bias: bool = True,
        se_conv: bool = False,
        se_position: str = "standard",
        se_stages: Sequence[int] | int | None = None,
        se_init: str = "default",
    ) -> SEConfig:
        """Build from the flat ``create_model`` options (``r``, ``se_position``, ``se_stages``, ...)."""
        return cls(
            r=tuple(r) if isinstance(r, (list, tuple)) else r,
            reduced=se_reduced,
            rounding=se_rounding,
            squeeze=se_squeeze,
            gate=se_gate,
            bias=se_bias,
            conv=se_conv,
            position=se_position,
            stages=se_stages if se_stages is None or isinstance(se_stages, int) else tuple(se_stages),
            init=se_init,
        )

    def check(self, num_stages: int, positions: Sequence[str], family: str) -> None:
        """Raise ValueError unless this config fits a ``family`` network of ``num_stages`` stages."""
        if self.position not in positions:
            raise ValueError(
                f"se_position={self.position!r} is not available in {family}; choose one of {', '.join(positions)}"
            )
        if isinstance(self.r, tuple) and len(self.r) != num_stages:
            raise ValueError(f"r={self.r!r} gives {len(self.r)} ratios for a network of {num_stages} stages")
        if self.stages is not None:
            bad = [s for s in self.stages if not 1 <= s <= num_stages]
            if bad:
                raise ValueError(f"se_stages={self.stages!r}: stages are numbered 1..{num_stages}; got {bad}")

    def ratio(self, stage: int) -> float:
        return self.r[stage - 1] if isinstance(self.r, tuple) else self.r

    def in_stage(self, stage: int) -> bool:
        return self.stages is None or stage in self.stages

    def make(self, channels: int, stage: int) -> SqueezeExcite:
        """The SE unit for a block of ``stage`` (1-based) rescaling ``channels`` channels."""
        return SqueezeExcite(
            channels,
            self.ratio(stage),
            reduced=self.reduced,
            rounding=self.rounding,
            squeeze=self.squeeze,
            gate=self.gate,
            bias=self.bias,
            conv=self.conv,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def se_for_block(se: SEConfig | None, stage: int) -> SEConfig | None:
    """The config a block of ``stage`` should use: None where SE is off for that stage."""
    return se if se is not None and se.in_stage(stage) else None
