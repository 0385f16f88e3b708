"""The paper's ablation studies (TPAMI §6, Tables 10–16) on any SE model family and dataset.

A study is a list of variants of one SE model (and its plain twin as the baseline), each trained over K seeds
with the same recipe. Every run lives in its own folder under ``OUT/runs/`` and is trained with
``resume="auto"``: a finished run is read back instead of retrained, an interrupted one continues from its last
checkpoint. So a study that is stopped, for any reason, picks up where it stopped when started again.

Results are written after every run (``study.json``, ``study.md``, ``study.png``), in the paper's table form:
variant, top-1 error mean ± std over seeds, parameters (exact, so that units adding a few dozen weights, such as
ECA, stand apart from the plain network), MACs; beside the paper's SE-ResNet-50 ImageNet figure
for the same variant (docs/reference.md §3) to compare orderings, not values.

The ``attention`` study puts each of SE's successors (`senet.analysis.presets.PRESETS`) where SE sits, one unit
per variant with the same recipe, beside SE and the plain twin. When its runs are done it also measures every
variant's CPU latency (batch 1 and 8) and training step in one process, interleaved (`senet.analysis.cost`;
``cost.json``, measured once and kept), and lists each unit's ImageNet figure from its own paper.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import load_datasets
from ..environment import check_parallelism, usable_cores
from ..factory import create_model, weights_metadata
from ..files import atomic_write, atomic_write_text, folder_lock
from ..models import get_entry
from ..training import TrainConfig, train
from ..training.outputs import mean_std, over_seeds
from ..transfer import resolve_init
from ..validate import MAX_SEEDS, Float, Int, Json, List, Map, Maybe, Str, json_text, read_json
from .cost import ModelSpec, measure_cost
from .presets import PRESETS, preset_options

__all__ = ["STUDIES", "StudyResult", "Variant", "run_study", "study_variants"]


@dataclass(frozen=True)
class Variant:
    """One row of a study: a model and its options. ``paper_err`` is the paper's SE-ResNet-50 top-1 error."""

    label: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    paper_err: float | None = None
    paper_note: str = ""  # where paper_err comes from, where it is not the SE paper (the attention study)

    def run_name(self, seed: int) -> str:
        """The run folder's name: the model and the options that differ from its defaults, then the seed.

        Variants of different studies that build the same network (r=16, sigmoid, avg, standard, all stages are
        all the default SE model) get the same name, so studies sharing a runs folder train that network once.
        """
        changed = dict(sorted(get_entry(self.model).non_default_options(self.options).items()))
        changed |= dict(sorted(changed.pop("attention_options", {}).items()))  # a unit's own options, by name
        text = "-".join(
            f"{k.removeprefix('se_')}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
            for k, v in changed.items()
        )
        return re.sub(r"[^A-Za-z0-9_.=,]+", "-", f"{self.model}-{text}" if text else self.model) + f"-s{seed}"


# Each study: (what it varies, the paper's table, variants(values, SE model, input size) as (label, SE options,
# paper top-1 error on ImageNet[, where that figure comes from])). Paper values are those of docs/reference.md §3
# (SE-ResNet-50; ResNet-50 baseline 23.30); the attention study's are each unit's own paper's (§8).
Rows = list[tuple[Any, ...]]
_R = {2: 22.29, 4: 22.25, 8: 22.26, 16: 22.28, 32: 22.72}
STUDIES: dict[str, tuple[str, str, Callable[[Sequence[Any] | None, str, Callable[[], tuple[int, ...]]], Rows]]] = {
    "reduction": (
        "reduction ratio r",
        "Table 10",
        lambda vals, *_: [(f"r={r}", {"r": r}, _R.get(r)) for r in map(_number, vals or (2, 4, 8, 16, 32))],
    ),
    "squeeze": (
        "squeeze operator",
        "Table 11",
        lambda vals, *_: [
            (s, {"se_squeeze": s}, {"avg": 22.28, "max": 22.57}.get(s)) for s in (vals or ("max", "avg"))
        ],
    ),
    "gate": (
        "excitation non-linearity",
        "Table 12",
        lambda vals, *_: [
            (g, {"se_gate": g}, {"relu": 23.47, "tanh": 23.00, "sigmoid": 22.28}.get(g))
            for g in (vals or ("relu", "tanh", "sigmoid"))
        ],
    ),
    "stage": (
        "SE in one stage only",
        "Table 13",
        lambda vals, *_: (
            [
                (f"stage {s} only", {"se_stages": [int(s)]}, {1: 23.03, 2: 23.04, 3: 22.68}.get(int(s)))
                for s in (vals or (1, 2, 3))
            ]
            + [("all stages", {}, 22.28)]
        ),
    ),
    "integration": (
        "SE integration strategy",
        "Table 14",
        lambda vals, *_: [
            (p, {"se_position": p}, {"standard": 22.28, "pre": 22.23, "post": 22.78, "identity": 22.20}.get(p))
            for p in (vals or ("standard", "pre", "post", "identity"))
        ],
    ),
    "position": (
        "SE after the last 1×1 vs after the 3×3",
        "Table 15",
        lambda vals, *_: [
            (p, {"se_position": p}, {"standard": 22.28, "after_3x3": 22.48}.get(p))
            for p in (vals or ("standard", "after_3x3"))
        ],
    ),
    "nosqueeze": (
        "role of the squeeze: 1×1 convolutions on the full map instead of pooling",
        "Table 16",
        lambda vals, *_: [("NoSqueeze", {"se_squeeze": "none"}, 22.93), ("SE", {}, 22.28)],
    ),
    "attention": (
        "attention unit in SE's place, the SE family",
        "each unit's own paper",
        lambda vals, model, size: [_attention_row(p, model, size) for p in (vals or PRESETS)],
    ),
}


