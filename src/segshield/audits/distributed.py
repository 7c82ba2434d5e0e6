"""Sharded audits on torch.distributed, launched by ``torchrun`` (single node or several).

Every rank loads the same data and model and builds (or loads from the engine cache) its
engines; rank r crafts and replays a contiguous block of *whole batches* of the images, so
every batch is the very batch a one-process audit runs, and per-image random starts are
seeded by the dataset index: the merged results equal a one-process audit's exactly. Each
rank's per-engine accumulators (per-image counts, losses, predictions) and adversarial
images are gathered on rank 0, which scores them, writes the cells and the report.

Object collectives go through a gloo group (NCCL moves tensors only).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# How long a rank waits for the others (a rank that died leaves the rest waiting this long).
TIMEOUT = datetime.timedelta(minutes=float(os.environ.get("SEGSHIELD_DIST_TIMEOUT_MIN", 60)))


@dataclass(frozen=True)
class Ranks:
    """This process's place in the audit: rank of world (0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: Any = None  # the gloo process group for object collectives

    @property
    def root(self) -> bool:
        return self.rank == 0

    def bounds(self, n: int, batch_size: int) -> tuple[int, int]:
        """This rank's images [start, stop): whole batches, contiguous, in rank order."""
        return shard_bounds(n, batch_size, self.rank, self.world)

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0, in rank order (None on the other ranks)."""
        if self.world == 1:
            return [obj]
        out: list[Any] | None = [None] * self.world if self.root else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier(group=self.group)


def shard_bounds(n: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """Images [start, stop) of ``rank``: the batches of ``batch_size`` split into ``world``
    contiguous runs as even as can be (a rank may get none when there are fewer batches)."""
    batches = math.ceil(n / batch_size)
    first, last = rank * batches // world, (rank + 1) * batches // world
    return min(n, first * batch_size), min(n, last * batch_size)


def join(device: torch.device) -> Ranks:
    """The ranks of this audit: one process, unless ``torchrun`` started it with
    WORLD_SIZE > 1; then the default process group is initialised (NCCL on CUDA, gloo on
    the CPU) unless the caller already did."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    rank, world = dist.get_rank(), dist.get_world_size()
    gloo = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    log.info("rank %d of %d (local rank %d, backend %s)", rank, world, local, dist.get_backend())
    return Ranks(rank, world, local, gloo)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """One GPU per rank on a node: ``cuda`` (no index) becomes ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and ranks.world > 1 and device.index in (None, 0):
        return torch.device("cuda", ranks.local_rank % max(1, torch.cuda.device_count()))
    return device
