"""The SE block's tail on a CUDA GPU: senet's Triton kernels (`senet.fused`) against eager PyTorch and torch.compile.

The tail of a residual SE block is ``relu(s·u + shortcut)`` and, in training, its backward (∂L/∂u, ∂L/∂shortcut
and ∂L/∂s = Σ_HW g·u). This script

1. checks the kernels on the GPU against a float64 reference (fresh random inputs, both layouts, float32 / float16 /
   bfloat16, with and without the ReLU and the shortcut; outputs poisoned with NaN before each call), and a whole
   SE-ResNet-50 training step with the kernels against the same step on the torch path;
2. times the tail at the four ResNet-50 stage shapes (batch 256, float16, channels_last), forward alone and
   forward + backward, three ways: eager PyTorch (senet's torch path), the Triton kernels, and the same operations
   compiled by torch.compile (inductor generates its own Triton kernels), with the memory-traffic floor of each.

    python benchmarks/se_cuda.py --out results/   # writes se_cuda.json and prints a markdown table

The whole-network comparison (SE-ResNet-50 against ResNet-50 and timm, with and without the kernels) is
benchmarks/se_overhead.py --device cuda.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import senet
from senet import fused
from senet.layers.fused import ScaleAdd

SHAPES = [(256, 256, 56, 56), (256, 512, 28, 28), (256, 1024, 14, 14), (256, 2048, 7, 7)]  # ResNet-50 stage outputs
DEV = "cuda"  # --dry-run: "cpu" under TRITON_INTERPRET=1, with small shapes, to check this script without a GPU


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.double(), ref.double()
    if not torch.isfinite(a).all():
        return float("nan")
    return ((a - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def check_kernels() -> list[dict]:
    """Relative errors of output and gradients against float64, over layouts, dtypes, ReLU and shortcut."""
    rows = []
    shapes = [(4, 72, 9, 11), (8, 256, 56, 56), (3, 2048, 7, 7)] if DEV == "cuda" else [(4, 72, 9, 11)]
    for shape in shapes:
        for fmt in (torch.contiguous_format, torch.channels_last):
            for dtype in (torch.float32, torch.float16, torch.bfloat16):
                for residual in (True, False):
                    for relu in (True, False):
                        every_case = shape == (4, 72, 9, 11) and dtype == torch.float16
                        if every_case or (residual and relu):
                            rows.append(_check_one(shape, fmt, dtype, residual, relu))
    return rows


def _check_one(shape, fmt, dtype, residual, relu) -> dict:
    dev = DEV
    u = torch.randn(shape, device=dev).to(dtype).contiguous(memory_format=fmt).requires_grad_()
    s = torch.rand(shape[0], shape[1], 1, 1, device=dev).to(dtype).requires_grad_()
    r = torch.randn(shape, device=dev).to(dtype).contiguous(memory_format=fmt).requires_grad_() if residual else None
    g = torch.randn(shape, device=dev).to(dtype)
    y = fused.scale_add(u, s, r, relu=relu)
    y.backward(g)
    got = [y.detach(), u.grad, s.grad] + ([r.grad] if residual else [])
    ud, sd = u.detach().double().requires_grad_(), s.detach().double().requires_grad_()
    rd = r.detach().double().requires_grad_() if residual else None
    yd = ud * sd + (rd if residual else 0)
    yd = torch.relu(yd) if relu else yd
    yd.backward(g.double())
    ref = [yd.detach(), ud.grad, sd.grad] + ([rd.grad] if residual else [])
    errs = [rel_err(a, b) for a, b in zip(got, ref, strict=True)]
    limit = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    ok = all(e <= limit for e in errs) and y.stride() == u.stride()
    return {"shape": shape, "layout": "channels_last" if fmt == torch.channels_last else "nchw",
            "dtype": str(dtype).removeprefix("torch."), "residual": residual, "relu": relu,
            "errors": errs, "limit": limit, "ok": ok}  # fmt: skip


def poison_check() -> bool:
    """Every output element is written: outputs allocated over NaN-filled memory come back finite."""
    ok = True
    for fmt in (torch.contiguous_format, torch.channels_last):
        u = torch.randn(5, 99, 13, 7, device=DEV).contiguous(memory_format=fmt)
        s, r = torch.rand(5, 99, 1, 1, device=DEV), torch.randn_like(u)
        for _ in range(3):
            torch.empty(10 * u.numel(), device=DEV).fill_(float("nan"))  # the caching allocator hands it back
        ok &= bool(torch.isfinite(fused.scale_add(u, s, r, relu=True)).all())
    return ok


def check_model() -> dict:
    """One SE-ResNet-50 training step with the kernels and on the torch path, each against the torch path in float64.

    A network at initialisation, in training mode, amplifies rounding through its batch norms, so the two paths'
    gradients differ from each other far more than one operation's rounding; what matters is that the kernels land
    as close to the float64 gradients as the torch path does.
    """
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here
    torch.manual_seed(0)
    model = senet.create_model("se_resnet50", layout="v1.5").to(DEV).to(memory_format=torch.channels_last)
    b, size = (16, 128) if DEV == "cuda" else (2, 64)
    x = torch.randn(b, 3, size, size, device=DEV).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (b,), device=DEV)
    low = torch.float16 if DEV == "cuda" else torch.bfloat16

    def grads(enabled: bool, dtype: torch.dtype) -> tuple[float, torch.Tensor]:
        m = copy.deepcopy(model).to(torch.float64 if dtype == torch.float64 else torch.float32)
        fused.use_triton(m, enabled)
        with torch.autocast(DEV, low, enabled=dtype == low):
            loss = F.cross_entropy(m(x.to(next(m.parameters()).dtype)), y)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten().double() for p in m.parameters()])

    loss_ref, ref = grads(False, torch.float64)
    out = {"loss_float64": loss_ref}
    for dtype in (torch.float32, low):
        for name, enabled in (("torch", False), ("triton", True)):
            loss, g = grads(enabled, dtype)
            key = f"{str(dtype).removeprefix('torch.')} {name}"
            out[key] = {"loss": loss, "grad_rel_err_vs_float64": rel_err(g, ref)}
    out["ok"] = all(
        out[f"{d} triton"]["grad_rel_err_vs_float64"] <= 2 * out[f"{d} torch"]["grad_rel_err_vs_float64"] + 1e-6
        for d in ("float32", str(low).removeprefix("torch."))
    )
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return out


def bench(fn, warmup: int = 10, reps: int = 50) -> float:
    """Median milliseconds per call, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def eager_tail(u, s, r):
    return torch.relu_(ScaleAdd.apply(u, s, r) if u.requires_grad else torch.addcmul(r, u, s))


