"""Seed-averaged comparisons: train an SE model and its plain twin (or any models) over K seeds with one recipe
and report last-epoch test accuracy mean ± std, parameters, multiply-adds and training speed, as the paper's
tables set SE networks beside their baselines (Tables 2–4), with both training curves on one plot (Fig. 4).

Each run is cached in its own folder and resumed if interrupted (`train(..., resume="auto")`), so a comparison
that was stopped continues where it was.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..environment import check_parallelism, describe
from ..factory import create_model
from ..files import atomic_write_text, check_folder_name, folder_lock
from ..models import get_entry
from ..transfer import resolve_init
from ..validate import MAX_SEEDS, Float, Int, Json, List, Map, Str, json_text
from .config import TrainConfig
from .finetune import Finetune
from .outputs import count, mean_std, over_seeds, plot_curves
from .trainer import RunResult, train

__all__ = ["COMPARE_SCHEMA", "Comparison", "ModelSummary", "compare", "paired_differences"]

_SHARE = Float(0.0, 1.0)
# What compare.json holds (`_compare` writes it; `senet report` reads it): one entry per model.
COMPARE_SCHEMA = Map(
    {
        "models": List(
            Map(
                {
                    "model": Str(max_len=100), "seeds": List(Int(0, 2**63 - 1), min_len=1, max_len=MAX_SEEDS),
                    "test_acc": List(_SHARE, min_len=1, max_len=MAX_SEEDS), "mean": _SHARE, "std": Float(0.0),
                    "params": Int(0, 2**53), "macs": Int(0, 2**62), "images_per_s": Float(0.0),
                    "wall_s": Float(0.0), "runs": List(Str(), max_len=MAX_SEEDS),
                },
                required=("model", "seeds", "test_acc", "mean", "std", "params", "macs", "images_per_s", "wall_s"),
            ),
            min_len=1,
            max_len=1000,
        ),
        "differences": List(Map(others=Json(max_depth=2))),
        "machine": Map(others=Json(max_depth=1)),
        "config": Map(others=Json(max_depth=4, max_items=10_000)),
    },
    required=("models", "config"),
)  # fmt: skip


@dataclass
class ModelSummary:
    """One model's runs over several seeds."""

    model: str
    runs: list[RunResult]

    @property
    def accs(self) -> list[float]:
        return [r.test_acc for r in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs)

    @property
    def std(self) -> float:  # sample standard deviation over seeds (0 for one seed)
        return statistics.stdev(self.accs) if len(self.runs) > 1 else 0.0

    def mean_history(self) -> list[dict[str, Any]]:
        """Per-epoch metrics averaged over the seeds (epochs every run evaluated)."""
        rows = []
        for rs in zip(*(r.history for r in self.runs), strict=False):
            row = {"epoch": rs[0]["epoch"], "train_loss": statistics.fmean(r["train_loss"] for r in rs)}
            tested = [r for r in rs if r["test_acc"] != ""]
            row["test_loss"] = statistics.fmean(r["test_loss"] for r in tested) if len(tested) == len(rs) else ""
            row["test_acc"] = statistics.fmean(r["test_acc"] for r in tested) if len(tested) == len(rs) else ""
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        r0 = self.runs[0]
        return {
            "model": self.model,
            "seeds": [r.config.seed for r in self.runs],
            "test_acc": self.accs,
            "mean": self.mean,
            "std": self.std,
            "params": r0.params,
            "macs": r0.macs,
            "images_per_s": statistics.median(r.images_per_s for r in self.runs),
            "wall_s": statistics.fmean(r.wall_s for r in self.runs),
            "runs": [str(r.run_dir) for r in self.runs],
        }


@dataclass
class Comparison:
    """The result of `compare`: one `ModelSummary` per model, and where the table, plot and data were written."""

    models: list[ModelSummary]
    folder: Path
    report: Path
    plot: Path
    data: Path
    machine: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """A markdown table: model, params, MACs, last-epoch test accuracy mean ± std over seeds, speed, time."""
        seeds = max(len(m.runs) for m in self.models)
        top1 = over_seeds("test top-1 %", seeds)
        lines = [
            f"| model | params | MMACs | {top1} | train img/s | wall time / run |",
            "|---|---|---|---|---|---|",
        ]
        for m in self.models:
            d, acc = m.to_dict(), mean_std([100 * a for a in m.accs], seeds)
            lines.append(
                f"| {m.model} | {d['params'] / 1e6:.3f}M | {d['macs'] / 1e6:.2f} | {acc} | {d['images_per_s']:.0f} | "
                f"{d['wall_s'] / 60:.1f} min |"
            )
        return "\n".join(lines)

    def differences(self) -> list[dict[str, Any]]:
        """The first model's last-epoch test accuracy less each other model's, seed by seed (runs of one seed share
        their data order and augmentation, so the pairs differ by the networks and their initialisation): the
        per-seed differences, their mean and its standard error (None with one seed)."""
        first = self.models[0]
        return [
            {"model": first.model, "baseline": other.model, **paired_differences(first.accs, other.accs)}
            for other in self.models[1:]
        ]

    def differences_text(self) -> str:
        """`differences` as lines of text, in percentage points."""
        lines = []
        for d in self.differences():
            pair = f"{d['model']} - {d['baseline']}"  # ASCII, as the numbers' signs
            if d["stderr"] is None:
                lines.append(f"{pair}: {100 * d['mean']:+.2f} points (one seed)")
                continue
            seeds = ", ".join(f"{100 * x:+.2f}" for x in d["per_seed"])
            mean = f"mean {100 * d['mean']:+.2f} ± {100 * d['stderr']:.2f} (standard error)"
            lines.append(f"{pair}, seed by seed: {seeds} points; {mean}")
        return "\n".join(lines)


