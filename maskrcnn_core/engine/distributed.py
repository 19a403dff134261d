"""This process's place in a ``torchrun`` launch: the one module that reads torchrun's environment.

``torchrun`` starts one copy of the command per process and tells each, through ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK``, how many there are and which one it is. ``train`` uses this for DistributedDataParallel
and ``predict`` to share the images out; outside torchrun both run as the single process of a world of one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


class DeviceUnavailable(ValueError):
    """The device asked for is not there (``--device cuda`` without CUDA); the message says so."""


@dataclass(frozen=True)
class ProcessPlace:
    """Where this process runs: its device, and its rank among ``world_size`` processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def leader(self) -> bool:
        """The one process that reports and writes the run's files (rank 0)."""
        return self.rank == 0


def launched_world_size() -> int:
    """How many processes ``torchrun`` started for this command; 1 when it runs on its own."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_device(name: str | None) -> torch.device:
    """The device called ``name`` ("auto" or ``None``: CUDA when there is one; "cpu"; "cuda") for this
    process: under torchrun, the GPU of its ``LOCAL_RANK``."""
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda: no CUDA device is available")
    if name == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"--device cuda: process {local_rank} on this machine needs GPU {local_rank}, and it has "
                f"{torch.cuda.device_count()}: start at most that many processes per machine"
            )
        return torch.device("cuda", local_rank)
    return torch.device(name)


@contextmanager
def process_place(device_name: str | None, *, timeout: timedelta | None = None) -> Iterator[ProcessPlace]:
    """This process's part of a command. Under ``torchrun`` (more than one process) the process group is
    set up for the block (NCCL on CUDA, gloo on the CPU) and taken down after it. ``timeout`` bounds each
    collective call (torch's default when ``None``): a command whose processes may wait on each other for
    long, such as ranks that finish their share of images at different times, passes a longer one."""
    device = local_device(device_name)
    world = launched_world_size()
    if world == 1:
        yield ProcessPlace(device)
        return
    if device.type == "cuda":
        # NCCL's own collectives (barrier, all_gather_object) run on the current device: without this
        # every rank would use GPU 0 for them
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    try:
        yield ProcessPlace(device, dist.get_rank(), world)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
