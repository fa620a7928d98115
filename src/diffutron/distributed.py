"""Processes started by `torchrun` or `accelerate launch`: who am I, which device is mine, and the
few collective operations evaluation and generation need (gather, barrier).

A plain run is one process of rank 0 and every function here degrades to the single-process
answer without touching torch.distributed. Under a launch, the process group is created on
first use: NCCL when CUDA is available (each process on `cuda:LOCAL_RANK`), gloo otherwise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from diffutron.errors import DiffutronError

logger = logging.getLogger(__name__)

# evaluation and generation can keep one rank busy far longer than torch's 10-minute default
COLLECTIVE_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Launch:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def current_launch() -> Launch:
    """This process's place in a torchrun / accelerate launch, from the environment they set."""
    try:
        launch = Launch(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError as error:
        raise DiffutronError(f"RANK / WORLD_SIZE / LOCAL_RANK must be whole numbers: {error}") from None
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size:
        raise DiffutronError(f"inconsistent launch: RANK {launch.rank} of WORLD_SIZE {launch.world_size}")
    return launch


def launch_device(launch: Launch, requested: str | None = None) -> str | None:
    """The device this process should use.

    A plain run keeps what was asked for. Under a launch each process takes its own GPU,
    cuda:LOCAL_RANK, when "auto", nothing or any CUDA device was asked for (lm-eval's command line
    passes cuda:0 to every process by default, as its Hugging Face model also overrides); "cpu" stays.
    """
    if not launch.distributed:
        return requested
    wanted = str(requested) if requested is not None else "auto"
    if wanted == "auto":
        return f"cuda:{launch.local_rank}" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        own = f"cuda:{launch.local_rank}"
        if wanted not in ("cuda", own):
            logger.warning("process %d of %d uses %s, not %s", launch.rank, launch.world_size, own, wanted)
        return own
    return requested


def ensure_process_group(launch: Launch) -> None:
    """Join the launch's process group (once); nothing for a plain run."""
    if not launch.distributed or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(launch.local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_gather_tensor(tensor: torch.Tensor, launch: Launch) -> torch.Tensor:
    """Every process's `tensor` (same shape on all), concatenated along dim 0 in rank order."""
    if not launch.distributed:
        return tensor
    local = tensor.reshape(1) if tensor.dim() == 0 else tensor
    local = local.to(_collective_device())
    parts = [torch.empty_like(local) for _ in range(launch.world_size)]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(tensor.device)


def gather_objects(value: Any, launch: Launch, destination: int = 0) -> list[Any] | None:
    """Every process's picklable `value` in rank order on `destination`; None on the others."""
    if not launch.distributed:
        return [value]
    gathered: list[Any] | None = [None] * launch.world_size if launch.rank == destination else None
    dist.gather_object(value, gathered, dst=destination)
    return gathered


def barrier(launch: Launch) -> None:
    if launch.distributed:
        dist.barrier()
