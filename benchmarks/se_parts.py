"""Where SE's inference time goes: SE-ResNet-50 with parts of each SE unit replaced by precomputed values.

Five networks with the same weights, timed side by side in one process (interleaved, medians, as se_overhead.py):

* ``plain``: ResNet-50;
* ``SE``: SE-ResNet-50 as shipped;
* ``SE without FCs``: the gate is σ(z) of the squeeze, no excitation FCs (squeeze + scale);
* ``SE without squeeze``: the FCs run on a fixed descriptor z, no pooling of the map (excitation + scale);
* ``SE scale only``: a fixed gate, only the fused scale-add.

Their times less the plain network's are the cost of each part. The outputs of the modified networks are wrong on
purpose; only their times matter. ``--profile N`` instead runs SE-ResNet-50 and ResNet-50 N times each under
`torch.profiler` and prints the operators' self CPU time per pass side by side (what SE's own operations take).

    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/se_parts.py --batch 1 --repeats 45
    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/se_parts.py --batch 1 --profile 20
"""

from __future__ import annotations

import argparse
import statistics
import types

import torch

import senet
from senet.analysis.cost import interleaved
from senet.environment import describe, keep_freed_memory
from senet.layers import SqueezeExcite


def _without_fcs(self, u, shortcut=None, *, inplace=False):
    return self.scale(u, torch.sigmoid(self.squeeze(u))[:, :, None, None], shortcut, inplace=inplace)


def _without_squeeze(self, u, shortcut=None, *, inplace=False):
    return self.scale(u, self.excite(self.fixed_z[: u.shape[0]]), shortcut, inplace=inplace)


def _scale_only(self, u, shortcut=None, *, inplace=False):
    return self.scale(u, self.fixed_gate[: u.shape[0]], shortcut, inplace=inplace)


def build(name: str, batch: int, forward=None) -> torch.nn.Module:
    torch.manual_seed(0)
    model = senet.create_model(name, layout="v1.5").eval()
    if forward is not None:
        for m in model.modules():
            if isinstance(m, SqueezeExcite):
                m.fixed_z = torch.randn(batch, m.channels)
                m.fixed_gate = torch.rand(batch, m.channels, 1, 1)
                m.forward = types.MethodType(forward, m)
    return model


def profile_ops(models: dict[str, torch.nn.Module], x: torch.Tensor, passes: int) -> None:
    """Print each operator's self CPU time per pass (ms) and calls per pass, one column pair per model."""
    from torch.profiler import ProfilerActivity, profile

    per_op: dict[str, dict[str, tuple[float, float]]] = {}
    with torch.inference_mode():
        for name, model in models.items():
            for _ in range(3):
                model(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(passes):
                    model(x)
            for e in prof.key_averages():
                per_op.setdefault(e.key, {})[name] = (e.self_cpu_time_total / 1e3 / passes, e.count / passes)
    names = list(models)
    print("| operator | " + " | ".join(f"{n}: ms / pass | {n}: calls" for n in names) + " |")
    print("|---|" + "---:|---:|" * len(names))
    rows = sorted(per_op.items(), key=lambda kv: -max(t for t, _ in kv[1].values()))
    for op, by_model in rows:
        if max(t for t, _ in by_model.values()) < 0.01:
            continue
        cells = [by_model.get(n, (0.0, 0.0)) for n in names]
        print(f"| {op} | " + " | ".join(f"{t:.3f} | {c:.0f}" for t, c in cells) + " |")
    totals = {n: sum(by_model.get(n, (0.0, 0.0))[0] for by_model in per_op.values()) for n in names}
    print("| all operators | " + " | ".join(f"{totals[n]:.2f} | " for n in names) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=45)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", type=int, metavar="N", help="profile N passes of SE and plain instead of timing")
    args = p.parse_args(argv)
    for flag in ("batch", "repeats", "threads", "profile"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag} {getattr(args, flag)} must be at least 1")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # steady-state times, as se_overhead.py
    if args.profile:
        x = torch.randn(args.batch, 3, 224, 224)
        profile_ops({"SE": build("se_resnet50", args.batch), "plain": build("resnet50", args.batch)}, x, args.profile)
        return 0

    models = {
        "plain": build("resnet50", args.batch),
        "SE": build("se_resnet50", args.batch),
        "SE without FCs": build("se_resnet50", args.batch, _without_fcs),
        "SE without squeeze": build("se_resnet50", args.batch, _without_squeeze),
        "SE scale only": build("se_resnet50", args.batch, _scale_only),
    }
    x = torch.randn(args.batch, 3, 224, 224)
    with torch.inference_mode():
        times = interleaved({n: (lambda m=m: m(x)) for n, m in models.items()}, repeats=args.repeats)
    plain = times["plain"]
    env = describe()
    print(f"SE-ResNet-50 (v1.5), fp32, eager, batch {args.batch}, {args.repeats} interleaved rounds; {env['cpu']}, "
          f"{env['threads']} threads, torch {env['torch']}")  # fmt: skip
    print("| network | median ms | / plain | median of per-round ratios |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        paired = statistics.median(a / b for a, b in zip(t, plain, strict=True))
        print(f"| {name} | {1e3 * statistics.median(t):.1f} | {statistics.median(t) / statistics.median(plain):.3f} "
              f"| {paired:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
