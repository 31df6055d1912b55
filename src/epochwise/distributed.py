"""torchrun / torch.distributed: detection, rank-0 side effects, exact reductions, sharding.

``model.fit`` detects the environment torchrun sets up (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``), initialises the process group (nccl on CUDA, gloo on CPU) unless the script already
did, pins each process to its local GPU and trains through ``DistributedDataParallel``. The user's
script does not change. Everything here is a no-op in a single process.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import math
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "rank", "world_size", "is_main_process", "setup", "barrier"]


def env_requests_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ and "MASTER_ADDR" in os.environ


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 prints and writes files; the others wait at a barrier."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def setup(device: torch.device, device_was_auto: bool) -> torch.device:
    """Initialise the process group from torchrun's environment (once) and pick this process's device."""
    if not env_requests_distributed() and not is_distributed():
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda" and (device_was_auto or device.index is None):
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_shutdown)  # we opened it, we close it: an exit with live peers can abort
    return device


def _shutdown() -> None:
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
            dist.destroy_process_group()


def broadcast_int(value: int) -> int:
    """Rank 0's value on every rank (the data-order seed, so shards never overlap)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return int(holder[0])


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank says True: a stop decided by one rank stops all."""
    if not is_distributed():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_numbers(values: list[torch.Tensor | float], device: torch.device) -> list[torch.Tensor]:
    """All-reduce (sum) a list of scalars and tensors in one collective per shape group."""
    dev = _collective_device(device)
    flat = [torch.as_tensor(v, dtype=torch.float64).to(dev).reshape(-1) for v in values]
    sizes = [f.numel() for f in flat]
    packed = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.float64, device=dev)
    if is_distributed():
        dist.all_reduce(packed)
    out, start = [], 0
    for v, size in zip(values, sizes):
        shape = v.shape if isinstance(v, torch.Tensor) else ()
        out.append(packed[start:start + size].reshape(shape))
        start += size
    return out


def gather_objects(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def _collective_device(device: torch.device) -> torch.device:
    backend = dist.get_backend() if is_distributed() else "gloo"
    return device if backend == "nccl" else torch.device("cpu")


@contextlib.contextmanager
def quiet_unless_main() -> Iterator[None]:
    """Only rank 0 prints: other ranks' stdout is dropped while fit / evaluate / predict run."""
    if is_main_process():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def shard_bounds(n: int, pad: bool) -> tuple[int, int, int]:
    """(start, stop, padded_per_rank) of this rank's contiguous shard of ``n`` items.

    With ``pad`` every rank gets ``ceil(n / world)`` items (the shortfall is filled by wrapping around,
    so every rank runs the same number of steps); without it the shards are disjoint and may be uneven.
    """
    w, r = world_size(), rank()
    per = math.ceil(n / w)
    start = r * per
    stop = min(start + per, n)
    return start, max(stop, start), per if pad else max(stop - start, 0)


def train_positions(n: int, batch_size: int) -> torch.Tensor:
    """This rank's positions in an epoch order of ``n`` items, for training.

    The order is padded (by wrapping around) to ``world * ceil(n / world)`` so every rank runs the same
    number of steps; then each global batch of ``world * batch_size`` consecutive positions is split into
    ``world`` equal chunks, and rank ``r`` takes chunk ``r``. So step ``k`` of all ranks together covers
    exactly the batch a single process would see at ``batch_size * world``: same global batch, same
    gradient (up to float rounding), whatever the number of processes.
    """
    w, r = world_size(), rank()
    per = math.ceil(n / w)
    total = per * w
    chunks = []
    for start in range(0, total, w * batch_size):
        size = min(batch_size, (total - start) // w)
        chunks.append(torch.arange(start + r * size, start + (r + 1) * size))
    return torch.cat(chunks) % n if chunks else torch.zeros(0, dtype=torch.long)


def wrap_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around the user's module (which stays ``model.module``)."""
    from torch.nn.parallel import DistributedDataParallel

    if not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


class ShardSampler(torch.utils.data.Sampler):
    """A DataLoader sampler for rank ``r`` of ``w``: the epoch's permutation (same seed on every rank)
    cut into disjoint shards: for training as :func:`train_positions` (padded, so all ranks step
    together), for evaluation contiguous and unpadded, so no sample counts twice. ``set_epoch`` reseeds.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, pad: bool, batch_size: int = 1) -> None:
        self.n, self.shuffle, self.seed, self.pad, self.epoch = n, shuffle, seed, pad, 0
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            return torch.randperm(self.n, generator=g).tolist()
        return list(range(self.n))

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self.pad:
            return iter([order[i] for i in train_positions(self.n, self.batch_size).tolist()])
        start, stop, _ = shard_bounds(self.n, pad=False)
        return iter(order[start:stop])

    def __len__(self) -> int:
        start, stop, per = shard_bounds(self.n, self.pad)
        return per if self.pad else stop - start
