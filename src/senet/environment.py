"""The facts a measurement needs beside it (which CPU, how many cores and threads, which torch, which GPU), the one
process setting that senet changes for speed on CPUs (`keep_freed_memory`), and the bounds the machine sets on
threads and worker processes (`check_parallelism`, `die_with_parent`)."""

from __future__ import annotations

import ctypes
import importlib
import os
import platform
import signal
from typing import Any

import torch

__all__ = [
    "MissingExtraError",
    "check_parallelism",
    "describe",
    "die_with_parent",
    "keep_freed_memory",
    "require",
    "usable_cores",
]

_PR_SET_PDEATHSIG = 1  # prctl(2)

# mallopt(3) parameters of glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 1 << 30
_kept: bool | None = None  # the outcome of the first call: mallopt is process-wide and applied once


class MissingExtraError(ImportError):
    """An optional dependency of senet is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, what: str, package: str = "") -> Any:
    """Import ``module`` for ``what``, or raise `MissingExtraError` naming the install command of senet's ``extra``;
    ``package``: the one missing, where it is not the module's top level (torch.utils.tensorboard: tensorboard)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{what} needs the {package or module.split('.')[0]} package, which is not installed; install it with: "
            f"pip install 'senet[{extra}]'"
        ) from None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, as taskset or a container sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_parallelism(threads: int = 0, workers: int = 0, *, flags: tuple[str, str] = ("threads", "workers")) -> None:
    """Refuse more intra-op threads or data-loading worker processes than this machine has cores, naming the flag.

    More threads than cores only slow PyTorch down (and a million of them crash it); each worker is a process with
    its own copy of the dataset's reader, so more of them than cores exhaust memory without loading faster.
    """
    cores = usable_cores()
    for flag, value in zip(flags, (threads, workers), strict=True):
        if value > cores:
            raise ValueError(f"{flag}={value} is more than the {cores} CPU core(s) this process may use; use at most "
                             f"{cores} (0: the default)")  # fmt: skip


def die_with_parent(worker_id: int = 0) -> None:
    """A DataLoader ``worker_init_fn``: ask the kernel to kill this worker when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``), so a training process killed by the OOM killer or SIGKILL leaves no workers behind.
    PyTorch's own check of the parent runs only while a worker waits for work. Does nothing elsewhere."""
    if platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def describe(device: str | torch.device = "cpu") -> dict[str, Any]:
    """CPU model, usable cores, torch threads, torch and Python versions, the device, on CUDA the GPU's name, and
    whether `keep_freed_memory` is in effect."""
    device = torch.device(device)
    cores = usable_cores()
    gpu = None
    if device.type == "cuda" or (device.type == "cpu" and torch.cuda.is_available()):
        gpu = torch.cuda.get_device_name(device if device.type == "cuda" else None)
    return {
        "cpu": _cpu_name(),
        "cores": cores,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "gpu": gpu,
        "freed_memory_kept": bool(_kept),  # `keep_freed_memory` in effect
    }


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next tensors instead of returning it to the kernel.

    PyTorch takes every CPU tensor from malloc. By default glibc serves large blocks with fresh pages from mmap and
    gives back what is freed at the top of its heap, so a training step that frees and reallocates its activation
    maps (several MB each) can take a page fault for every 4 KiB of them, every step. Raising the mmap threshold to its
    maximum (32 MiB) and the trim threshold to 1 GiB lets the next step reuse the same memory: on a 2-core CPU an
    inference pass of ResNet-50 at batch 8 took 11–17% less time, and a training step of SE-ResNet-50 3–10% less
    (`benchmarks/page_faults.py`, docs/performance.md). The cost is that the process keeps the peak of its heap (up
    to 1 GiB more) until it exits. Blocks above 32 MiB still come from mmap.

    The setting is process-wide and cannot be undone, so library functions never apply it: the ``senet`` commands
    and the benchmarks call it at start, and a program of one's own may (before `senet.train`, say). Returns True
    where it is in effect. Does nothing (False) where the C library is not glibc or the
    environment variable ``SENET_MALLOC=system`` asks to leave malloc alone.
    """
    global _kept
    if _kept is None:
        _kept = False
        if os.environ.get("SENET_MALLOC", "").lower() != "system" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(None)
                _kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
                )
            except (OSError, AttributeError):
                _kept = False
    return _kept
