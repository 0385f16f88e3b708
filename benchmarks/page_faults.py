"""What glibc's default malloc costs PyTorch on a CPU: SE-ResNet-50 and ResNet-50 timed side by side, once in a process
with glibc's default behaviour (``SENET_MALLOC=system``) and once with freed memory kept
(`senet.environment.keep_freed_memory`), with the minor page faults of each call counted.

    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/page_faults.py      # about 6 minutes on 2 cores

Each mode runs in a fresh process (mallopt cannot be undone), the two alternating ``--pairs`` times; within a process
the models are interleaved (`senet.analysis.cost.interleaved`). Prints a markdown table and writes it with every
sample to OUT.md / OUT.json (default benchmarks/results/page_faults).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch

import senet
from senet.analysis.cost import interleaved
from senet.environment import describe, keep_freed_memory
from senet.files import atomic_write_text

MODELS = ("se_resnet50", "resnet50")
SETTINGS = {"infer b=1": (1, False, 30), "infer b=8": (8, False, 8), "train b=8": (8, True, 8)}  # batch, train, rounds


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, train: bool) -> None:
    if train:
        model(x).logsumexp(1).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            model(x)


def child(threads: int) -> dict:
    """Time every setting in this process; the caller chose its malloc behaviour through SENET_MALLOC."""
    torch.set_num_threads(threads)
    keep_freed_memory()  # a no-op under SENET_MALLOC=system
    out = {"freed_memory_kept": describe()["freed_memory_kept"], "settings": {}}
    for name, (batch, train, rounds) in SETTINGS.items():
        x = torch.randn(batch, 3, 224, 224)
        steps = {}
        for m in MODELS:
            torch.manual_seed(0)
            model = senet.create_model(m, layout="v1.5").train(train)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, foreach=True)  # as senet train's
            steps[m] = functools.partial(_step, model, opt, x, train)
        faults = dict.fromkeys(MODELS, 0)

        def counted(m: str, faults: dict = faults, steps: dict = steps) -> None:
            f0 = _faults()
            steps[m]()
            faults[m] += _faults() - f0

        fns = {m: functools.partial(counted, m) for m in MODELS}
        interleaved(fns, repeats=2, warmup=0)  # warm-up; its faults are not counted
        faults.update(dict.fromkeys(MODELS, 0))
        times = interleaved(fns, repeats=rounds, warmup=0)
        out["settings"][name] = {
            m: {"ms": [1e3 * t for t in times[m]], "faults_per_call": faults[m] / rounds} for m in MODELS
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=2, help="default/kept process pairs, alternating")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "page_faults")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.threads)))
        return 0
    if args.pairs < 1 or args.threads < 1:
        p.error(f"--pairs {args.pairs} and --threads {args.threads} must be at least 1")
    runs = []
    for _ in range(args.pairs):
        for mode in ("system", "keep"):
            env = {**os.environ, "SENET_MALLOC": mode}
            cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            runs.append({"mode": mode, **json.loads(done.stdout.splitlines()[-1])})
    lines = [
        "| setting | malloc | SE ms | plain ms | SE / plain | SE faults / call | plain faults / call |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in SETTINGS:
        for r in runs:
            se, plain = (r["settings"][name][m] for m in MODELS)
            a, b = statistics.median(se["ms"]), statistics.median(plain["ms"])
            kept = "kept" if r["freed_memory_kept"] else "glibc default"
            lines.append(
                f"| {name} | {kept} | {a:.1f} | {b:.1f} | {a / b:.3f} | "
                f"{se['faults_per_call']:,.0f} | {plain['faults_per_call']:,.0f} |"
            )
    env = describe()
    head = (
        f"SE-ResNet-50 and ResNet-50 (v1.5), fp32, NCHW, 224², interleaved medians; {env['cpu']} ({env['cores']} "
        f"cores), {args.threads} threads, torch {env['torch']}"
    )
    table = "\n".join([head, "", *lines])
    print(table)
    atomic_write_text(args.out.with_suffix(".md"), table + "\n")
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"machine": env, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
