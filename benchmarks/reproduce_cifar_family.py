"""SE against no SE where the schedule is long enough: the CIFAR-family protocol of docs/reproduction.md in one
device run, stopped cleanly at a time budget.

    # on a GPU (the device command of docs/reproduction.md):
    python3 benchmarks/reproduce_cifar_family.py --data data/fashion-mnist --device cuda --out $OUT \\
        --runs-dir /tmp/repro-runs --budget-minutes 8
    # a tiny dry run on the CPU (tests/test_reproduce.py runs one like it):
    python benchmarks/reproduce_cifar_family.py --data /usr/share/datasets/fashion-mnist --device cpu --out /tmp/r \\
        --epochs 1 --seeds 2 --depths 20 --studies squeeze --study-seeds 1 --train-subset 256 --test-subset 128

The protocol (fixed in docs/reproduction.md before any run): SE-ResNet-20 and ResNet-20, then SE-ResNet-56 and
ResNet-56, on the real Fashion-MNIST, trained with the paper's CIFAR schedule (He et al.'s: SGD, momentum 0.9, weight
decay 1e-4, lr 0.1 at batch 128, ×0.1 at 50% and 75% of the epochs; pad-4 random crops and mirrors) shortened to
``--epochs``, each over ``--seeds`` seeds, paired by seed (a pair shares data order and augmentation). Then, with the
time that remains, the five ablation studies that had not run on real data (squeeze, stage, integration, position,
nosqueeze; senet.analysis.ablate's variants), ``--study-seeds`` seeds each.

Every run is `senet.train` with ``data_on_device`` (images and augmentation held on the GPU), bf16 autocast and
channels_last on CUDA; ``--concurrency`` worker processes train runs side by side on the one device. A job is only
started if the epoch times measured so far say it ends within the budget; at the budget the running ones are stopped
(their checkpoints stay: the same command with a larger budget resumes them). Results are written as they come,
atomically: OUT/results.json (protocol, machine, every run, the summaries), OUT/results.md (the tables), and
OUT/epochs.csv (every epoch's time and accuracy). The run folders go to --runs-dir (default OUT/runs).
"""

from __future__ import annotations

import argparse
import csv
import io
import multiprocessing as mp
import queue
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from senet.analysis.ablate import StudyResult, Variant, study_variants
from senet.environment import describe, usable_cores
from senet.files import atomic_write_text
from senet.models import get_entry
from senet.training import TrainConfig, paired_differences, train
from senet.validate import json_text

ABLATIONS = ("squeeze", "stage", "integration", "position", "nosqueeze")
# The paper's ablations use bottleneck blocks; "position" (SE after the 3×3 of a bottleneck) has no basic-block form,
# so it runs on the CIFAR family's bottleneck network.
STUDY_MODEL = {"position": "se_preact_resnet164"}


