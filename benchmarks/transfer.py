"""The transfer study of docs/transfer.md: pretrain on Fashion-MNIST classes 0-4, then fine-tune on classes 5-9 with
100 training images per class from scratch, from the pretrained run, with a frozen backbone, and as a retrofit of
ResNet-20's weights into SE-ResNet-20; 3 seeds each.

    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/transfer.py      # every run, then the table
    flock /tmp/senet-cpu.lock .venv/bin/python benchmarks/transfer.py --out runs/transfer --seeds 3 --parallel 2

Each run is one single-thread ``senet train`` command (printed as it starts), ``--parallel`` of them at a time (on
2 cores two 1-thread processes train faster than one 2-thread one); completed runs are skipped and interrupted ones
resumed, so the script can be stopped and started again. Run it alone on the cores (the lock keeps this project's
other long jobs off them). Writes OUT/transfer.md (the table) and OUT/transfer.json (every run's figures).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

COMMON = ["--recipe", "fmnist-fast", "--threads", "1", "--progress", "epoch"]
PRETRAIN = [*COMMON, "--classes", "[0,1,2,3,4]", "--epochs", "2"]
FINETUNE = [*COMMON, "--classes", "[5,6,7,8,9]", "--train-per-class", "100", "--epochs", "20", "--batch-size", "50"]
FINETUNE += ["--eval-every", "20"]
IDENTITY = ["--model-options", "{se_gate: sigmoid_x2, se_init: identity}"]

# condition: (label, model, extra flags with {pre} for the pretraining runs' folder)
CONDITIONS = {
    "a-se_resnet20": ("(a) from scratch", "se_resnet20", []),
    "a-resnet20": ("(a) from scratch", "resnet20", []),
    "b-se_resnet20": ("(b) --init", "se_resnet20", ["--init", "{pre}/pre-se_resnet20"]),
    "b-resnet20": ("(b) --init", "resnet20", ["--init", "{pre}/pre-resnet20"]),
    "c-se_resnet20": ("(c) --init, frozen backbone", "se_resnet20",
                      ["--init", "{pre}/pre-se_resnet20", "--freeze", "backbone"]),
    "c-resnet20": ("(c) --init, frozen backbone", "resnet20", ["--init", "{pre}/pre-resnet20", "--freeze", "backbone"]),
    "d-se_resnet20": ("(d) retrofit of ResNet-20, identity start", "se_resnet20",
                      [*IDENTITY, "--init", "{pre}/pre-resnet20"]),
}  # fmt: skip


def run_all(runs: list[tuple[list[str], Path]], parallel: int) -> list[dict]:
    """Run ``senet train`` for each (flags, folder) unless it has completed, resuming interrupted ones, ``parallel``
    at a time; each run's output goes to its folder's ``train.log``. Returns each run's summary, in order."""
    todo = [(cmd, folder) for cmd, folder in runs if not (folder / "summary.json").is_file()]
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        for done in pool.map(lambda job: _train(*job), todo):
            print(done, flush=True)
    return [json.loads((folder / "summary.json").read_text()) for _, folder in runs]


def _train(cmd: list[str], folder: Path) -> str:
    args = ["--resume", str(folder)] if (folder / "state.safetensors").is_file() else cmd
    line = "senet train " + " ".join(shlex.quote(a) for a in args)
    print(f"$ {line}", flush=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / f"{folder.name}.log"
    with open(log, "w", encoding="utf-8") as out:
        rc = subprocess.run([sys.executable, "-m", "senet", "train", *args], stdout=out, stderr=subprocess.STDOUT)
    if rc.returncode:
        raise SystemExit(f"{line} exited {rc.returncode}; see {log}")
    return f"done: {folder.name}"


def identity_check(pre: Path) -> float:
    """The largest difference between the features of ResNet-20's task-A weights and those of the SE-ResNet-20 they
    are retrofitted into with the identity start, before any training, over 256 test images of classes 5-9."""
    import senet
    from senet.data import load_datasets
    from senet.training import Inputs
    from senet.transfer import init_options, load_init, resolve_init

    plain, meta = senet.load_model(pre / "pre-resnet20")
    _, test, spec = load_datasets("fashion-mnist", classes=[5, 6, 7, 8, 9], test_subset=256)
    source = resolve_init(str(pre / "pre-resnet20"), "se_resnet20")
    options = init_options(source, "se_resnet20", {"se_gate": "sigmoid_x2", "se_init": "identity"})
    se = senet.create_model("se_resnet20", num_classes=5, in_chans=1, **options)
    load_init(se, source, spec.classes)
    x = Inputs(torch.device("cpu"), tuple(meta["mean"]), tuple(meta["std"])).prepare(test.images)
    with torch.no_grad():
        return float((se.eval().forward_features(x) - plain.eval().forward_features(x)).abs().max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/transfer", help="folder of the runs and results")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--parallel", type=int, default=2, help="runs at a time, each on one thread")
    args = p.parse_args(argv)
    out = Path(args.out)
    where = ["--out-dir", str(out)]
    models = ("se_resnet20", "resnet20")
    start = time.time()
    summaries = run_all([([*PRETRAIN, "--model", m, *where, "--name", f"pre-{m}"], out / f"pre-{m}") for m in models],
                        args.parallel)  # fmt: skip
    pre = dict(zip(models, summaries, strict=True))
    runs, keys = [], []
    for name, (_, model, extra) in CONDITIONS.items():
        for seed in range(args.seeds):
            flags = [f.replace("{pre}", str(out)) for f in extra]  # not format: the options hold braces
            cmd = [*FINETUNE, "--model", model, *flags, "--seed", str(seed), *where, "--name", f"{name}-s{seed}"]
            runs.append((cmd, out / f"{name}-s{seed}"))
            keys.append(name)
    results: dict[str, list[float]] = {}
    for name, summary in zip(keys, run_all(runs, args.parallel), strict=True):
        results.setdefault(name, []).append(summary["test_acc"])
    gap = identity_check(out)
    wall = (time.time() - start) / 60

    lines = ["| condition | model | test top-1, classes 5-9 (%) | seeds 0, 1, 2 |", "|---|---|---|---|"]
    for name, (label, model, _) in CONDITIONS.items():
        accs = [100 * a for a in results[name]]
        sd = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        lines.append(f"| {label} | {model} | {statistics.mean(accs):.2f}{sd} | {', '.join(f'{a:.2f}' for a in accs)} |")
    lines.append("")
    for m, r in pre.items():
        done = f"{r['config']['epochs']} epochs, {r['wall_s'] / 60:.1f} min, {r['images_per_s']:.0f} img/s"
        lines.append(f"pretraining {m} on classes 0-4: test top-1 {100 * r['test_acc']:.2f}% after {done}")
    lines.append(f"retrofit with the identity start, before training: largest feature difference {gap:.3g}")
    lines.append(f"the whole study: {wall:.1f} min, {args.parallel} runs at a time, 1 thread each")
    text = "\n".join(lines)
    print(text)
    (out / "transfer.md").write_text(text + "\n", encoding="utf-8")
    data = {"results": results, "pretraining": {m: r["test_acc"] for m, r in pre.items()}, "identity_gap": gap,
            "torch": torch.__version__, "wall_min": wall, "parallel": args.parallel}  # fmt: skip
    (out / "transfer.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
