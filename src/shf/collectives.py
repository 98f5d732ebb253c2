"""The collectives data-parallel SHF uses, over ``torch.distributed`` (nothing without it).

A :class:`Collectives` is one process group seen as SHF needs it: sums of weight-space
vectors (one flat buffer per call, so one all-reduce however many weight tensors), sums
of scalars (float64), the agreement of all ranks on a yes/no decision, rank 0's values
broadcast, and the rows of a batch this rank computes on. It counts its calls, bytes and
seconds (:class:`CommStats`) for the benchmarks.

Nothing here runs unless a process group exists: :func:`current` is ``None`` without
``torch.distributed`` initialised or with one process, and every caller then takes its
single-process path, unchanged.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from shf.errors import ConfigError, ShfError

DEFAULT_TIMEOUT_S = 300.0
"""Seconds a collective waits for the other ranks before the job fails (a rank that died
or hangs): ``shf train --dist-timeout``."""


@dataclass
class CommStats:
    """Collectives made so far: calls, bytes sent into them (per rank) and wall seconds."""

    calls: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        self.calls, self.bytes, self.seconds = 0, 0, 0.0


def row_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous rows ``[lo, hi)`` of ``n``: sizes differ by at most one, the
    first ``n mod P`` ranks one row more (as ``numpy.array_split``)."""
    q, r = divmod(n, world_size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0)


class Collectives:
    """A process group's collectives (default: the default group).

    Args:
        group: a ``torch.distributed`` process group (``None``: the default one).
        device: where the buffers of scalar collectives live (CPU for gloo, the rank's GPU
            for NCCL).
    """

    def __init__(self, group: Any = None, device: torch.device | str = "cpu") -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigError("torch.distributed is not initialised: no collectives to use")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.device = torch.device(device)
        self.stats = CommStats()

    def rows(self, n: int) -> slice:
        """This rank's rows of a batch of ``n`` (the union over ranks is all ``n``, in order)."""
        lo, hi = row_range(n, self.rank, self.world_size)
        return slice(lo, hi)

    def _reduce(self, buf: Tensor, op: Any = None) -> None:
        t = time.perf_counter()
        dist.all_reduce(buf, op=dist.ReduceOp.SUM if op is None else op, group=self.group)
        self.stats.seconds += time.perf_counter() - t
        self.stats.calls += 1
        self.stats.bytes += buf.numel() * buf.element_size()

    def sum_tensors(self, tensors: Sequence[Tensor], scale: float = 1.0) -> list[Tensor]:
        """``sum over ranks of scale * t`` for each ``t``, in one all-reduce of one flat buffer;
        new tensors (views of that buffer) shaped as the inputs."""
        if any(t.dtype != tensors[0].dtype for t in tensors):
            # mixed dtypes (rare): one buffer per dtype, so nothing is promoted
            out: list[Tensor | None] = [None] * len(tensors)
            for dt in {t.dtype for t in tensors}:
                idx = [i for i, t in enumerate(tensors) if t.dtype == dt]
                for i, r in zip(idx, self.sum_tensors([tensors[i] for i in idx], scale)):
                    out[i] = r
            return [t for t in out if t is not None]
        flat = torch.cat([t.reshape(-1) for t in tensors])
        if scale != 1.0:
            flat.mul_(scale)
        self._reduce(flat)
        return [p.view_as(t) for p, t in zip(torch.split(flat, [t.numel() for t in tensors]), tensors)]

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        """The sums over ranks of a few scalars, in float64, in one all-reduce."""
        buf = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        self._reduce(buf)
        return [float(v) for v in buf.tolist()]

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on some rank (the ranks' decisions agree)."""
        buf = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64, device=self.device)
        self._reduce(buf, dist.ReduceOp.MAX)
        return bool(buf.item() > 0.0)

    def broadcast_floats(self, values: Sequence[float]) -> list[float]:
        """Rank 0's values on every rank."""
        buf = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        t = time.perf_counter()
        dist.broadcast(buf, src=dist.get_global_rank(self.group, 0) if self.group is not None else 0,
                       group=self.group)  # fmt: skip
        self.stats.seconds += time.perf_counter() - t
        self.stats.calls += 1
        self.stats.bytes += buf.numel() * buf.element_size()
        return [float(v) for v in buf.tolist()]

    def broadcast_(self, t: Tensor) -> Tensor:
        """Overwrite ``t`` with rank 0's ``t`` (through :attr:`device` when ``t`` lives elsewhere)."""
        buf = t if t.device == self.device else t.to(self.device)
        dist.broadcast(buf, src=0, group=self.group)
        if buf is not t:
            t.copy_(buf)
        self.stats.calls += 1
        self.stats.bytes += buf.numel() * buf.element_size()
        return t

    def same_on_all_ranks(self, values: Sequence[float]) -> bool:
        """Whether every rank holds rank 0's ``values`` exactly (the same answer on every rank)."""
        mine = [float(v) for v in values]
        theirs = self.broadcast_floats(mine)
        differ = any(not (a == b or (math.isnan(a) and math.isnan(b))) for a, b in zip(theirs, mine))
        return not self.any(differ)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's Python object on every rank (a checkpoint read by rank 0 only)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def on_rank0(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run by rank 0 alone, its result (or the :class:`ShfError` it raised) handed to
        every rank: a check of files only rank 0 sees fails on every rank, in one line."""
        got: tuple[bool, Any] = (True, None)
        if self.rank == 0:
            try:
                got = (True, fn())
            except ShfError as e:
                got = (False, (type(e), str(e)))
        ok, value = self.broadcast_object(got)
        if not ok:
            kind, msg = value
            raise kind(msg)
        return value


def current(device: torch.device | str = "cpu") -> Collectives | None:
    """The default group's collectives when ``torch.distributed`` runs more than one process,
    else ``None`` (the single-process path)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Collectives(None, device)


def launched_by_torchrun() -> bool:
    """Whether the environment holds a ``torchrun`` launch (``WORLD_SIZE`` > 1 and a rank)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_environment(device: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join the process group ``torchrun`` describes (``env://``): gloo on the CPU, NCCL on CUDA,
    collectives failing after ``timeout_s``; return this rank's device (``cuda:LOCAL_RANK`` for
    CUDA). A no-op (returning ``device``) when not launched by ``torchrun`` or already joined."""
    dev = torch.device(device)
    if not launched_by_torchrun():
        return dev
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ConfigError(f"the distributed timeout must be a positive number of seconds, got {timeout_s}")
    if dev.type == "cuda":
        if dev.index is not None:
            raise ConfigError(
                f"under torchrun give --device cuda, not {device}: "
                "each process takes the GPU of its LOCAL_RANK"
            )
        if not torch.cuda.is_available():
            raise ConfigError("device cuda asked for, but CUDA is not available on this machine")
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return dev


def rank() -> int:
    """This process's rank (0 without ``torch.distributed``)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