def plain_tail(u, s, r):
    return torch.relu(torch.addcmul(r, u, s))


def time_tails(copy_gbs: float) -> list[dict]:
    for knob in ("cache_size_limit", "recompile_limit"):  # one graph per shape and mode: more than the default 8
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 64)
    compiled = torch.compile(plain_tail, dynamic=False)
    rows = []
    for shape in SHAPES if DEV == "cuda" else [(2, 64, 8, 8)]:
        n = torch.Size(shape).numel()
        u = torch.randn(shape, device=DEV, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
        r, g = torch.randn_like(u), torch.randn_like(u)
        s = torch.rand(shape[0], shape[1], 1, 1, device=DEV, dtype=torch.float16)
        ways = {"eager": eager_tail, "triton": lambda u, s, r: fused.scale_add(u, s, r, relu=True),
                "compiled": compiled}  # fmt: skip
        row = {"shape": shape, "mb": 2 * n / 1e6}
        for name, fn in ways.items():
            row[f"fwd_{name}"] = bench(lambda fn=fn, u=u, s=s, r=r: fn(u, s, r))
            ug, sg, rg = (t.clone().requires_grad_() for t in (u, s, r))

            def train(fn=fn, ug=ug, sg=sg, rg=rg, g=g):
                ug.grad = sg.grad = rg.grad = None
                fn(ug, sg, rg).backward(g)

            row[f"train_{name}"] = bench(train)
        # Floors: forward reads u and the shortcut and writes the output; backward reads g, the output and u and
        # writes ∂L/∂u and ∂L/∂shortcut (the gate and ∂L/∂s are B×C, negligible).
        row["fwd_floor"] = 3 * 2 * n / copy_gbs / 1e6
        row["train_floor"] = row["fwd_floor"] + 5 * 2 * n / copy_gbs / 1e6
        rows.append(row)
        print(_row_md(row), flush=True)
    return rows


def _row_md(r: dict) -> str:
    shape = "×".join(map(str, r["shape"]))
    f = " | ".join(f"{r[f'fwd_{k}']:.3f}" for k in ("eager", "triton", "compiled"))
    t = " | ".join(f"{r[f'train_{k}']:.3f}" for k in ("eager", "triton", "compiled"))
    return f"| {shape} ({r['mb']:.0f} MB) | {f} | {r['fwd_floor']:.3f} | {t} | {r['train_floor']:.3f} |"


def copy_bandwidth() -> float:
    """Device-to-device copy, GB/s counting bytes read and written."""
    a = torch.empty((2 * 1024**3 if DEV == "cuda" else 2**24) // 4, device=DEV)
    b = torch.empty_like(a)
    ms = bench(lambda: b.copy_(a), warmup=3, reps=20)
    return 2 * a.numel() * 4 / ms / 1e6


def sweep_tiles() -> list[dict]:
    """The Triton tail (forward alone, and forward + backward) at each stage shape under other tile choices."""
    fwd_tiles = [(32, 128, 4), (16, 256, 4), (64, 64, 4), (32, 128, 8), (64, 128, 8)]
    bwd_tiles = [(32, 64, 4), (16, 128, 4), (32, 128, 8), (64, 64, 8), (16, 64, 4), (8, 128, 4)]
    keep = dict(fused.TILES), fused.MIN_PROGRAMS
    rows = []
    try:
        for shape in SHAPES if DEV == "cuda" else [(2, 64, 8, 8)]:
            rows += _sweep_shape(shape, fwd_tiles, bwd_tiles, keep[0]["forward", True])
    finally:
        fused.TILES.clear()
        fused.TILES.update(keep[0])
        fused.MIN_PROGRAMS = keep[1]
    return rows


def _sweep_shape(shape, fwd_tiles, bwd_tiles, shipped_forward) -> list[dict]:
    u = torch.randn(shape, device=DEV, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    r, g = torch.randn_like(u), torch.randn_like(u)
    s = torch.rand(shape[0], shape[1], 1, 1, device=DEV, dtype=torch.float16)
    ug, sg, rg = (t.clone().requires_grad_() for t in (u, s, r))

    def train():
        ug.grad = sg.grad = rg.grad = None
        fused.scale_add(ug, sg, rg, relu=True).backward(g)

    rows = []
    for tiles in fwd_tiles:
        fused.TILES["forward", True] = tiles
        rows.append({"shape": shape, "forward": tiles, "ms": bench(lambda: fused.scale_add(u, s, r, relu=True))})
    fused.TILES["forward", True] = shipped_forward
    for tiles in bwd_tiles:
        for min_programs in (1024, 4096):
            fused.TILES["backward", True], fused.MIN_PROGRAMS = tiles, min_programs
            rows.append({"shape": shape, "backward": tiles, "min_programs": min_programs, "ms": bench(train)})
    best_f = min((x for x in rows if "forward" in x), key=lambda x: x["ms"])
    best_b = min((x for x in rows if "backward" in x), key=lambda x: x["ms"])
    first_b = next(x for x in rows if "backward" in x)
    print(
        f"tiles {'×'.join(map(str, shape))}: forward {rows[0]['ms']:.3f} ms as shipped, best {best_f['forward']} "
        f"{best_f['ms']:.3f}; forward+backward {first_b['ms']:.3f} as shipped, best {best_b['backward']} / "
        f"{best_b['min_programs']} {best_b['ms']:.3f}",
        flush=True,
    )
    return rows


def _build(name: str, triton: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    m = senet.create_model(name, **({"layout": "v1.5"} if name.startswith("se_") else {}))
    return fused.use_triton(m, triton) if triton else m


MODELS = {"SE torch": ("se_resnet50", False), "SE triton": ("se_resnet50", True), "plain": ("resnet50", False)}


def _step(model, x, y, train: bool):
    low = torch.float16 if DEV == "cuda" else torch.bfloat16
    if not train:

        def infer():
            with torch.inference_mode(), torch.autocast(DEV, low):
                return model(x)

        return infer
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, foreach=True)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(DEV, low):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def whole_models() -> list[dict]:
    """SE-ResNet-50 on the torch path and with the kernels beside ResNet-50, float16 autocast, channels_last, eager:
    inference at several batch sizes and a training step; interleaved, medians of 15 rounds."""
    from senet.analysis.cost import interleaved

    size = 224 if DEV == "cuda" else 64
    plan = [("infer", b) for b in (1, 8, 32, 256)] + [("train", 32), ("train", 256)]
    if DEV != "cuda":
        plan = [("infer", 2), ("train", 2)]
    rows = []
    for task, batch in plan:
        x = torch.randn(batch, 3, size, size, device=DEV).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (batch,), device=DEV)
        fns = {}
        for k, (name, triton) in MODELS.items():
            m = _build(name, triton).to(DEV).to(memory_format=torch.channels_last).train(task == "train")
            fns[k] = _step(m, x, y, task == "train")
        interleaved(fns, repeats=3, warmup=0, sync=torch.cuda.synchronize)
        times = interleaved(fns, repeats=15, warmup=0, sync=torch.cuda.synchronize)
        med = {k: 1e3 * sorted(v)[len(v) // 2] for k, v in times.items()}
        row = {"task": task, "batch": batch, "median_ms": med}
        row |= {f"{k}/plain": med[k] / med["plain"] for k in ("SE torch", "SE triton")}
        rows.append(row)
        print(
            f"| {task} b={batch} | {med['SE torch']:.2f} | {med['SE triton']:.2f} | {med['plain']:.2f} | "
            f"{row['SE torch/plain']:.3f} | {row['SE triton/plain']:.3f} |",
            flush=True,
        )
        del fns
        torch.cuda.empty_cache()
    return rows


def profile_step(out: Path) -> dict:
    """Where SE's extra time goes in a training step (batch 256): CUDA time per kernel name, SE minus plain."""
    from torch.profiler import ProfilerActivity, profile

    batch, size = (256, 224) if DEV == "cuda" else (2, 64)
    x = torch.randn(batch, 3, size, size, device=DEV).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=DEV)
    per_kernel: dict[str, dict[str, float]] = {}
    totals = {}
    for k, (name, triton) in MODELS.items():
        m = _build(name, triton).to(DEV).to(memory_format=torch.channels_last)
        step = _step(m, x, y, True)
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEV == "cuda" else [])
        with profile(activities=activities) as prof:
            step()
            torch.cuda.synchronize()
        kernels = {}
        for e in prof.events():
            if DEV == "cuda" and e.device_type == torch.autograd.DeviceType.CUDA:
                kernels[e.name] = kernels.get(e.name, 0.0) + e.time_range.elapsed_us() / 1e3
        per_kernel[k] = kernels
        totals[k] = sum(kernels.values())
        (out / f"profile_{k.replace(' ', '_')}.txt").write_text(
            prof.key_averages().table(sort_by="cuda_time_total" if DEV == "cuda" else "cpu_time_total", row_limit=60)
        )
        del m, step
    names = set().union(*per_kernel.values())
    diff = sorted(names, key=lambda n: per_kernel["plain"].get(n, 0) - per_kernel["SE torch"].get(n, 0))
    print(f"GPU kernel time per training step (ms): {', '.join(f'{k} {v:.1f}' for k, v in totals.items())}")
    print("| kernel (SE torch − plain, top 14) | SE torch | SE triton | plain |\n|---|---:|---:|---:|")
    for n in diff[:14]:
        print(f"| {n[:90]} | " + " | ".join(f"{per_kernel[k].get(n, 0):.2f}" for k in MODELS) + " |")
    return {"totals_ms": totals, "per_kernel_ms": per_kernel}


def _cuda_stand_ins() -> None:
    """For --dry-run: wall-clock events and no-op synchronisation, so the timing code runs on CPU."""

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            self.t = 0.0

        def record(self) -> None:
            self.t = time.perf_counter()

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, end: Event) -> float:
            return 1e3 * (end.t - self.t)

    torch.cuda.Event = Event
    torch.cuda.synchronize = lambda *a: None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("."), help="folder for se_cuda.json")
    p.add_argument("--quick", action="store_true", help="the checks and the whole networks only")
    p.add_argument("--tiles", action="store_true", help="also time other tile shapes for the kernels")
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton's interpreter, small shapes: checks the script")
    args = p.parse_args(argv)
    global DEV
    DEV = "cpu" if args.dry_run else "cuda"
    if args.dry_run:
        _cuda_stand_ins()
    elif not torch.cuda.is_available() or not fused.available("cuda"):
        print("se_cuda.py: needs a CUDA GPU and triton", file=sys.stderr)
        return 2
    import triton

    t0 = time.perf_counter()
    gpu = torch.cuda.get_device_name() if DEV == "cuda" else "none (dry run)"
    env = {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
           "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    print(env, flush=True)
    checks = check_kernels()
    bad = [c for c in checks if not c["ok"]]
    worst = {d: max(max(c["errors"]) for c in checks if c["dtype"] == d) for d in ("float32", "float16", "bfloat16")}
    print(f"kernel checks: {len(checks) - len(bad)}/{len(checks)} within limits; worst relative error {worst}")
    for c in bad:
        print("  FAILED", c)
    poison = poison_check()
    print(f"every output element written: {poison}")
    model = check_model()
    print(f"SE-ResNet-50 training step, gradients against float64: {model}", flush=True)
    gbs = copy_bandwidth()
    print(f"device-to-device copy: {gbs:.0f} GB/s ({time.perf_counter() - t0:.0f} s so far)")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"environment": env, "copy_gbs": gbs, "checks": checks, "poison_ok": poison, "model": model}

    def save(key: str, value: object) -> None:
        result[key], result["seconds"] = value, time.perf_counter() - t0
        (args.out / "se_cuda.json").write_text(json.dumps(result, indent=1))

    if not args.quick:
        print("| shape (u, fp16) | fwd eager | fwd triton | fwd compiled | fwd floor | train eager | train triton | "
              "train compiled | train floor |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
        save("tails_ms", time_tails(gbs))
    print("| whole network | SE torch ms | SE triton ms | plain ms | SE torch/plain | SE triton/plain |\n"
          "|---|---:|---:|---:|---:|---:|")  # fmt: skip
    save("whole_models", whole_models())
    if not args.quick:
        save("profile", profile_step(args.out))
    if args.tiles and not args.quick:
        save("tiles", sweep_tiles())
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0 if not bad and poison and model["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
