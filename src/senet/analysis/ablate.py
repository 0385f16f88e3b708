"""The paper's ablation studies (TPAMI §6, Tables 10–16) on any SE model family and dataset.

A study is a list of variants of one SE model (and its plain twin as the baseline), each trained over K seeds
with the same recipe. Every run lives in its own folder under ``OUT/runs/`` and is trained with
``resume="auto"``: a finished run is read back instead of retrained, an interrupted one continues from its last
checkpoint. So a study that is stopped, for any reason, picks up where it stopped when started again.

Results are written after every run (``study.json``, ``study.md``, ``study.png``), in the paper's table form:
variant, top-1 error mean ± std over seeds, parameters, MACs; beside the paper's SE-ResNet-50 ImageNet figure
for the same variant (docs/reference.md §3) to compare orderings, not values.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..environment import check_parallelism
from ..factory import create_model
from ..files import atomic_write, atomic_write_text, folder_lock
from ..models import get_entry
from ..training import TrainConfig, train
from ..validate import MAX_SEEDS, Float, Int, List, Map, Maybe, Str, json_text, read_json

__all__ = ["STUDIES", "StudyResult", "Variant", "run_study", "study_variants"]


@dataclass(frozen=True)
class Variant:
    """One row of a study: a model and its options. ``paper_err`` is the paper's SE-ResNet-50 top-1 error."""

    label: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    paper_err: float | None = None

    def run_name(self, seed: int) -> str:
        """The run folder's name: the model and the options that differ from its defaults, then the seed.

        Variants of different studies that build the same network (r=16, sigmoid, avg, standard, all stages are
        all the default SE model) get the same name, so studies sharing a runs folder train that network once.
        """
        changed = dict(sorted(get_entry(self.model).non_default_options(self.options).items()))
        text = "-".join(
            f"{k.removeprefix('se_')}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
            for k, v in changed.items()
        )
        return re.sub(r"[^A-Za-z0-9_.=,]+", "-", f"{self.model}-{text}" if text else self.model) + f"-s{seed}"


# Each study: (what it varies, the paper's table, variants as (label, SE options, paper top-1 error on ImageNet)).
# Paper values are those of docs/reference.md §3 (SE-ResNet-50; ResNet-50 baseline 23.30).
_R = {2: 22.29, 4: 22.25, 8: 22.26, 16: 22.28, 32: 22.72}
STUDIES: dict[str, tuple[str, str, Callable[[Sequence[Any] | None], list[tuple[str, dict, float | None]]]]] = {
    "reduction": (
        "reduction ratio r",
        "Table 10",
        lambda vals: [(f"r={r}", {"r": r}, _R.get(r)) for r in map(_number, vals or (2, 4, 8, 16, 32))],
    ),
    "squeeze": (
        "squeeze operator",
        "Table 11",
        lambda vals: [(s, {"se_squeeze": s}, {"avg": 22.28, "max": 22.57}.get(s)) for s in (vals or ("max", "avg"))],
    ),
    "gate": (
        "excitation non-linearity",
        "Table 12",
        lambda vals: [
            (g, {"se_gate": g}, {"relu": 23.47, "tanh": 23.00, "sigmoid": 22.28}.get(g))
            for g in (vals or ("relu", "tanh", "sigmoid"))
        ],
    ),
    "stage": (
        "SE in one stage only",
        "Table 13",
        lambda vals: (
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
        lambda vals: [
            (p, {"se_position": p}, {"standard": 22.28, "pre": 22.23, "post": 22.78, "identity": 22.20}.get(p))
            for p in (vals or ("standard", "pre", "post", "identity"))
        ],
    ),
    "position": (
        "SE after the last 1×1 vs after the 3×3",
        "Table 15",
        lambda vals: [
            (p, {"se_position": p}, {"standard": 22.28, "after_3x3": 22.48}.get(p))
            for p in (vals or ("standard", "after_3x3"))
        ],
    ),
    "nosqueeze": (
        "role of the squeeze: 1×1 convolutions on the full map instead of pooling",
        "Table 16",
        lambda vals: [("NoSqueeze", {"se_squeeze": "none"}, 22.93), ("SE", {}, 22.28)],
    ),
}


def _number(text: Any) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--values {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"--values {text!r} is not a finite number")
    return int(value) if value.is_integer() else value


_OPTIONAL_COUNT = Maybe(Int(0, 2**62))
# What study.json holds (`StudyResult.to_dict`), as `StudyResult.load` checks it: one row per variant.
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
                    "params": _OPTIONAL_COUNT,
                    "macs": _OPTIONAL_COUNT,
                },
                required=("label", "errors", "seeds", "paper_err", "params", "macs"),
            ),
            max_len=1000,
        ),
    },
    required=("study", "model", "rows"),
)


