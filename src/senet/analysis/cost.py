"""What SE costs in practice: parameters, MACs, latency, training-step time and memory, beside the plain twin.

The paper (§4, "Model and computational complexity") reports +10% parameters, +0.26% MACs, +1.8% CPU inference
time (164 → 167 ms) and about +10% GPU training time for SE-ResNet-50. `measure_cost` measures the same things on
this machine. Timings are taken side by side in one process and interleaved (each round times every model once,
in rotating order), so that drifts of clock speed or load hit all models alike; figures are medians.

Memory: on CUDA, the peak allocated during a training step; everywhere, the bytes that autograd saves for the
backward pass (activation memory), counted exactly with saved-tensor hooks.

A model is a registered name or a `ModelSpec`: a name with `create_model` options and a label, so that variants of
one network (SE-ResNet-50 with each attention unit, `senet.analysis.presets`) are measured in one run.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..complexity import profile
from ..environment import describe
from ..factory import create_model
from ..models import get_entry

__all__ = ["CostRow", "ModelSpec", "interleaved", "markdown_table", "measure_cost", "saved_activation_bytes"]


def interleaved(
    fns: dict[str, Callable[[], object]], *, repeats: int = 15, warmup: int = 3, sync: Callable[[], None] = lambda: None
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``repeats`` rounds, each timing every function once, order rotating.

    For steady-state times call `senet.environment.keep_freed_memory` first, as the ``senet`` commands and the
    benchmarks do: by default glibc returns freed memory to the kernel, and each call that allocates large maps
    faults them in afresh (a ResNet-50 training step at batch 8: 220–450 MB, docs/performance.md).
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be >= 1")
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    sync()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            fns[n]()
            sync()
            times[n].append(time.perf_counter() - t0)
    return times


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for backward in one training forward pass (each storage once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, nn.Parameter):
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


@dataclass(frozen=True)
class ModelSpec:
    """A registered model with `create_model` options, named ``label`` in tables (default: the model's name)."""

    model: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def name(self) -> str:
        """The model and its label: what tells the variants of one model apart."""
        return f"{self.model} {self.label}" if self.label else self.model


@dataclass
class CostRow:
    """One model's measured cost."""

    model: str
    twin: str
    params: int
    macs: int
    latency_ms: dict[int, float]  # batch size → median ms per forward (inference)
    train_step_ms: float | None  # median ms per forward + backward + SGD step
    train_batch: int
    activation_mb: float  # saved for backward in a training step at train_batch
    cuda_peak_mb: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict, repr=False)
    label: str = ""  # the ModelSpec's: what this variant of the model is
    options: dict[str, Any] = field(default_factory=dict)  # create_model options beyond the name

    def to_dict(self) -> dict:
        return asdict(self)


def measure_cost(
    names: Sequence[str | ModelSpec],
    *,
    batch_sizes: Sequence[int] = (1, 8),
    train_batch: int = 8,
    input_size: tuple[int, int, int] | None = None,
    repeats: int = 15,
    train: bool = True,
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    twins: bool = True,
) -> tuple[list[CostRow], dict]:
    """Measure every model of ``names`` (names or `ModelSpec`) side by side; returns (rows, environment).

    With ``twins``, each SE model is followed by its plain twin in the rows. ``input_size`` defaults to the size the
    paper uses for the first model (224² for ImageNet models). Labels must be unique.
    """
    device = torch.device(device)
    wanted: list[ModelSpec] = []
    for n in names:
        spec = ModelSpec(n) if isinstance(n, str) else n
        e = get_entry(spec.model)
        twin = ModelSpec(e.twin, get_entry(e.twin).shared_options(spec.options))  # the same network but SE's
        pair = [spec, twin] if e.has_se else [twin, spec]
        wanted += pair if twins else [spec]
    specs: dict[str, ModelSpec] = {}
    for spec in wanted:
        if specs.setdefault(spec.name, spec) != spec:
            raise ValueError(f"two variants are named {spec.name!r} with other options; label each ModelSpec")
    pairs = list(specs)
    size = tuple(input_size or get_entry(specs[pairs[0]].model).input_size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models = {
        n: create_model(s.model, in_chans=size[0], **s.options).to(device, memory_format=fmt) for n, s in specs.items()
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    latency: dict[str, dict[int, float]] = {n: {} for n in pairs}
    samples: dict[str, dict[str, list[float]]] = {n: {} for n in pairs}
    for m in models.values():
        m.eval()
    for b in batch_sizes:
        x = torch.randn(b, *size, device=device).contiguous(memory_format=fmt)

        def infer(model: nn.Module, x: torch.Tensor = x) -> Callable[[], object]:
            def run() -> object:
                with torch.inference_mode():
                    return model(x)

            return run

        times = interleaved({n: infer(m) for n, m in models.items()}, repeats=repeats, sync=sync)
        for n, t in times.items():
            latency[n][b] = 1e3 * statistics.median(t)
            samples[n][f"infer_b{b}"] = t

    step_ms: dict[str, float | None] = dict.fromkeys(pairs)
    act_mb: dict[str, float] = {}
    cuda_peak: dict[str, float | None] = dict.fromkeys(pairs)
    x = torch.randn(train_batch, *size, device=device).contiguous(memory_format=fmt)
    classes = min(max(1, getattr(m, "num_classes", 10)) for m in models.values())  # a label every model has
    y = torch.randint(0, classes, (train_batch,), device=device)
    for n, m in models.items():
        m.train()
        act_mb[n] = saved_activation_bytes(m, x) / 2**20
    if train:
        opts = {n: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9, foreach=True) for n, m in models.items()}

        def step(n: str) -> Callable[[], object]:
            def run() -> object:
                opts[n].zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(models[n](x), y)
                loss.backward()
                opts[n].step()
                return loss

            return run

        times = interleaved({n: step(n) for n in pairs}, repeats=repeats, warmup=2, sync=sync)
        for n, t in times.items():
            step_ms[n] = 1e3 * statistics.median(t)
            samples[n]["train_step"] = t
        if device.type == "cuda":
            for n in pairs:
                torch.cuda.reset_peak_memory_stats(device)
                step(n)()
                sync()
                cuda_peak[n] = torch.cuda.max_memory_allocated(device) / 2**20

    rows = []
    for n in pairs:
        p = profile(models[n], size)
        spec = specs[n]
        rows.append(
            CostRow(
                model=spec.model,
                twin=get_entry(spec.model).twin,
                params=p.params,
                macs=p.macs,
                latency_ms=latency[n],
                train_step_ms=step_ms[n],
                train_batch=train_batch,
                activation_mb=act_mb[n],
                cuda_peak_mb=cuda_peak[n],
                samples=samples[n],
                label=spec.label,
                options=dict(spec.options),
            )
        )
    env = {**describe(device), "input_size": list(size), "repeats": repeats, "channels_last": channels_last}
    return rows, env


def _key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=repr)


