#!/bin/bash
# The attention study of docs/attention.md: the se_resnet20 family on Fashion-MNIST, 3 seeds, one recipe for all units.
# Code: senet at commit 52dd357 (a frozen copy). One thread per process: on this shared 2-core machine two single-thread
# processes train about 5x faster than one two-thread process. Two processes at a time under the CPU lock, sharing
# one runs folder; the last command reads every cached run and measures the cost columns alone.
set -u
SRC=/work/studies/src-52dd357/src
OUT=/work/studies/attention-fmnist
PY="env PYTHONPATH=$SRC /work/main/.venv/bin/python -u -m senet"
ARGS="ablate attention --recipe fmnist-fast --epochs 2 --train-subset 30000 --warmup-epochs 0.5 --eval-every 2 --threads 1 --progress epoch --runs-dir $OUT/runs"
cd /work/studies
echo "=== seeds 0 and 1: $(date -u)"
flock /tmp/senet-cpu.lock bash -c "$PY $ARGS --seed-list 0 --out $OUT/part-s0 > $OUT.s0.log 2>&1 & $PY $ARGS --seed-list 1 --out $OUT/part-s1 > $OUT.s1.log 2>&1 & wait" || exit 1
echo "=== seed 2: $(date -u)"
flock /tmp/senet-cpu.lock bash -c "$PY $ARGS --seed-list 2 --out $OUT/part-s2a --values se eca cbam ge_theta_minus ge_theta ge_theta_plus ese > $OUT.s2a.log 2>&1 & $PY $ARGS --seed-list 2 --out $OUT/part-s2b --no-baseline --values gc srm coord fca simam triplet > $OUT.s2b.log 2>&1 & wait" || exit 1
echo "=== all seeds, cost columns: $(date -u)"
flock /tmp/senet-cpu.lock $PY $ARGS --seeds 3 --out $OUT
echo "=== done: $(date -u)"
