"""Which samples each rank sees: disjoint shards of one epoch order, padded for training."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from .setup import rank, world_size


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
