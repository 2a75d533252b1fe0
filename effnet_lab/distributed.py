"""Data-parallel training under ``torchrun``: which process am I, and how do the processes agree?

``torchrun --nproc_per_node=N -m effnet_lab train ...`` starts N processes and describes the
group in environment variables; ``start_processes`` joins it (NCCL on GPUs, Gloo on CPUs).
Each process trains on its share of every batch; DistributedDataParallel averages the
gradients. Without torchrun there is one process and every function here does nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device_hint: str | None) -> Processes:
    """Join the process group that torchrun describes in the environment (if any)."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return Processes(rank, world_size, local_rank, started_here=False)
    use_cuda = torch.cuda.is_available() and (device_hint is None or device_hint.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return Processes(rank, world_size, local_rank, started_here=True)


def all_reduce_sum(value: torch.Tensor, processes: Processes) -> torch.Tensor:
    if processes.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(value)
    return value


def barrier(processes: Processes) -> None:
    if processes.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
