"""Several processes, one run: torchrun's environment, process groups, and sums across processes.

``torchrun --nproc_per_node=N -m senet train ...`` (and across nodes) starts N copies with RANK, LOCAL_RANK and
WORLD_SIZE set; each joins one process group (NCCL on GPUs, gloo on CPUs) and trains its share of every batch under
DistributedDataParallel. Only rank 0 prints and writes files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Dist", "launched_rank", "setup"]


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    owner: bool = False  # this process group was started by `setup` (and is ended by `teardown`)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (float64, exact for counts)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm running statistics). DistributedDataParallel does the same
        before each forward, but each process's last forward leaves its own statistics behind."""
        if self.enabled:
            for b in model.buffers():
                dist.broadcast(b, 0)

    def fingerprints(self, model: nn.Module) -> list[str]:
        """Each process's SHA-256 of ``model``'s parameters and buffers, in rank order: equal when in sync."""
        h = hashlib.sha256()
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        mine = h.hexdigest()
        if not self.enabled:
            return [mine]
        gathered: list[str | None] = [None] * self.world
        dist.all_gather_object(gathered, mine)
        return [str(g) for g in gathered]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def launched_rank() -> int:
    """This process's rank as torchrun set it (RANK); 0 for a process started alone. Only rank 0 prints."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str = "auto") -> Dist:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = launched_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device; use device=cpu or auto")
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owner = world > 1 and not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return Dist(rank, world, local_rank, dev, owner)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