def study_variants(study: str, model: str, values: Sequence[Any] | None = None, baseline: bool = True) -> list[Variant]:
    """The variants of ``study`` for SE model ``model`` (its plain twin first when ``baseline``)."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")
    entry = get_entry(model)
    if not entry.has_se:
        raise ValueError(f"{model!r} has no SE; ablate its SE twin {entry.twin!r}")
    variants = [Variant(label, model, opts, paper) for label, opts, paper in STUDIES[study][2](values)]
    for v in variants:  # fail now, not after hours of training, if a variant does not fit this model
        with torch.device("meta"):
            create_model(v.model, **v.options)
    if baseline:
        variants.insert(0, Variant(f"plain ({entry.twin})", entry.twin, {}, 23.30))
    return variants


@dataclass
class StudyResult:
    """A study's rows (variant, errors over seeds, params, MACs) and where it lives."""

    study: str
    model: str
    folder: Path
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "model": self.model, "folder": str(self.folder), "rows": self.rows}

    @classmethod
    def load(cls, folder: str | os.PathLike) -> StudyResult:
        path = Path(folder) / "study.json"
        if not path.is_file():
            raise FileNotFoundError(f"no study at {str(folder)!r} (study.json is missing)")
        fix = "it was altered or damaged: delete it and run the study again (its runs are cached)"
        data = read_json(path, STUDY_SCHEMA, "study.json", fix)
        return cls(data["study"], data["model"], Path(folder), data["rows"])

    def markdown(self) -> str:
        what, table = STUDIES[self.study][:2]
        lines = [
            f"{what} ({self.model}; paper {table}: SE-ResNet-50, ImageNet)",
            "",
            "| variant | top-1 err % (mean ± std) | seeds | params | MACs | paper top-1 err % |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            errs = r["errors"]
            if errs:
                std = statistics.stdev(errs) if len(errs) > 1 else 0.0
                err = f"{statistics.mean(errs):.2f} ± {std:.2f}"
            else:
                err = "–"
            paper = "–" if r["paper_err"] is None else f"{r['paper_err']:.2f}"
            params = "–" if r["params"] is None else f"{r['params'] / 1e6:.3f}M"
            macs = "–" if r["macs"] is None else f"{r['macs'] / 1e6:.2f}M"
            lines.append(f"| {r['label']} | {err} | {len(errs)}/{r['seeds']} | {params} | {macs} | {paper} |")
        return "\n".join(lines)

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
    variants = study_variants(study, base.model, values, baseline)
    check_parallelism(base.threads, base.workers)  # as each run would, but before the first one starts
    for v in variants:  # the recipe's options with each variant's: a misfit fails now, before any training
        with torch.device("meta"):
            create_model(v.model, **_options(v, base))
    folder = Path(out_dir)
    with folder_lock(folder, "--out"):
        return _run_study(study, base, variants, seeds, folder, runs_dir, log)


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
        result.rows.append({**asdict(v), "seeds": len(seeds), "errors": [], "runs": [], "params": None, "macs": None})
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
            row["params"], row["macs"] = r.params, r.macs  # as trained (the data's real input size)
            result.save()
    return result
