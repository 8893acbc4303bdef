"""Data parallelism as ``torchrun`` launches it: every process trains on its slice of the
same global batch, and DistributedDataParallel averages the gradients."""

from __future__ import annotations

import os

import torch

from lslm.errors import LslmError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True in a process started by ``torchrun`` (it sets RANK, WORLD_SIZE, MASTER_ADDR ...)."""
    return all(k in os.environ for k in TORCHRUN_VARS)


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as ``torchrun`` sets them; ``(0, 1, 0)`` otherwise."""
    if not launched_by_torchrun():
        return 0, 1, 0
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def init_distributed(device: str, local_rank: int) -> str:
    """Join the torchrun job's process group (nccl on CUDA, gloo on CPU); the device to use."""
    import torch.distributed as dist

    if device.startswith("cuda"):
        if device == "cuda":
            device = f"cuda:{local_rank}"  # one GPU per process
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device == "cpu":
        backend = "gloo"
    else:
        raise LslmError(f"multi-process training runs on cpu or cuda, not {device}: pass --device cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return device


def wrap(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """``model`` in DistributedDataParallel (which copies rank 0's weights to every process)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device)] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def mean(value: float, world_size: int, device: str) -> float:
    """The mean of ``value`` over every process of the job."""
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)  # a sum: gloo has no average
    return t.item() / world_size


def leave(wait: bool = True) -> None:
    """Leave the process group. ``wait=False`` skips the final barrier: after an error only
    some processes may reach it, and waiting for the others would hang."""
    import torch.distributed as dist

    if dist.is_initialized():
        if wait:
            dist.barrier()  # nobody leaves while rank 0 still writes the last checkpoint
        dist.destroy_process_group()
