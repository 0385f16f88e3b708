"""`senet.environment`: what a measurement records, and `keep_freed_memory`, checked by counting the page faults of
a real allocation pattern in fresh processes (the setting is process-wide and cannot be undone, so these tests never
apply it to the test process itself)."""

import json
import os
import platform
import subprocess
import sys

import pytest

from senet.environment import describe

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# A training step's pattern: grow the heap by many maps of a few MB, free them all, do it again. Prints the minor
# page faults of the later rounds, what `keep_freed_memory` returned and what `describe` then records.
_CHILD = """
import json, resource, sys, torch
from senet.environment import describe, keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for r in range(6):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    maps = [torch.ones(1 << 20) for _ in range(24)]  # 24 maps of 4 MiB, every page written
    del maps
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"kept": kept, "again": keep_freed_memory(), "faults": sum(faults[2:]),
                  "recorded": describe()["freed_memory_kept"]}))
"""


def _run(code: str, *args: str, **env: str) -> str:
    run = subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, **env}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _child(mode: str, **env: str) -> dict:
    return json.loads(_run(_CHILD, mode, **env))


def test_describe_names_the_machine():
    d = describe()
    assert d["cores"] >= 1 and d["threads"] >= 1 and d["device"] == "cpu" and d["gpu"] is None
    assert isinstance(d["freed_memory_kept"], bool)


@glibc_only
def test_keeping_freed_memory_stops_the_page_faults_of_each_step():
    kept = _child("keep", SENET_MALLOC="")
    default = _child("default", SENET_MALLOC="")
    assert kept["kept"] is True and kept["again"] is True and kept["recorded"] is True
    # 4 rounds × 96 MiB written: by default glibc trims the freed heap and every round faults its pages in again
    assert default["faults"] > 4 * 96 * 256 // 2, default
    assert kept["faults"] < default["faults"] // 20, (kept, default)


@glibc_only
def test_senet_malloc_system_leaves_malloc_alone():
    out = _child("keep", SENET_MALLOC="system")
    assert out["kept"] is False and out["recorded"] is False
    assert out["faults"] > 4 * 96 * 256 // 2  # the default behaviour, faults and all


@glibc_only
def test_the_senet_command_keeps_freed_memory_and_library_calls_do_not():
    code = (
        "from senet.environment import describe; from senet.training import TrainConfig, train; "
        "train(TrainConfig(dataset='synthetic', model='resnet20', image_size=8, train_subset=32, test_subset=8, "
        "batch_size=16, epochs=1, progress='none', out_dir=__import__('tempfile').mkdtemp())); "
        "print(describe()['freed_memory_kept']); from senet.cli import main; "
        "print(main(['train', '--model', 'no_such_model']), describe()['freed_memory_kept'])"
    )
    assert _run(code, SENET_MALLOC="").split() == ["False", "2", "True"]
