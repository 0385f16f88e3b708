#!/bin/bash
# The attention study of docs/attention.md: the se_resnet20 family on Fashion-MNIST, 3 seeds, one recipe for all units.
# Code: senet at commit 52dd357 (a frozen copy: `git worktree add SRC_TREE 52dd357`). One thread per process: on the
# shared 2-core machine it ran on, two single-thread processes train about 5x faster than one two-thread process.
# Two processes at a time under a CPU lock (so that no other job shares the cores), sharing one runs folder; the
# last command reads every cached run and measures the cost columns alone.
# The cost columns: 52dd357 measured them at torch's default thread count (2 here) whatever --threads said; today's
# code measures at --threads (1 below): set --threads 2 on the last command to measure as the committed table did.
#
# Run from the repository root; every path can be overridden. As recorded, it ran with SRC=<52dd357 copy>/src,
# OUT=<studies folder>/attention-fmnist, PY=<repository>/.venv/bin/python and LOCK=/tmp/senet-cpu.lock.
set -u
SRC=${SRC:-src}                                  # senet's source folder (the 52dd357 copy's src/ to reproduce)
OUT=${OUT:-runs/attention-fmnist}                # results, logs and the shared runs folder
PY=${PY:-.venv/bin/python}                       # a Python with torch and senet's requirements
LOCK=${LOCK:-${TMPDIR:-/tmp}/senet-cpu.lock}     # flock file held while a run uses the cores
SRC=$(realpath "$SRC")
mkdir -p "$OUT"
SENET="env PYTHONPATH=$SRC $PY -u -m senet"
ARGS="ablate attention --recipe fmnist-fast --epochs 2 --train-subset 30000 --warmup-epochs 0.5 --eval-every 2 --threads 1 --progress epoch --runs-dir $OUT/runs"
echo "=== seeds 0 and 1: $(date -u)"
flock "$LOCK" bash -c "$SENET $ARGS --seed-list 0 --out $OUT/part-s0 > $OUT.s0.log 2>&1 & $SENET $ARGS --seed-list 1 --out $OUT/part-s1 > $OUT.s1.log 2>&1 & wait" || exit 1
echo "=== seed 2: $(date -u)"
flock "$LOCK" bash -c "$SENET $ARGS --seed-list 2 --out $OUT/part-s2a --values se eca cbam ge_theta_minus ge_theta ge_theta_plus ese > $OUT.s2a.log 2>&1 & $SENET $ARGS --seed-list 2 --out $OUT/part-s2b --no-baseline --values gc srm coord fca simam triplet > $OUT.s2b.log 2>&1 & wait" || exit 1
echo "=== all seeds, cost columns: $(date -u)"
flock "$LOCK" $SENET $ARGS --seeds 3 --out $OUT
echo "=== done: $(date -u)"