def paired_differences(first: Sequence[float], second: Sequence[float]) -> dict[str, Any]:
    """``first[i] - second[i]`` for each pair (runs of one seed), their mean, and the standard error of the mean (the
    sample standard deviation of the differences over sqrt(n); None for one pair)."""
    if not first or len(first) != len(second):
        raise ValueError(
            f"paired differences need equally many values, at least one; got {len(first)} and {len(second)}"
        )
    diffs = [a - b for a, b in zip(first, second, strict=True)]
    stderr = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    return {"per_seed": diffs, "mean": statistics.fmean(diffs), "stderr": stderr}


def compare(
    models: Sequence[str],
    config: TrainConfig,
    *,
    seeds: int | Sequence[int] = 3,
    name: str = "",
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> Comparison:
    """Train each of ``models`` with ``config`` once per seed and summarise.

    Args:
        models: model names, e.g. ``["se_resnet20", "resnet20"]``.
        config: the recipe; its ``model`` and ``seed`` are replaced per run.
        seeds: how many seeds (0, 1, ... K-1) or which ones.
        name: the comparison's folder under ``config.out_dir``; by default ``compare-A-B-DATASET``.
        log: where to say which run starts (stderr by default).

    The runs go to ``out_dir/name/MODEL-sSEED``; the table to ``compare.md``, the numbers to ``compare.json`` and
    the curves (averaged over seeds) to ``compare.png`` in the same folder.
    """
    if len(models) < 1:
        raise ValueError("compare needs at least one model")
    check_parallelism(config.threads, config.workers)  # as each run would, but before the first one starts
    finetune = Finetune(config.freeze, config.freeze_bn, config.backbone_lr, config.layer_decay)
    for m in models:  # unknown names, options, stages and init sources fail before any training
        with torch.device("meta"):
            net = create_model(m, add_se=config.add_se, **get_entry(m).shared_options(config.model_options))
        finetune.frozen(net)  # a stage the model lacks, before the init source is read
        finetune.lr_scales(net)
        if config.init:
            resolve_init(config.init, m)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError(f"seeds={seeds!r}: give at least one seed")
    folder = Path(config.out_dir) / (check_folder_name(name) or f"compare-{'-'.join(models)}-{config.dataset}")
    with folder_lock(folder, "--name"):
        return _compare(models, config, seed_list, folder, log)


def _compare(
    models: Sequence[str], config: TrainConfig, seed_list: list[int], folder: Path, log: Callable[[str], None]
) -> Comparison:
    runs: dict[str, list[RunResult]] = {m: [] for m in models}
    for s in seed_list:  # seed by seed, so that a change in machine load falls on every model alike
        for m in models:
            options = get_entry(m).shared_options(config.model_options)
            cfg = config.replace(model=m, seed=s, out_dir=str(folder), name=f"{m}-s{s}", model_options=options)
            done = sum(map(len, runs.values()))
            log(f"[{done + 1}/{len(models) * len(seed_list)}] {m}, seed {s} → {cfg.run_dir}")
            runs[m].append(train(cfg, resume="auto"))
    summaries = [ModelSummary(m, rs) for m, rs in runs.items()]
    result = Comparison(
        summaries, folder, folder / "compare.md", folder / "compare.png", folder / "compare.json", describe()
    )
    curves = {f"{s.model} ({count(len(s.runs), 'seed')})": s.mean_history() for s in summaries}
    several = max(len(s.runs) for s in summaries) > 1
    plot_curves(result.plot, curves, title=f"{config.dataset}: {'mean over seeds' if several else '1 seed'}")
    mach = result.machine
    differences = result.differences_text()  # empty for one model
    if differences:
        differences += "\n\n"
    text = (
        f"# {' vs '.join(models)} on {config.dataset}\n\n{result.table()}\n\n{differences}"
        f"Last-epoch test accuracy after {count(config.epochs, 'epoch')}; seeds {seed_list}. Machine: {mach['cpu']}, "
        f"{mach['cores']} cores, {mach['threads']} threads, torch {mach['torch']}"
        f"{', GPU ' + mach['gpu'] if mach['gpu'] else ''}.\n\nRecipe:\n\n```yaml\n{config.to_yaml()}```\n"
    )
    atomic_write_text(result.report, text)
    data = {"models": [s.to_dict() for s in summaries], "differences": result.differences(), "machine": mach,
            "config": config.to_dict()}  # fmt: skip
    atomic_write_text(result.data, json_text(data))
    return result
