"""What SE costs in time: SE models beside their plain twins, and senet beside timm on the same architecture.

The paper's claim (§4): SE-ResNet-50 adds 0.26% multiply-adds and 1.8% CPU inference time. This script measures
that ratio here, for senet's SE path and for timm's (``seresnet50`` is senet's ``se_resnet50(layout="v1.5")``
with other parameter names), in eager mode, after `senet.optimize_for_inference`, and under `torch.compile`;
inference at batch 1 and 8 and a training step (forward + backward + SGD). Every comparison is one group of models
timed side by side in one process, interleaved (`senet.analysis.cost.interleaved`), medians of ``--repeats`` runs.

    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/se_overhead.py          # the must-show set
    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/se_overhead.py --full   # + ResNet-18, ResNeXt-50, bf16,
                                                                                  # channels_last, more compiled
    python benchmarks/se_overhead.py --device cuda                                # GPU: AMP, channels_last, b=256

On CUDA, eager settings also time senet's SE model with `senet.fused.use_triton` (column "senet SE triton").
Writes ``--json`` (every sample) and the table between the markers of ``--markdown`` (docs/performance.md; the
CUDA run writes its own table and docs/performance-cuda.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

import senet
from senet.analysis.cost import interleaved
from senet.environment import describe, keep_freed_memory
from senet.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
MARKERS = {
    "cpu": ("<!-- BEGIN se_overhead.py -->", "<!-- END se_overhead.py -->"),
    "cuda": ("<!-- BEGIN se_overhead.py cuda -->", "<!-- END se_overhead.py cuda -->"),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Arch:
    """One architecture: senet's SE model and twin, and timm's names for the same networks (None: not in timm)."""

    label: str
    senet_se: str
    senet_plain: str
    senet_kwargs: tuple[tuple[str, object], ...] = ()
    timm_se: str | None = None
    timm_plain: str | None = None


ARCHS = {
    "resnet50": Arch("ResNet-50 (v1.5)", "se_resnet50", "resnet50", (("layout", "v1.5"),), "seresnet50", "resnet50"),
    "resnet18": Arch("ResNet-18", "se_resnet18", "resnet18", (("se_rounding", "round8"),), "seresnet18", "resnet18"),
    "resnext50": Arch(
        "ResNeXt-50 32×4d (v1.5)",
        "se_resnext50_32x4d",
        "resnext50_32x4d",
        (("layout", "v1.5"),),
        "seresnext50_32x4d",
        "resnext50_32x4d",
    ),
}


@dataclass(frozen=True)
class Setting:
    """What is timed: ``task`` infer or train, at ``batch``, in ``dtype`` (train: AMP autocast), ``layout``, and
    ``mode``: eager, optimized (`senet.optimize_for_inference` without compiling; both libraries' models) or
    compiled (`torch.compile`)."""

    arch: str
    task: str
    batch: int
    mode: str = "eager"
    dtype: str = "float32"
    layout: str = "nchw"
    timm: bool = True  # time timm's two models too (compiling them on CPU takes minutes)

    @property
    def name(self) -> str:
        return f"{ARCHS[self.arch].label}, {self.task} b={self.batch}, {self.mode}, {self.dtype}, {self.layout}"


def plan(full: bool, device: str) -> list[Setting]:
    """The settings to time: the must-show set by default, everything with ``full``."""
    if device == "cuda":
        base = [Setting("resnet50", t, 256, "eager", "float16", "channels_last") for t in ("train", "infer")]
        base += [Setting("resnet50", "infer", 1, "eager")]
        base += [Setting("resnet50", t, 256, "compiled", "float16", "channels_last", timm=full) for t in
                 ("train", "infer")]  # fmt: skip
        if full:
            base += [
                Setting(a, t, 256, m, d, "channels_last")
                for a in ("resnet18", "resnext50")
                for t in ("infer", "train")
                for m in ("eager", "compiled")
                for d in ("bfloat16", "float16")
            ]
        return base
    base = [Setting("resnet50", "infer", b) for b in (1, 8)]
    base += [Setting("resnet50", "train", 8)]
    base += [Setting("resnet50", "infer", b, "optimized") for b in (1, 8)]
    base += [Setting("resnet50", "infer", b, "compiled", timm=False) for b in (1, 8)]
    if full:
        base += [Setting("resnet50", "infer", b, "eager", "float32", "channels_last") for b in (1, 8)]
        base += [Setting("resnet50", "infer", 1, "compiled"), Setting("resnet50", "train", 8, "compiled")]
        base += [Setting("resnet50", "infer", b, m, "bfloat16") for b in (1, 8) for m in ("eager", "compiled")]
        for a in ("resnet18", "resnext50"):
            base += [Setting(a, "infer", b, m, d) for b in (1, 8) for m in ("eager", "compiled") for d in DTYPES if
                     d != "float16"]  # fmt: skip
            base += [Setting(a, "train", 8)]
    return base


def _build(arch: Arch, which: str, size: int, device: torch.device) -> nn.Module:
    """One of the four models, with BN statistics from a forward pass on random data (so folding is exercised)."""
    if which.startswith("senet"):
        name = arch.senet_plain if which == "senet plain" else arch.senet_se
        kwargs = dict(arch.senet_kwargs)
        if which == "senet plain":
            kwargs = {k: v for k, v in kwargs.items() if not k.startswith("se_")}
        model = senet.create_model(name, **kwargs)
    else:
        import timm

        model = timm.create_model(arch.timm_se if which == "timm SE" else arch.timm_plain)
    if which == "senet SE triton":
        senet.fused.use_triton(model)
    model.to(device).train()
    with torch.no_grad():
        model(torch.randn(2, 3, size, size, device=device))
    return model.eval()


def _prepare(model: nn.Module, s: Setting, x: torch.Tensor) -> nn.Module:
    fmt = torch.channels_last if s.layout == "channels_last" else torch.contiguous_format
    if s.mode == "optimized":
        model = senet.optimize_for_inference(model, x[:1], layout=s.layout)
    model = model.to(memory_format=fmt)
    if s.task == "infer":
        model = model.to(DTYPES[s.dtype])
    return torch.compile(model) if s.mode == "compiled" else model


def _runner(model: nn.Module, s: Setting, x: torch.Tensor) -> Callable[[], object]:
    device = x.device.type
    if s.task == "infer":
        x = x.to(DTYPES[s.dtype])

        def infer() -> object:
            with torch.inference_mode():
                return model(x)

        return infer
    y = torch.randint(0, 1000, (x.shape[0],), device=x.device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, foreach=True)
    model.train()
    amp = s.dtype != "float32"

    def step() -> object:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, DTYPES[s.dtype], enabled=amp):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _cpu_jiffies() -> tuple[int, int]:
    """(busy clock ticks of the whole machine, ticks of this process) from /proc; (0, 0) where it is missing."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return 0, 0


def clean_rounds(
    fns: dict[str, Callable[[], object]], want: int, sync: Callable[[], None], max_factor: int = 2
) -> tuple[dict[str, list[float]], int, int]:
    """Interleaved rounds (`interleaved`, order rotating) until ``want`` of them ran while no other process used
    more than 10% of a core, or ``max_factor * want`` rounds have run; returns (seconds per call, kept, total).

    The machine is shared: a round during which another job ran is slower for whichever model it hit, and medians
    only absorb that while such rounds are few. Where too few rounds are clean, every round is kept (and the count
    says so).
    """
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    names = list(fns)
    clean: dict[str, list[float]] = {n: [] for n in names}
    every: dict[str, list[float]] = {n: [] for n in names}
    total = kept = 0
    while kept < want and total < max_factor * want:
        order = names[total % len(names) :] + names[: total % len(names)]
        busy0, own0 = _cpu_jiffies()
        t0 = time.perf_counter()
        times = interleaved({n: fns[n] for n in order}, repeats=1, warmup=0, sync=sync)
        wall = time.perf_counter() - t0
        busy1, own1 = _cpu_jiffies()
        others = (busy1 - busy0) - (own1 - own0)  # ticks other processes ran during the round
        total += 1
        for n in names:
            every[n] += times[n]
        if others <= 0.1 * wall * hz:
            kept += 1
            for n in names:
                clean[n] += times[n]
    return (clean, kept, total) if kept >= want else (every, kept, total)


def run_setting(s: Setting, repeats: int, device: torch.device, size: int) -> dict:
    """Time the SE model and twin of senet (and of timm, where it has them) side by side; medians and ratios."""
    arch = ARCHS[s.arch]
    who = ["senet SE", "senet plain"]
    if device.type == "cuda" and s.mode == "eager" and senet.fused.available(device):
        who.insert(1, "senet SE triton")
    if arch.timm_se is not None and s.timm:
        who += ["timm SE", "timm plain"]
    fmt = torch.channels_last if s.layout == "channels_last" else torch.contiguous_format
    x = torch.randn(s.batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fns, first_call = {}, {}
    for w in who:
        torch.manual_seed(0)
        fn = _runner(_prepare(_build(arch, w, size, device), s, x), s, x)
        t0 = time.perf_counter()
        fn()  # the first call compiles (compiled mode)
        sync()
        first_call[w] = time.perf_counter() - t0
        fns[w] = fn
    interleaved(fns, repeats=2, warmup=0, sync=sync)  # warm-up
    want = 3 * repeats if s.task == "infer" and s.batch == 1 else repeats  # b=1 is cheap and noisier
    times, kept, total = clean_rounds(fns, want, sync)
    med = {w: 1e3 * statistics.median(t) for w, t in times.items()}
    pairs = [("senet SE", "senet plain", "senet SE/plain")]
    if "senet SE triton" in med:
        pairs += [("senet SE triton", "senet plain", "senet SE triton/plain")]
    if "timm SE" in med:
        pairs += [("timm SE", "timm plain", "timm SE/plain"), ("timm SE", "senet SE", "timm SE / senet SE")]
    ratios = {k: med[a] / med[b] for a, b, k in pairs}
    per_round = {k: [x / y for x, y in zip(times[a], times[b], strict=True)] for a, b, k in pairs}
    return {
        **asdict(s),
        "name": s.name,
        "median_ms": med,
        "ratios": ratios,
        "median_of_round_ratios": {k: statistics.median(v) for k, v in per_round.items()},
        "rounds_kept": kept,
        "rounds_run": total,
        "first_call_s": first_call,
        "samples_ms": {w: [1e3 * v for v in t] for w, t in times.items()},
    }


def environment(device: torch.device) -> dict:
    """`senet.environment.describe`, with timm's version, the load average and the date."""
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    return {
        **describe(device),
        "timm": timm_version,
        "load_before": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown(results: list[dict], env: dict) -> str:
    """One table: each setting's medians and the ratios the issue asks about (Triton columns where timed)."""
    cols = ["senet SE", "senet plain", "**senet SE/plain**"]
    if any("senet SE triton" in r["median_ms"] for r in results):
        cols[1:1] = ["senet SE triton"]
        cols += ["**senet SE triton/plain**"]
    cols += ["timm SE", "timm plain", "timm SE/plain", "**timm SE / senet SE**"]
    lines = ["| setting | " + " | ".join(cols) + " | clean rounds |", "|---|" + "---:|" * (len(cols) + 1)]
    for r in results:
        m, q, p = r["median_ms"], r["ratios"], r["median_of_round_ratios"]
        cells = []
        for c in cols:
            k = c.strip("*")
            if k in m:
                cells.append(f"{m[k]:.1f}")
            elif k in q:
                cells.append(f"**{q[k]:.3f} ({p[k]:.3f})**" if c.startswith("**") else f"{q[k]:.3f} ({p[k]:.3f})")
            else:
                cells.append("–")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {r['rounds_kept']}/{r['rounds_run']} |")
    gpu = f"{env['gpu']} with " if env.get("gpu") and env["device"] != "cpu" else ""
    rounds = f"{env['repeats']} per setting ({3 * env['repeats']} at inference b=1; all rounds where fewer were clean)"
    lines += [
        "",
        "Ratios: of the medians (in brackets: the median of the ratios within each round, which cancels drifts of "
        "the machine's speed).",
        f"Times in ms: medians over the clean rounds (no other process above 10% of a core) of interleaved runs, "
        f"{rounds}. Machine: {gpu}{env['cpu']} "
        f"({env['cores']} cores), {env['device']}, {env['threads']} threads, torch {env['torch']}, "
        f"timm {env['timm']}, Python {env['python']}; {env['date']}; load average {env['load_before']:.1f} before "
        f"the run{'; freed memory kept (`keep_freed_memory`)' if env.get('freed_memory_kept') else ''}. "
        f"Input {env['input_size']}². ``timm SE / senet SE`` > 1: senet is faster.",
    ]
    return "\n".join(lines)


def write(results: list[dict], env: dict, json_path: Path, md_path: Path | None, device: str = "cpu") -> None:
    payload = {"environment": env, "results": results}
    atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1)))
    if md_path is None:
        return
    begin, end = MARKERS[device]
    text = md_path.read_text() if md_path.exists() else f"# Performance\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text += f"\n{begin}\n{end}\n"
    pre, rest = text.split(begin, 1)
    post = rest.split(end, 1)[1]
    block = f"{begin}\n{markdown(results, env)}\n{end}"
    atomic_write(md_path, lambda tmp: tmp.write_text(pre + block + post))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="every architecture, dtype, layout and mode (long)")
    p.add_argument("--repeats", type=int, default=15, help="timed rounds per setting (medians; >= 15 for the docs)")
    p.add_argument("--threads", type=int, default=2, help="intra-op CPU threads")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--size", type=int, default=224, help="input height and width")
    p.add_argument("--only", default=None, help="run only the settings whose name contains this text")
    p.add_argument("--json", type=Path, help="default: docs/performance.json (CPU), docs/performance-cuda.json")
    p.add_argument("--markdown", type=Path, default=ROOT / "docs" / "performance.md", help="'-' to skip")
    args = p.parse_args(argv)
    for flag in ("repeats", "threads", "size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} {getattr(args, flag)} must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("se_overhead.py: --device cuda but CUDA is not available here", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # steady-state times (recorded in the environment; SENET_MALLOC=system: glibc's default)
    device = torch.device(args.device)
    if args.json is None:
        args.json = ROOT / "docs" / ("performance.json" if args.device == "cpu" else "performance-cuda.json")
    env = {**environment(device), "input_size": args.size, "repeats": args.repeats, "full": args.full}
    settings = [s for s in plan(args.full, args.device) if args.only is None or args.only in s.name]
    results = []
    for s in settings:
        t0 = time.perf_counter()
        results.append(run_setting(s, args.repeats, device, args.size))
        r = results[-1]
        cells = ", ".join(f"{k} {v:.1f} ms" for k, v in r["median_ms"].items())
        ratios = ", ".join(f"{k} {v:.3f}" for k, v in r["ratios"].items())
        print(f"{s.name}: {cells}; {ratios} ({time.perf_counter() - t0:.0f} s)", flush=True)
        md = None if str(args.markdown) == "-" else args.markdown
        write(results, env, args.json, md, args.device)  # keep what is done
    return 0


if __name__ == "__main__":
    sys.exit(main())
