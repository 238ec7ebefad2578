"""The process group ``torchrun`` starts (PyTorch DDP): rank, world, device, and summing numbers over ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


# --- distributed -----------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the process group when started by ``torchrun`` (gloo on CPU, nccl on GPU)."""
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return Dist(device=torch.device("cuda" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    return Dist(dist.get_rank(), dist.get_world_size(), local, device)


def all_reduce(values: list[float], d: Dist) -> list[float]:
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()
