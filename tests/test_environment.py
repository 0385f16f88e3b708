"""`senet.environment`: what a measurement records, and `keep_freed_memory`, checked by counting the page faults of
a real allocation pattern in fresh processes (the setting is process-wide and cannot be undone, so these tests never
apply it to the test process itself)."""

import ctypes
import json
import os
import platform
import subprocess
import sys

import pytest
from conftest import slow

from senet.environment import describe

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="mallopt is glibc's; mallinfo2 needs glibc 2.33 or later",
)

# A training step's pattern: grow the heap by many maps of a few MB, free them all, do it again. Prints whether a
# first 16 MiB map came from mmap (glibc's default threshold is 128 KiB, raised to the size of any mmap'd block freed
# before), the minor page faults of the later rounds, whether a freed 20 MiB block is given back to the kernel, what
# `keep_freed_memory` returned and what `describe` then records. Whether glibc's default gives back a round's maps
# depends on what else came to lie above them in the heap, so only the kept side's faults are asserted.
_CHILD = """
import ctypes, json, resource, sys, torch
from senet.environment import describe, keep_freed_memory
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                "fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Mallinfo2, ctypes.c_void_p, [ctypes.c_void_p]
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
mapped0 = libc.mallinfo2().hblkhd
first = torch.ones(4 << 20)
mapped = libc.mallinfo2().hblkhd - mapped0 >= 16 << 20
del first
def held():  # bytes that malloc holds from the kernel: its heap and its mmap'd blocks
    info = libc.mallinfo2()
    return info.arena + info.hblkhd
block = libc.malloc(20 << 20)
before = held()
libc.free(block)
returned = held() < before
faults = []
for r in range(6):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    maps = [torch.ones(1 << 20) for _ in range(24)]  # 24 maps of 4 MiB, every page written
    del maps
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"kept": kept, "again": keep_freed_memory(), "mapped": mapped, "returned": returned,
                  "faults": sum(faults[2:]), "recorded": describe()["freed_memory_kept"]}))
"""


def _run(code: str, *args: str, **env: str) -> str:
    # glibc's own malloc with its defaults: no preloaded allocator, no MALLOC_*_ variables or malloc tunables
    own = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES") and k[:7] != "MALLOC_"}
    run = subprocess.run([sys.executable, "-c", code, *args], env={**own, **env}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _child(mode: str, **env: str) -> dict:
    return json.loads(_run(_CHILD, mode, **env))


def test_describe_names_the_machine():
    d = describe()
    assert d["cores"] >= 1 and d["threads"] >= 1 and d["device"] == "cpu" and d["gpu"] is None
    assert isinstance(d["freed_memory_kept"], bool)


@glibc_only
@slow
def test_keeping_freed_memory_stops_the_page_faults_of_each_step():
    default, kept = _child("default", SENET_MALLOC=""), _child("keep", SENET_MALLOC="")
    assert default["kept"] is None and default["mapped"] is True and default["returned"] is True  # glibc's own
    assert kept["kept"] is True and kept["again"] is True and kept["recorded"] is True
    assert kept["mapped"] is False, kept  # a 16 MiB map now comes from the heap...
    assert kept["returned"] is False, kept  # ...which keeps what is freed at its top...
    assert kept["faults"] < 4 * 96 * 256 // 20, kept  # ...so 4 rounds × 96 MiB written fault almost nothing in


@glibc_only
@slow
def test_senet_malloc_system_leaves_malloc_alone():
    out = _child("keep", SENET_MALLOC="system")
    assert out["kept"] is False and out["again"] is False and out["recorded"] is False
    assert out["mapped"] is True and out["returned"] is True  # glibc's default thresholds are still in effect


@glibc_only
@slow
def test_the_senet_command_keeps_freed_memory_and_library_calls_do_not():
    code = (
        "from senet.environment import describe; from senet.training import TrainConfig, train; "
        "train(TrainConfig(dataset='synthetic', model='resnet20', image_size=8, train_subset=32, test_subset=8, "
        "batch_size=16, epochs=1, progress='none', out_dir=__import__('tempfile').mkdtemp())); "
        "print(describe()['freed_memory_kept']); from senet.cli import main; "
        "print(main(['train', '--model', 'no_such_model']), describe()['freed_memory_kept'])"
    )
    assert _run(code, SENET_MALLOC="").split() == ["False", "2", "True"]