def _unit_label(row: CostRow) -> str:
    """The name of the unit in ``row``'s model where SE sits: SE, or another (ECA in ``eca_resnet50d``)."""
    from .presets import PRESETS

    unit = row.options.get("attention") or dict(get_entry(row.model).se_defaults).get("attention", "se")
    if unit == "ge":  # the preset of its variant: GE-θ⁻, GE-θ or GE-θ⁺
        unit = "ge_" + dict(row.options.get("attention_options") or {}).get("variant", "theta_minus")
    return PRESETS[unit].label if unit in PRESETS else str(unit)


def markdown_table(rows: Sequence[CostRow], env: dict) -> str:
    """Each SE model beside its twin, with the ratios SE / plain (a variant's: its label / plain; a model with
    another unit in SE's place: that unit's name / plain)."""
    plain = {(r.model, _key(r.options)): r for r in rows if not get_entry(r.model).has_se}
    batches = sorted({b for r in rows for b in r.latency_ms})
    head = [
        "model",
        "params",
        "GMACs",
        *[f"latency b={b} (ms)" for b in batches],
        "train step (ms)",
        "activations (MB)",
    ]
    if any(r.cuda_peak_mb is not None for r in rows):
        head.append("CUDA peak (MB)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(r: CostRow) -> list[str]:
        cells = [f"`{r.model}` {r.label}".rstrip(), f"{r.params:,}", f"{r.macs / 1e9:.3f}"]  # exact: ECA adds dozens
        cells += [f"{r.latency_ms[b]:.2f}" for b in batches]
        cells += ["–" if r.train_step_ms is None else f"{r.train_step_ms:.1f}", f"{r.activation_mb:.1f}"]
        if "CUDA peak (MB)" in head:
            cells.append("–" if r.cuda_peak_mb is None else f"{r.cuda_peak_mb:.0f}")
        return cells

    def ratio(a: float | None, b: float | None) -> str:
        return "–" if a is None or b is None else f"{a / b:.3f}×"

    shown: set[tuple[str, str]] = set()
    for r in rows:
        twin = (r.twin, _key(get_entry(r.twin).shared_options(r.options)))  # the same network but SE's
        if not get_entry(r.model).has_se or twin not in plain:
            continue
        t = plain[twin]
        what = r.label or _unit_label(r)
        cells = [f"**{what} / plain**", ratio(r.params, t.params), ratio(r.macs, t.macs)]
        cells += [ratio(r.latency_ms[b], t.latency_ms[b]) for b in batches]
        cells += [ratio(r.train_step_ms, t.train_step_ms), ratio(r.activation_mb, t.activation_mb)]
        if "CUDA peak (MB)" in head:
            cells.append(ratio(r.cuda_peak_mb, t.cuda_peak_mb))
        for line in (fmt(r), None if twin in shown else fmt(t), cells):
            if line is not None:
                lines.append("| " + " | ".join(line) + " |")
        shown.add(twin)
    size = "×".join(map(str, env["input_size"][1:]))
    threads = f"{env['threads']} thread{'' if env['threads'] == 1 else 's'}"
    kept = ", freed memory kept" if env.get("freed_memory_kept") else ""
    lines.append("")
    lines.append(
        f"{env['device']}, {threads}, torch {env['torch']}, input {size}, fp32, eager, medians of {env['repeats']} "
        f"interleaved runs{kept}."
    )
    return "\n".join(lines)
