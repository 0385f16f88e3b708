"""How a network uses SE (paper §6.5 and Fig. 5): the unit's options, where it sits in a block, in which stages.

`SEConfig` is what every family's builder receives (None for the plain twin); `SEConfig.make` builds the unit of a
block, and `se_for_block` says whether a block of a given stage gets one. ``attention`` swaps the SE unit for one
of its successors (`senet.layers.attention`), placed by the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from .attention import make_attention, unit_class, unit_options
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

    ``attention`` names the unit: ``"se"`` (the paper's, configured by the fields above) or one of its successors
    in `senet.layers.attention.ATTENTION_UNITS` (``"eca"``, ``"cbam"``, ``"ge"``, ...), built with ``r`` where it
    has a bottleneck and with ``attention_options``, its own keyword options. An option named in the unit's
    ``stage_options`` (ECA's ``k_size``, Gather-Excite's ``extent`` and ``feat_size``, FcaNet's ``dct_size``) may
    be a list with one value per stage, as ``r`` may. The SE-only fields (``reduced``, ``rounding``, ``squeeze``,
    ``gate``, ``bias``, ``conv``) must stay at their defaults for another unit, ``r`` too where it has no
    bottleneck, and ``init="identity"`` needs a unit that can start as the identity (GC with add fusion).
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
    attention: str = "se"
    attention_options: tuple[tuple[str, Any], ...] = ()  # a mapping is accepted and kept as sorted items

    def __post_init__(self) -> None:
        check_choice("se_position", self.position, POSITIONS)
        check_choice("se_squeeze", self.squeeze, SQUEEZES)
        check_choice("se_gate", self.gate, GATES)
        check_choice("se_rounding", self.rounding, ROUNDINGS)
        check_choice("se_init", self.init, INITS)
        se_unit = self.attention == "se"
        problem = identity_problem(self.gate, self.bias, prefix="se_") if se_unit and self.init == "identity" else None
        if problem:
            raise ValueError(f"se_init='identity': {problem}")
        if isinstance(self.r, list):
            object.__setattr__(self, "r", tuple(self.r))
        if self.stages is not None:
            stages = (self.stages,) if isinstance(self.stages, int) else tuple(self.stages)
            if not all(isinstance(s, int) and not isinstance(s, bool) for s in stages):
                raise ValueError(f"se_stages={self.stages!r} must be stage numbers such as (1, 2, 3, 4)")
            object.__setattr__(self, "stages", stages)
        options = self.attention_options
        items = options.items() if isinstance(options, Mapping) else options
        object.__setattr__(self, "attention_options", tuple(sorted((k, _frozen(v)) for k, v in items)))
        self._check_attention()

    def _check_attention(self) -> None:
        cls = unit_class(self.attention)  # ValueError naming the units
        options = dict(self.attention_options)
        if self.attention == "se":
            if options:
                raise ValueError(
                    f"attention_options={options!r} are for the other units; the SE unit takes r and the se_ options"
                )
            return
        valid = unit_options(self.attention)
        unknown = [k for k in options if k not in valid]
        if unknown:
            raise TypeError(
                f"attention={self.attention!r} has no option {unknown[0]!r} (attention_options); its options are: "
                f"{', '.join(valid) or 'none'}"
            )
        defaults = {f.name: f.default for f in fields(self)}
        for name in _SE_ONLY:
            if getattr(self, name) != defaults[name]:
                raise ValueError(
                    f"se_{name}={getattr(self, name)!r} applies to the SE unit only; attention={self.attention!r} "
                    f"takes its own options in attention_options ({', '.join(valid) or 'none'})"
                )
        if self.r != defaults["r"] and not cls.ratio_used(options):
            raise ValueError(f"r={self.r!r} does not apply to attention={self.attention!r}: this unit has no "
                             "bottleneck; leave r at its default")  # fmt: skip
        problem = cls.identity_problem(options) if self.init == "identity" else None
        if problem:
            raise ValueError(f"se_init='identity': {problem}")

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
        attention: str = "se",
        attention_options: Mapping[str, Any] | None = None,
    ) -> SEConfig:
        """Build from the flat ``create_model`` options (``r``, ``se_position``, ``se_stages``, ``attention``,
        ...)."""
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
            attention=attention,
            attention_options=tuple((attention_options or {}).items()),
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
        per_stage = getattr(unit_class(self.attention), "stage_options", ())
        for key, value in self.attention_options:
            if key in per_stage and isinstance(value, tuple) and len(value) != num_stages:
                raise ValueError(
                    f"attention_options {key}={list(value)!r} gives {len(value)} values for a network of "
                    f"{num_stages} stages; give one per stage, or one value for all"
                )

    def ratio(self, stage: int) -> float:
        return self.r[stage - 1] if isinstance(self.r, tuple) else self.r

    def in_stage(self, stage: int) -> bool:
        return self.stages is None or stage in self.stages

    def stage_options(self, stage: int) -> dict[str, Any]:
        """The attention unit's options for a block of ``stage`` (1-based): per-stage lists resolved."""
        per_stage = getattr(unit_class(self.attention), "stage_options", ())
        return {k: (v[stage - 1] if k in per_stage and isinstance(v, tuple) else v) for k, v in self.attention_options}

    def make(self, channels: int, stage: int) -> nn.Module:
        """The unit for a block of ``stage`` (1-based) rescaling ``channels`` channels: SE, or ``attention``'s.

        The unit records its ``stage`` (what `senet.analysis.presets.stage_sizes` groups map sizes by)."""
        if self.attention != "se":
            unit = make_attention(self.attention, channels, self.ratio(stage), **self.stage_options(stage))
        else:
            unit = SqueezeExcite(
                channels,
                self.ratio(stage),
                reduced=self.reduced,
                rounding=self.rounding,
                squeeze=self.squeeze,
                gate=self.gate,
                bias=self.bias,
                conv=self.conv,
            )
        unit.stage = stage
        return unit

    def to_dict(self) -> dict:
        return {**asdict(self), "attention_options": dict(self.attention_options)}


# The fields that configure the SE unit itself; another unit takes its own options (attention_options).
_SE_ONLY = ("reduced", "rounding", "squeeze", "gate", "bias", "conv")


def _frozen(value: Any) -> Any:
    """Lists as tuples, at every depth: a config's values stay hashable and compare equal however they came in."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def se_for_block(se: SEConfig | None, stage: int) -> SEConfig | None:
    """The config a block of ``stage`` should use: None where SE is off for that stage."""
    return se if se is not None and se.in_stage(stage) else None