def protocol(args: argparse.Namespace) -> TrainConfig:
    """The recipe every run shares (docs/reproduction.md, "Protocol"); model, seed and name are set per run."""
    cuda = args.device == "cuda"
    e = args.epochs
    return TrainConfig.from_dict(
        {
            "dataset": "fashion-mnist", "data_dir": args.data, "epochs": e, "batch_size": args.batch_size,
            "optimizer": "sgd", "lr": 0.1, "lr_batch": 128, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
            "schedule": "step", "milestones": [e // 2, (3 * e) // 4], "gamma": 0.1, "warmup_epochs": 0,
            "augment": "crop-flip", "crop_padding": 4, "train_subset": args.train_subset,
            "test_subset": args.test_subset, "data_on_device": True, "amp": "bf16" if cuda else "none",
            "channels_last": cuda, "compile": args.compile, "device": args.device, "threads": args.threads,
            "deterministic": not cuda, "tensorboard": False, "progress": "none", "out_dir": args.runs_dir,
        }
    )  # fmt: skip


@dataclass
class Job:
    """One training run of the plan, and the parts of the report it belongs to."""

    name: str  # its run folder under --runs-dir
    model: str
    options: dict[str, Any]
    seed: int
    parts: list[tuple[str, str]] = field(default_factory=list)  # ("main", "20") or (study, variant label)
    state: str = "planned"  # planned → running → done | failed | stopped (budget) | skipped (would not fit)
    test_acc: float | None = None
    epochs_done: int = 0
    wall_s: float | None = None
    params: int | None = None
    macs: int | None = None
    note: str = ""


def plan(args: argparse.Namespace) -> tuple[list[Job], dict[str, list[Variant]]]:
    """The main comparison (seed by seed, each depth's SE run beside its plain twin), then the studies; a network
    that several parts share (the default SE model of a study, its plain baseline) is one job."""
    jobs: dict[str, Job] = {}

    def add(v: Variant, seed: int, part: tuple[str, str]) -> None:
        name = v.run_name(seed)
        jobs.setdefault(name, Job(name, v.model, dict(v.options), seed)).parts.append(part)

    for seed in range(args.seeds):
        for depth in args.depths:
            for model in (f"se_resnet{depth}", f"resnet{depth}"):
                add(Variant(model, model), seed, ("main", str(depth)))
    variants = {s: study_variants(s, STUDY_MODEL.get(s, args.study_model)) for s in args.studies}
    for study, vs in variants.items():
        for seed in range(args.study_seeds):
            for v in vs:
                add(v, seed, (study, v.label))
    return list(jobs.values()), variants


# -- the worker processes ----------------------------------------------------------------------------------------------


def _worker(config: dict[str, Any], tasks: Any, results: Any) -> None:
    """Train the jobs the parent sends, (name, model, options, seed), until it sends None."""
    base = TrainConfig.from_dict(config)
    torch.backends.cudnn.benchmark = base.device == "cuda"  # the fastest kernels for the few shapes these nets have
    while (job := tasks.get()) is not None:
        name, model, options, seed = job
        try:
            r = train(base.replace(model=model, model_options=options, seed=seed, name=name), resume="auto")
            results.put((name, "done", r.test_acc, r.wall_s, r.params, r.macs, ""))
        except Exception as e:  # the job's outcome, in the report; the other jobs go on
            results.put((name, "failed", None, None, None, None, "".join(traceback.format_exception_only(e)).strip()))


# -- the report --------------------------------------------------------------------------------------------------------


def read_epochs(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv (rewritten atomically after every epoch); [] before the first."""
    try:
        return list(csv.DictReader(io.StringIO((run_dir / "metrics.csv").read_text(encoding="utf-8"))))
    except FileNotFoundError:
        return []


def depth_summary(jobs: list[Job], depth: str) -> dict[str, Any] | None:
    """SE − plain last-epoch test top-1 accuracy, in points, for one depth over the seeds where both runs finished:
    per seed, and the mean ± standard error of these paired differences (None when no pair finished)."""
    by = {(j.model, j.seed): j for j in jobs if ("main", depth) in j.parts and j.state == "done"}
    se, plain = f"se_resnet{depth}", f"resnet{depth}"
    seeds = sorted(s for m, s in by if m == se and (plain, s) in by)
    if not seeds:
        return None
    se_acc = [100 * by[se, s].test_acc for s in seeds]
    plain_acc = [100 * by[plain, s].test_acc for s in seeds]
    return {"se": se, "plain": plain, "seeds": seeds, "se_acc": se_acc, "plain_acc": plain_acc,
            **paired_differences(se_acc, plain_acc)}  # fmt: skip


def summary_row(s: dict[str, Any]) -> str:
    err = "– (one pair)" if s["stderr"] is None else f"{s['stderr']:.2f}"
    return (
        f"| {s['se']} − {s['plain']} | {len(s['seeds'])} | {statistics.fmean(s['se_acc']):.2f} | "
        f"{statistics.fmean(s['plain_acc']):.2f} | {s['mean']:+.2f} | {err} | "
        f"{', '.join(f'{x:+.2f}' for x in s['per_seed'])} |"
    )


def study_result(study: str, variants: list[Variant], jobs: list[Job], seeds: int) -> StudyResult:
    """A study's rows, in senet ablate's form (`StudyResult`), from the runs that finished."""
    rows = []
    for v in variants:
        done = [j for j in jobs if (study, v.label) in j.parts and j.state == "done"]
        rows.append({"label": v.label, "errors": [100 * (1 - j.test_acc) for j in done], "seeds": seeds,
                     "paper_err": v.paper_err, "params": done[0].params if done else None,
                     "macs": done[0].macs if done else None})  # fmt: skip
    return StudyResult(study, variants[-1].model, Path("."), rows)


class Report:
    """What the run has found so far, rewritten (atomically) whenever a job ends or an epoch is recorded."""

    def __init__(
        self, args: argparse.Namespace, base: TrainConfig, jobs: list[Job], variants: dict[str, list[Variant]]
    ):
        self.args, self.base, self.jobs, self.variants = args, base, jobs, variants
        self.out, self.runs = Path(args.out), Path(args.runs_dir)
        self.machine = describe(args.device)
        self.started = time.time()

    def write(self, final: bool = False) -> str:
        a = self.args
        summaries = {d: depth_summary(self.jobs, d) for d in map(str, a.depths)}
        studies = {s: study_result(s, vs, self.jobs, a.study_seeds) for s, vs in self.variants.items()}
        m = self.machine
        states = {k: sum(j.state == k for j in self.jobs) for k in ("done", "running", "stopped", "skipped", "failed")}
        lines = [
            f"# CIFAR-family protocol on Fashion-MNIST ({'final' if final else 'in progress'})",
            "",
            f"{a.epochs} epochs (lr 0.1, ×0.1 after epochs {self.base.milestones}), batch {a.batch_size}, "
            f"{a.seeds} seeds paired by seed; device {m['device']} ({m['gpu'] or m['cpu']}), torch {m['torch']}, "
            f"{a.concurrency} concurrent runs, {a.threads} threads each, budget {a.budget_minutes} min; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(self.started))}.",
            f"Jobs: {', '.join(f'{v} {k}' for k, v in states.items() if v)} of {len(self.jobs)}.",
            "",
            "## SE − plain, last-epoch test top-1 accuracy (points; mean ± standard error of the paired differences)",
            "",
            "| pair | seeds | SE top-1 % | plain top-1 % | SE − plain | standard error | per seed |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [summary_row(s) if s else f"| depth {d}: no pair finished | | | | | | |" for d, s in summaries.items()]
        for s in studies.values():
            lines += ["", "## " + s.markdown()]
        unfinished = [j for j in self.jobs if j.state not in ("done", "planned")]
        if unfinished:
            lines += ["", "## Runs that did not finish", ""]
            lines += [f"- {j.name}: {j.state}, {j.epochs_done} epochs done{'; ' + j.note if j.note else ''}"
                      for j in unfinished if j.state != "done"]  # fmt: skip
        text = "\n".join(lines) + "\n"
        data = {
            "final": final, "args": vars(a), "protocol": self.base.to_dict(), "machine": m, "started": self.started,
            "jobs": [j.__dict__ for j in self.jobs], "summaries": summaries,
            "studies": {k: s.rows for k, s in studies.items()},
        }  # fmt: skip
        atomic_write_text(self.out / "results.json", json_text(data))
        atomic_write_text(self.out / "results.md", text)
        atomic_write_text(self.out / "epochs.csv", self._epochs_csv())
        return text

    def _epochs_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["run", "model", "seed", "state", "epoch", "epoch_s", "train_loss", "test_acc", "images_per_s"])
        for j in self.jobs:
            for r in read_epochs(self.runs / j.name) if j.state != "planned" else []:
                w.writerow([j.name, j.model, j.seed, j.state, r["epoch"], r["epoch_s"], r["train_loss"], r["test_acc"],
                            r["images_per_s"]])  # fmt: skip
        return buf.getvalue()


# -- the schedule ------------------------------------------------------------------------------------------------------


def _launches(model: str, options: dict[str, Any]) -> int:
    """The number of modules of a network: what a small network's step time on a GPU follows (kernel launches)."""
    with torch.device("meta"):
        from senet.factory import create_model

        return sum(1 for _ in create_model(model, num_classes=10, in_chans=1, **options).modules())


class Estimates:
    """Seconds per epoch of each network, from the epochs recorded so far; an unseen network's from the seconds per
    module of the seen ones (`_launches`)."""

    def __init__(self) -> None:
        self.epoch_s: dict[str, list[float]] = {}
        self.modules: dict[str, int] = {}

    def add(self, job: Job, seconds: float) -> None:
        key = _key(job)
        self.epoch_s.setdefault(key, []).append(seconds)
        if key not in self.modules:
            self.modules[key] = _launches(job.model, job.options)

    def epoch(self, job: Job) -> float | None:
        key = _key(job)
        if key in self.epoch_s:
            return statistics.median(self.epoch_s[key])
        if not self.epoch_s:
            return None
        per_module = statistics.fmean(statistics.median(v) / self.modules[k] for k, v in self.epoch_s.items())
        return per_module * _launches(job.model, job.options)


def _key(job: Job) -> str:
    return f"{job.model} {sorted(job.options.items())}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder with the Fashion-MNIST IDX files (.gz or not)")
    p.add_argument("--out", required=True, help="folder for results.json, results.md, epochs.csv")
    p.add_argument("--runs-dir", help="folder for the run folders (default OUT/runs)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--budget-minutes", type=float, default=8.0, help="stop cleanly after this long (default 8)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of every run (default 10: the protocol)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 of the main comparison (default 5)")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56], choices=(20, 56, 110))
    p.add_argument("--studies", nargs="*", default=list(ABLATIONS), choices=ABLATIONS, help="ablations, in order")
    p.add_argument("--study-model", default="se_resnet20", help="SE model of the studies but position's")
    p.add_argument("--study-seeds", type=int, default=3, help="seeds 0..N-1 of each study (default 3)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--concurrency", type=int, help="runs trained side by side (default: 6 on CUDA, 1 on CPU)")
    p.add_argument("--threads", type=int, help="CPU threads per run (default: 2 on CUDA, cores / concurrency)")
    p.add_argument("--compile", action="store_true", help="torch.compile every network (pays only on long runs)")
    p.add_argument("--train-subset", type=int, default=0, help="dry runs: train on this many images (0: all)")
    p.add_argument("--test-subset", type=int, default=0, help="dry runs: evaluate on this many images (0: all)")
    args = p.parse_args(argv)
    for flag in ("epochs", "seeds", "study_seeds", "batch_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: give at least 1")
    if args.budget_minutes <= 0:
        p.error(f"--budget-minutes {args.budget_minutes}: give a positive number of minutes")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to torch")
    cuda = args.device == "cuda"
    args.concurrency = args.concurrency or (6 if cuda else 1)
    args.threads = args.threads or (2 if cuda else max(1, usable_cores() // args.concurrency))
    if args.concurrency < 1:
        p.error(f"--concurrency {args.concurrency}: give at least 1")
    args.runs_dir = args.runs_dir or str(Path(args.out) / "runs")
    try:
        from senet.data.sources import fashion_mnist_arrays

        fashion_mnist_arrays(args.data, False)  # missing or broken files: one line now, not in every worker
        base = protocol(args)
        for model in {f"{k}resnet{d}" for d in args.depths for k in ("se_", "")} | {args.study_model}:
            get_entry(model)
        jobs, variants = plan(args)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = Report(args, base, jobs, variants)
    deadline = time.monotonic() + 60 * args.budget_minutes
    print(f"{len(jobs)} runs planned; {args.concurrency} at a time on {args.device}, budget {args.budget_minutes} min",
          flush=True)  # fmt: skip

    ctx = mp.get_context("spawn")  # (CUDA cannot be forked)
    tasks, results = ctx.Queue(), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(base.to_dict(), tasks, results)) for _ in range(args.concurrency)]
    for w in workers:
        w.start()
    estimates, running, pending = Estimates(), {}, list(jobs)
    seen_epochs: dict[str, int] = {}
    why = ""
    report.write()
    try:
        while (pending or running) and time.monotonic() < deadline:
            while len(running) < args.concurrency and pending:
                job = pending.pop(0)
                per_epoch = estimates.epoch(job)
                if per_epoch is not None and time.monotonic() + args.epochs * per_epoch > deadline:
                    job.state, job.note = "skipped", f"needs about {args.epochs * per_epoch / 60:.1f} min"
                    continue
                tasks.put((job.name, job.model, job.options, job.seed))
                job.state, running[job.name] = "running", job
            changed = False
            try:
                name, state, acc, wall, params, macs, note = results.get(timeout=1.0)
                job = running.pop(name)
                job.state, job.test_acc, job.wall_s, job.params, job.macs, job.note = (
                    state,
                    acc,
                    wall,
                    params,
                    macs,
                    note,
                )
                done = f"test top-1 {100 * acc:.2f}%, {wall / 60:.1f} min" if state == "done" else note
                print(f"{name}: {state}, {done}", flush=True)
                changed = True
            except queue.Empty:
                pass
            for job in [*running.values(), *(j for j in jobs if j.state == "done")]:
                rows = read_epochs(Path(args.runs_dir) / job.name)
                for r in rows[seen_epochs.get(job.name, 0) :]:
                    estimates.add(job, float(r["epoch_s"]))
                    acc = f", test top-1 {100 * float(r['test_acc']):.2f}%" if r["test_acc"] else ""
                    print(f"{job.name}: epoch {r['epoch']}/{args.epochs} in {float(r['epoch_s']):.1f} s{acc}",
                          flush=True)  # fmt: skip
                    changed = True
                seen_epochs[job.name] = job.epochs_done = len(rows)
            if changed:
                report.write()
            if not all(w.is_alive() for w in workers):  # killed (out of memory?) without reporting its job
                why = "a worker process died (see the log); the same command resumes the run"
                print(f"stopping: {why}", flush=True)
                break
    finally:
        for (
            job
        ) in running.values():  # the budget ran out (or a worker died, or we were interrupted) while these trained
            job.state, job.epochs_done = "stopped", len(read_epochs(Path(args.runs_dir) / job.name))
            job.note = why or "stopped at the budget; the same command with a larger budget resumes it"
        for _ in workers:
            tasks.put(None)
        for w in workers:
            if running:
                w.terminate()
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
                w.join()
        for job in pending:
            job.state, job.note = "skipped", "not started before the budget ran out"
    print(report.write(final=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
