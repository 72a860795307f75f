"""Several processes, one run: torchrun, DistributedDataParallel, and rank 0 as the only writer.

``torchrun --nproc-per-node N -m unet_course train ...`` starts N copies of the command line.
Each reads its rank from the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), joins the process group (NCCL on CUDA, gloo on the CPU) and trains on its
own tiles; ``DistributedDataParallel`` averages the gradients during the backward pass, so
every process takes the same SGD step. :func:`unet_course.train.fit` asks this module who
it is; without a process group every helper here is the single-process identity. The book's
page "Train on more data and more GPUs" teaches it.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["process_group", "join_from_environment", "leave", "process_device", "replicate", "mean_over_processes",
           "share_from_main", "gather_objects", "wait_for_all"]


def process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, or ``(0, 1)`` without one.

    Example:
        >>> process_group()
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _local_rank() -> int:
    """This process's index on its machine: torchrun's ``LOCAL_RANK``, else the rank modulo the GPUs."""
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    return process_group()[0] % max(1, torch.cuda.device_count())


def process_device(device: torch.device | str) -> torch.device:
    """The device this process trains on: under a process group, ``"cuda"`` becomes ``cuda:LOCAL_RANK``.

    One GPU per process is what ``DistributedDataParallel`` expects; an explicit index
    (``cuda:1``) and other devices are kept as given.
    """
    device = torch.device(device)
    if device.type == "cuda" and process_group()[1] > 1:
        device = device if device.index is not None else torch.device("cuda", _local_rank())
        torch.cuda.set_device(device)  # NCCL's collectives run on the current device
    return device


def join_from_environment(device: torch.device | str) -> bool:
    """Join the process group torchrun describes in the environment; returns whether there is one to join.

    ``WORLD_SIZE`` above 1 (set by ``torchrun``) means this is one of several processes:
    the default group is initialised from ``MASTER_ADDR``/``MASTER_PORT``, with NCCL when
    ``device`` is CUDA and gloo otherwise. Without torchrun, or with one process, nothing
    happens and False is returned. Call :func:`leave` at the end.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(_local_rank())
    dist.init_process_group(backend)
    return True


def leave() -> None:
    """Leave the process group :func:`join_from_environment` joined (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def replicate(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` under a process group of several processes, else ``model``.

    The wrapper copies rank 0's weights to every process once, then averages the gradients
    of each backward pass across processes (the mean, so the learning rate means what it
    means for one process with the whole batch).
    """
    if process_group()[1] == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over all processes (the value itself with one process)."""
    world_size = process_group()[1]
    if world_size == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world_size


def share_from_main(value):
    """Rank 0's ``value`` on every process (any picklable object); with one process, ``value``."""
    if process_group()[1] == 1:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def gather_objects(value) -> list:
    """Every process's ``value`` (any picklable object), in rank order, on every process."""
    world_size = process_group()[1]
    if world_size == 1:
        return [value]
    gathered = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


def wait_for_all() -> None:
    """Block until every process has reached this point (no-op with one process)."""
    if process_group()[1] > 1:
        dist.barrier()
