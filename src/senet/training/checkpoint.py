"""Training checkpoints that resume a run exactly and never unpickle anything.

A run folder holds these files, each written atomically (`senet.files.atomic_write`: temporary file, fsync, rename),
so a crash at any moment leaves the previous version of each whole:

* ``state.safetensors``: everything ``--resume`` needs: the weights (``model/…``), the EMA weights (``ema/…``),
  the optimizer, gradient-scaler and schedule state and the progress counters. Tensors are safetensors entries,
  everything else plain JSON in the file's metadata (`pack_state` turns a nested state dict into the two).
* ``state.good.safetensors``: a hard link to the last state known to be usable (`GOOD_STATE_FILE`);
* ``last.safetensors`` and ``best.safetensors``: plain senet weights files (`senet.files.save_weights`, the model to
  evaluate: the EMA weights when EMA is on) with the metadata that rebuilds the model and preprocesses its input,
  for ``senet eval`` / ``senet predict`` / `senet.load_model`.

Randomness needs no saving: the data order and augmentation of every batch and the generator used by each step
are derived from (seed, epoch, step) — see senet.data.EpochBatches and the trainer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..constants import BEST_FILE, GOOD_STATE_FILE, LAST_FILE, STATE_FILE
from ..files import clean_partial_writes, read_weights, save_weights, temporary_path
from ..validate import MAX_COUNT, MAX_EPOCHS, MODEL_CONFIG, Bool, Float, Int, Json, List, Map, Str, check
from .outputs import HISTORY_ROW

__all__ = [
    "BEST_FILE",
    "GOOD_STATE_FILE",
    "LAST_FILE",
    "STATE_FILE",
    "STATE_FORMAT",
    "TrainingState",
    "clean_partial_writes",
    "load_state",
    "mark_good",
    "pack_state",
    "roll_back",
    "save_state",
    "unpack_state",
]

STATE_FORMAT = "senet-training-state/1"
# GOOD_STATE_FILE: the last state known to be usable, the start of the run or an epoch end whose evaluation gave a
# finite loss. A hard link to state.safetensors taken at that moment (no copy); a run whose loss becomes non-finite
# rolls back to it (`roll_back`), since the checkpoints just before a divergence can hold finite but useless weights.


def pack_state(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """Move every tensor of a nested state (dicts, lists, numbers, strings) into ``tensors`` under a path-like
    key and return the JSON-able rest, with ``{"$tensor": key}`` where a tensor was. Dicts whose keys are not
    all strings (an optimizer's state is keyed by parameter index) become ``{"$items": [[key, value], ...]}``."""
    if isinstance(obj, Tensor):
        tensors[prefix] = obj
        return {"$tensor": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: pack_state(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {"$items": [[k, pack_state(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [pack_state(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix!r}: only tensors and plain data")


def unpack_state(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """The inverse of `pack_state`.

    Raises:
        ValueError: a reference to a tensor the file lacks, or a malformed ``$items`` entry.
    """
    if isinstance(obj, dict):
        if set(obj) == {"$tensor"}:
            if obj["$tensor"] not in tensors:
                raise ValueError(f"it refers to a tensor {obj['$tensor']!r} that it does not hold")
            return tensors[obj["$tensor"]]
        if set(obj) == {"$items"}:
            items = obj["$items"]
            if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 for i in items):
                raise ValueError("an $items entry is not a list of [key, value] pairs")
            return {k if isinstance(k, (str, int)) else str(k): unpack_state(v, tensors) for k, v in items}
        return {k: unpack_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack_state(v, tensors) for v in obj]
    return obj


# The metadata of state.safetensors: what `_Run._restore` reads, each with its bounds. One history row per finished
# epoch; the optimizer, scaler and schedule states are free-form (their owners check them as they load them).
_TOTALS = Map({k: Float(0.0) for k in ("loss_sum", "correct", "seen", "skipped")}, required=("loss_sum", "seen"))
_STATE_EXTRA = Map(
    {
        "epoch": Int(0, MAX_EPOCHS),
        "batch": Int(0, MAX_COUNT),
        "step": Int(0, 2**53),
        "totals": _TOTALS,
        "sums": List(Float(0.0), length=4),  # states written before the totals had names
        "elapsed_s": Float(0.0),
        "best_acc": Float(-1.0, 1.0),
        "history": List(HISTORY_ROW, max_len=MAX_EPOCHS),
        "config": Map(others=Json(max_depth=4, max_items=10_000)),
        "optimizer": Map({"state": Map(others=Json()), "param_groups": List(Map(others=Json()))},
                         required=("state", "param_groups")),
        "scaler": Map(others=Json()),
        "schedule": Map(others=Json()),
    },
    required=("epoch", "batch", "step", "elapsed_s", "best_acc", "history", "config", "optimizer", "scaler",
              "schedule"),
)  # fmt: skip
STATE_METADATA = Map(
    {
        "format": Str(),
        "model": Map(MODEL_CONFIG, required=("name", "num_classes", "in_chans")),
        "has_ema": Bool(),
        "extra": _STATE_EXTRA,
    },
    required=("format", "model", "has_ema", "extra"),
)


@dataclass
class TrainingState:
    """A resumable snapshot: the model and optional EMA state dicts, and ``extra`` (optimizer, scaler, schedule,
    progress, history: any nested plain data with tensors)."""

    model: dict[str, Tensor]
    ema: dict[str, Tensor] | None
    extra: dict[str, Any]
    model_config: dict[str, Any]


def save_state(run_dir: str | os.PathLike, state: TrainingState) -> Path:
    """Write ``run_dir/state.safetensors`` atomically."""
    tensors: dict[str, Tensor] = {f"model/{k}": v for k, v in state.model.items()}
    if state.ema is not None:
        tensors |= {f"ema/{k}": v for k, v in state.ema.items()}
    extra = pack_state(state.extra, "extra", tensors)
    meta = {"format": STATE_FORMAT, "model": state.model_config, "has_ema": state.ema is not None, "extra": extra}
    return save_weights(Path(run_dir) / STATE_FILE, tensors, meta)


def load_state(path: str | os.PathLike) -> TrainingState:
    """Read a state file written by `save_state` (a run folder or the file itself).

    Raises:
        FileNotFoundError: no state file.
        ValueError: a truncated or corrupt file, or a file that is not a senet training state.
    """
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    tensors, meta = read_weights(path)
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{str(path)!r} is not a senet training state (format {meta.get('format')!r})")
    fix = (f"it was altered or damaged: restore it from {GOOD_STATE_FILE} beside it (the last good state), or start "
           "the run again in a new folder")  # fmt: skip
    meta = check(meta, STATE_METADATA, f"{str(path)!r} is not a valid training state", fix)
    x = meta["extra"]
    if "totals" not in x and "sums" not in x:
        raise ValueError(f"{str(path)!r} is not a valid training state: extra.totals is missing; {fix}")
    if len(x["history"]) != x["epoch"]:
        raise ValueError(f"{str(path)!r} is not a valid training state: {len(x['history'])} history rows for "
                         f"epoch={x['epoch']} (one per finished epoch); {fix}")  # fmt: skip
    model = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    ema = {k.removeprefix("ema/"): v for k, v in tensors.items() if k.startswith("ema/")} if meta["has_ema"] else None
    try:
        extra = unpack_state(x, tensors)
    except ValueError as e:
        raise ValueError(f"{str(path)!r} is not a valid training state: {e}; {fix}") from None
    return TrainingState(model, ema, extra, meta["model"])


def _link(src: Path, dst: Path) -> None:
    """Make ``dst`` the file ``src`` is, atomically: a hard link renamed into place (a copy where links fail)."""
    import shutil

    tmp = temporary_path(dst)  # what clean_partial_writes removes
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def mark_good(run_dir: str | os.PathLike) -> None:
    """Record the run folder's current state file as known to be usable (see `GOOD_STATE_FILE`)."""
    _link(Path(run_dir) / STATE_FILE, Path(run_dir) / GOOD_STATE_FILE)


def roll_back(run_dir: str | os.PathLike) -> Path | None:
    """Make the last good state the run folder's state again; returns it (None where there is none)."""
    run_dir = Path(run_dir)
    good, state = run_dir / GOOD_STATE_FILE, run_dir / STATE_FILE
    if not good.is_file():
        return None
    if not (state.is_file() and os.path.samefile(good, state)):
        _link(good, state)
    return state
