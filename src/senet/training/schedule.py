"""Learning-rate schedules with linear warm-up, as a function of the optimizer step.

The paper trains ImageNet models with a step schedule (lr × 0.1 every 30 epochs, §5); CIFAR recipes use steps at
fixed epochs; short runs do best with cosine or linear decay. Apart from ``plateau``, the learning rate is a pure
function of the step, so a resumed run follows exactly the curve of an uninterrupted one; ``plateau`` keeps its
small state (`state_dict`) in the checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["LRSchedule"]


class LRSchedule:
    """The factor (0–1] by which the peak learning rate is multiplied at each optimizer step.

    Args:
        kind: cosine, linear, step, plateau or constant.
        total_steps: optimizer steps of the whole run.
        steps_per_epoch: optimizer steps per epoch (converts epochs to steps).
        warmup_epochs: linear warm-up from 1/steps to 1 over this many epochs.
        min_lr: final factor of cosine and linear.
        milestones: step schedule: the epochs at which the factor is multiplied by ``gamma``.
        gamma: step and plateau decay.
        patience: plateau: epochs without a lower monitored loss before the factor is multiplied by ``gamma``.
    """

    def __init__(
        self,
        kind: str,
        *,
        total_steps: int,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
        min_lr: float = 0.0,
        milestones: list[int] | tuple[int, ...] = (),
        gamma: float = 0.1,
        patience: int = 2,
    ) -> None:
        self.kind, self.total, self.per_epoch = kind, total_steps, steps_per_epoch
        self.warmup = round(warmup_epochs * steps_per_epoch)
        self.min_lr, self.milestones, self.gamma, self.patience = min_lr, sorted(milestones), gamma, patience
        self.plateau_scale, self.best, self.bad_epochs = 1.0, math.inf, 0

    def __call__(self, step: int) -> float:
        """The factor for optimizer step ``step`` (0-based)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind in ("cosine", "linear"):
            span = max(1, self.total - self.warmup)
            t = min(1.0, (step - self.warmup) / span)
            shape = 0.5 * (1 + math.cos(math.pi * t)) if self.kind == "cosine" else 1 - t
            return self.min_lr + (1 - self.min_lr) * shape
        if self.kind == "step":
            epoch = step // self.per_epoch
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.kind == "plateau":
            return self.plateau_scale
        return 1.0

    def observe(self, loss: float) -> None:
        """Plateau: report the monitored loss at the end of an epoch."""
        if self.kind != "plateau":
            return
        if loss < self.best:
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.plateau_scale *= self.gamma
                self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        best = None if math.isinf(self.best) else self.best  # JSON has no infinity
        return {"plateau_scale": self.plateau_scale, "best": best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best = state["best"]
        self.plateau_scale, self.bad_epochs = state["plateau_scale"], state["bad_epochs"]
        self.best = math.inf if best is None or best == math.inf else best  # older state files hold Infinity
