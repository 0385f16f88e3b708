"""The facts a measurement needs beside it: which CPU, how many cores and threads, which torch, which GPU."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

__all__ = ["describe"]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str | torch.device = "cpu") -> dict[str, Any]:
    """CPU model, usable cores, torch threads, torch and Python versions, the device and, on CUDA, the GPU's name."""
    device = torch.device(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
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
    }