def _attention_row(preset: str, model: str, size: Callable[[], tuple[int, ...]]) -> tuple[Any, ...]:
    p = PRESETS.get(preset)
    if p is None:
        raise ValueError(f"unknown attention unit {preset!r}; choose from {', '.join(PRESETS)}")
    options = preset_options(model, preset, size() if p.sizes else ())
    if p.paper is None:
        return p.label, options, None, f"no ResNet-50 ImageNet figure{': ' + p.no_figure if p.no_figure else ''}"
    base = "" if p.paper.baseline_err is None else f", its ResNet-50 {p.paper.baseline_err:.2f}"
    mark = "" if p.paper.verified else ", unverified"
    return p.label, options, p.paper.err, f"{p.paper.source}{base}{mark}"


def _number(text: Any) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--values {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"--values {text!r} is not a finite number")
    return int(value) if value.is_integer() else value


_OPTIONAL_COUNT = Maybe(Int(0, 2**62))
_MS = Float(0.0, 1e9)  # a measured time in milliseconds
# Where the cost columns of the attention study were measured (`senet.environment.describe` and the measurement's
# settings); the fields shown are checked, the rest of describe()'s are bounded data.
_COST_ENV = Map(
    {
        "device": Str(),
        "threads": Int(1, 1 << 16),
        "torch": Str(max_len=100),
        "input_size": List(Int(1, 1 << 16), length=3),
        "repeats": Int(1, 10_000),
        "train_batch": Int(1, 1 << 16),
    },
    required=("device", "threads", "torch", "input_size", "repeats"),
    others=Json(max_depth=4, max_items=1000),
)
# What study.json holds (`StudyResult.to_dict`), as `StudyResult.load` checks it: one row per variant, and for the
# attention study the measured cost of each variant (``latency_ms`` by batch size, ``train_step_ms``) and ``env``.
STUDY_SCHEMA = Map(
    {
        "study": Str(choices=tuple(STUDIES)),
        "model": Str(max_len=100),
        "rows": List(
            Map(
                {
                    "label": Str(),
                    "errors": List(Float(0.0, 100.0), max_len=MAX_SEEDS),
                    "seeds": Int(1, MAX_SEEDS),
                    "paper_err": Maybe(Float(0.0, 100.0)),
                    "paper_note": Str(),
                    "params": _OPTIONAL_COUNT,
                    "macs": _OPTIONAL_COUNT,
                    "images_per_s": List(Float(0.0, 1e12), max_len=MAX_SEEDS),
                    "latency_ms": Maybe(Map(others=_MS, max_len=100)),
                    "train_step_ms": Maybe(_MS),
                },
                required=("label", "errors", "seeds", "paper_err", "params", "macs"),
            ),
            max_len=1000,
        ),
        "env": Maybe(_COST_ENV),
    },
    required=("study", "model", "rows"),
)
# cost.json: the attention study's measured cost, kept with what it was measured for (the models, the input size,
# the threads, batch sizes and repeats: "measured"; a file without it is from an older senet and is measured again).
_COST_BATCHES, _COST_TRAIN_BATCH, _COST_REPEATS = (1, 8), 8, 15
_COST_SCHEMA = Map(
    {
        "variants": Json(max_depth=8, max_items=100_000),
        "input_size": List(Int(1, 1 << 16), length=3),
        "measured": Json(max_depth=4, max_items=100),
        "env": _COST_ENV,
        "rows": List(
            Map(
                {
                    "latency_ms": Map(others=_MS, max_len=100),
                    "train_step_ms": Maybe(_MS),
                    "train_batch": Int(1, 1 << 16),
                },
                required=("latency_ms", "train_step_ms", "train_batch"),
            ),
            min_len=1,
            max_len=1000,
        ),
    },
    required=("variants", "input_size", "env", "rows"),
)


def study_variants(
    study: str,
    model: str,
    values: Sequence[Any] | None = None,
    baseline: bool = True,
    input_size: Sequence[int] | Callable[[], tuple[int, ...]] | None = None,
) -> list[Variant]:
    """The variants of ``study`` for SE model ``model`` (its plain twin first when ``baseline``).

    ``input_size`` (C, H, W), or a function that returns it, is the size the data has; the attention study needs it
    for the units built for one map size per stage (global GE-θ / θ⁺, FcaNet). Default: the model's own.
    """
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")
    entry = get_entry(model)
    if not entry.has_se:
        raise ValueError(f"{model!r} has no SE; ablate its SE twin {entry.twin!r}")
    size = input_size if callable(input_size) else lambda: tuple(input_size or entry.input_size)
    variants = [Variant(row[0], model, *row[1:]) for row in STUDIES[study][2](values, model, size)]
    for v in variants:  # fail now, not after hours of training, if a variant does not fit this model
        with torch.device("meta"):
            create_model(v.model, **v.options)
    if baseline:
        paper = (None, "") if study == "attention" else (23.30, "")
        variants.insert(0, Variant(f"plain ({entry.twin})", entry.twin, {}, *paper))
    return variants


@dataclass
class StudyResult:
    """A study's rows (variant, errors over seeds, params, MACs; measured cost where taken) and where it lives."""

    study: str
    model: str
    folder: Path
    rows: list[dict[str, Any]]
    env: dict[str, Any] | None = None  # where the cost columns were measured (attention study)

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "model": self.model, "folder": str(self.folder), "rows": self.rows,
                "env": self.env}  # fmt: skip

    @classmethod
    def load(cls, folder: str | os.PathLike) -> StudyResult:
        path = Path(folder) / "study.json"
        if not path.is_file():
            raise FileNotFoundError(f"no study at {str(folder)!r} (study.json is missing)")
        fix = "it was altered or damaged: delete it and run the study again (its runs are cached)"
        data = read_json(path, STUDY_SCHEMA, "study.json", fix)
        return cls(data["study"], data["model"], Path(folder), data["rows"], data.get("env"))

    def heading(self) -> str:
        what, table = STUDIES[self.study][:2]
        if self.study == "attention":
            return f"{what} ({self.model}; each unit's ImageNet figure from its own paper, ResNet-50)"
        return f"{what} ({self.model}; paper {table}: SE-ResNet-50, ImageNet)"

    def table(self) -> list[dict[str, str]]:
        """One dict per variant, column → cell: what `markdown` and the HTML report show."""
        out = []
        costs = any(r.get("latency_ms") for r in self.rows)
        seeds = max((len(r["errors"]) for r in self.rows), default=0)
        err = over_seeds("top-1 err %", seeds)
        for r in self.rows:
            errs = r["errors"]
            row = {
                "variant": r["label"],
                err: mean_std(errs, seeds),
                "seeds": f"{len(errs)}/{r['seeds']}",
                "params": "–" if r["params"] is None else f"{r['params']:,}",  # exact: ECA adds tens of weights
                "MACs": "–" if r["macs"] is None else f"{r['macs'] / 1e6:.2f}M",
            }
            if costs:
                latency = r.get("latency_ms") or {}
                for b in sorted({int(b) for x in self.rows for b in x.get("latency_ms") or {}}):
                    row[f"latency b={b} (ms)"] = f"{latency[str(b)]:.2f}" if str(b) in latency else "–"
                step = r.get("train_step_ms")
                row[f"train step b={self.env['train_batch']} (ms)"] = "–" if step is None else f"{step:.1f}"
                rates = r.get("images_per_s") or []
                row["training img/s (runs)"] = f"{statistics.median(rates):.0f}" if rates else "–"
            paper = "–" if r["paper_err"] is None else f"{r['paper_err']:.2f}"
            row["paper top-1 err %"] = f"{paper} ({r['paper_note']})" if r.get("paper_note") else paper
            out.append(row)
        return out

    def markdown(self) -> str:
        rows = self.table()
        head = list(rows[0]) if rows else ["variant"]
        lines = [self.heading(), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r[h] for h in head) + " |" for r in rows]
        return "\n".join(lines + (["", self.cost_note()] if self.env else []))

    def cost_note(self) -> str:
        """Where and how the cost columns were measured ("" without them)."""
        if not self.env:
            return ""
        size = "×".join(map(str, self.env["input_size"][1:]))
        threads = f"{self.env['threads']} thread{'' if self.env['threads'] == 1 else 's'}"
        return (
            f"Cost columns: {self.env['device']}, {threads}, torch {self.env['torch']}, input {size}, fp32, eager, "
            f"medians of {self.env['repeats']} interleaved runs in one process; training img/s: the median over the "
            "variant's runs (their recipe), each timed under whatever else the machine ran then: it does not compare "
            "variants, the train-step column does."
        )

    def plot(self, path: str | os.PathLike) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.rows if r["errors"]]
        fig, ax = plt.subplots(figsize=(6.5, 0.55 * len(rows) + 1.4))
        for i, r in enumerate(rows):
            m = statistics.mean(r["errors"])
            sd = statistics.stdev(r["errors"]) if len(r["errors"]) > 1 else 0.0
            ax.barh(i, m, xerr=sd, color="C1" if r["label"].startswith("plain") else "C0", alpha=0.7, capsize=3)
            ax.plot(r["errors"], [i] * len(r["errors"]), "k.", ms=4)
        ax.set_yticks(range(len(rows)), [r["label"] for r in rows])
        ax.invert_yaxis()
        if rows:
            lo = min(min(r["errors"]) for r in rows)
            hi = max(max(r["errors"]) for r in rows)
            ax.set_xlim(max(0.0, lo - (hi - lo) * 0.6 - 0.2), hi + (hi - lo) * 0.3 + 0.2)
        ax.set_xlabel("top-1 test error % (bar: mean, line: ± std, dots: seeds)")
        ax.set_title(f"{STUDIES[self.study][0]} — {self.model}", fontsize=10)
        fig.tight_layout()
        out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)
        return out

    def save(self) -> None:
        atomic_write_text(self.folder / "study.json", json_text(self.to_dict()))
        atomic_write_text(self.folder / "study.md", self.markdown() + "\n")
        self.plot(self.folder / "study.png")


def _options(v: Variant, base: TrainConfig) -> dict[str, Any]:
    """The options of variant ``v``'s model: those of the recipe its model shares, then the variant's own."""
    return {**get_entry(v.model).shared_options(base.model_options), **v.options}


def run_study(
    study: str,
    base: TrainConfig,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | os.PathLike,
    values: Sequence[Any] | None = None,
    baseline: bool = True,
    runs_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> StudyResult:
    """Train every variant of ``study`` over ``seeds`` with the recipe ``base`` (a TrainConfig, whose ``model`` is
    the SE model studied); cached and resumable (see the module doc).

    ``runs_dir`` (default ``out_dir/runs``) may be shared by several studies of one recipe: a run they have in
    common, such as the plain baseline, is then trained once.
    """
    size = functools.cache(lambda: _data_size(base))
    variants = study_variants(study, base.model, values, baseline, input_size=size)
    check_parallelism(base.threads, base.workers)  # as each run would, but before the first one starts
    for v in variants:  # the recipe's options with each variant's: a misfit fails now, before any training
        with torch.device("meta"):
            create_model(v.model, **_options(v, base))
        if base.init:
            resolve_init(base.init, v.model)
    folder = Path(out_dir)
    with folder_lock(folder, "--out"):
        result = _run_study(study, base, variants, seeds, folder, runs_dir, log)
        if study == "attention":
            _add_costs(result, base, size(), log)
        return result


def _data_size(base: TrainConfig) -> tuple[int, int, int]:
    """(C, H, W) of the images the recipe trains on."""
    _, _, spec = load_datasets(
        base.dataset, data_dir=base.data_dir, image_size=base.image_size, in_chans=base.in_chans, augment="none",
        train_subset=base.train_subset, test_subset=base.test_subset,
    )  # fmt: skip
    return spec.in_chans, spec.image_size, spec.image_size


def _add_costs(result: StudyResult, base: TrainConfig, size: tuple[int, ...], log: Callable[[str], None]) -> None:
    """Each variant's latency and training step, measured in one process, interleaved, on the model its runs
    trained (the options, classes and channels their weights files record) with the recipe's threads; kept in
    cost.json and measured again only if something the figures depend on changes (the models, the input size,
    the threads, batch sizes and repeats)."""
    specs = []
    for row in result.rows:
        meta = weights_metadata(row["runs"][0])  # what was trained, as the run recorded it
        options = {**meta["options"], "num_classes": meta["num_classes"]}
        if meta.get("add_se"):
            options["add_se"] = meta["add_se"]
        specs.append(ModelSpec(meta["name"], options, row["label"]))
    threads = base.threads or usable_cores()  # as each run trained (senet.training.trainer)
    key = {
        "variants": [[s.model, s.options, s.label] for s in specs],
        "input_size": list(size),
        "measured": {"threads": threads, "batch_sizes": list(_COST_BATCHES), "train_batch": _COST_TRAIN_BATCH,
                     "repeats": _COST_REPEATS, "device": "cpu"},
    }  # fmt: skip
    path = result.folder / "cost.json"
    fix = "it was altered or damaged: delete it and the cost is measured again"
    saved = read_json(path, _COST_SCHEMA, "cost.json of a study", fix) if path.is_file() else {}
    if {k: saved.get(k) for k in key} != json.loads(json_text(key)):
        log(f"measuring latency and training step of {len(specs)} variants at {'×'.join(map(str, size))}, "
            f"{threads} thread{'s' if threads != 1 else ''}")  # fmt: skip
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            rows, env = measure_cost(
                specs, batch_sizes=_COST_BATCHES, train_batch=_COST_TRAIN_BATCH, input_size=size,
                repeats=_COST_REPEATS, twins=False,
            )  # fmt: skip
        finally:  # leave the caller's process as it was
            torch.set_num_threads(before)
        for row, r in zip(result.rows, rows, strict=True):
            if row["params"] is not None and r.params != row["params"]:  # a guard: never another model's cost
                raise RuntimeError(f"{row['label']}: the cost model has {r.params:,} parameters, the trained one "
                                   f"{row['params']:,}; please report this")  # fmt: skip
        text = json_text({**key, "env": env, "rows": [r.to_dict() for r in rows]})
        atomic_write_text(path, text)
        saved = json.loads(text)  # batch sizes as JSON keys, as a later run reads them
    for row, cost in zip(result.rows, saved["rows"], strict=True):
        row["latency_ms"], row["train_step_ms"] = cost["latency_ms"], cost["train_step_ms"]
    result.env = {**saved["env"], "train_batch": saved["rows"][0]["train_batch"]}
    result.save()


def _run_study(
    study: str,
    base: TrainConfig,
    variants: list[Variant],
    seeds: Sequence[int],
    folder: Path,
    runs_dir: str | os.PathLike | None,
    log: Callable[[str], None],
) -> StudyResult:
    result = StudyResult(study, base.model, folder, [])
    for v in variants:
        result.rows.append(
            {**asdict(v), "seeds": len(seeds), "errors": [], "runs": [], "images_per_s": [], "params": None,
             "macs": None}
        )  # fmt: skip
    atomic_write_text(folder / "variants.json", json_text([asdict(v) for v in variants]))
    total = len(variants) * len(seeds)
    done = 0
    for v, row in zip(variants, result.rows, strict=True):
        for seed in seeds:
            done += 1
            cfg = base.replace(
                model=v.model,
                model_options=_options(v, base),
                seed=seed,
                out_dir=str(runs_dir or folder / "runs"),
                name=v.run_name(seed),
            )
            log(f"[{done}/{total}] {study}: {v.label}, seed {seed} → {cfg.run_dir}")
            r = train(cfg, resume="auto")
            row["errors"].append(100.0 * (1.0 - r.test_acc))
            row["runs"].append(str(cfg.run_dir))
            row["images_per_s"].append(r.images_per_s)
            row["params"], row["macs"] = r.params, r.macs  # as trained (the data's real input size)
            result.save()
    return result
