"""In-memory arrays: every leaf one tensor, batches gathered by index (no per-sample collate)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from .. import distributed
from .structures import Batch, gather, leaves, map_structure, nbytes, to_device, to_tensor
from .weights import check_weights


# --- array input ------------------------------------------------------------------------------
class ArrayData:
    """x / y / sample_weight as tensors with one shared first dimension."""

    def __init__(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        names: tuple[str, str, str] = ("x", "y", "sample_weight"),
    ) -> None:
        self.x = map_structure(lambda a: to_tensor(a, names[0]), x)
        self.y = map_structure(lambda a: to_tensor(a, names[1], labels=True), y)
        self.sample_weight = None if sample_weight is None else to_tensor(sample_weight, names[2]).float()
        sizes = {}
        for label, part in zip(names, (self.x, self.y, self.sample_weight)):
            for leaf in leaves(part):
                sizes.setdefault(label, set()).add(int(leaf.shape[0]))
        all_sizes = set().union(*sizes.values())
        if len(all_sizes) != 1:
            detail = ", ".join(f"{k}: {sorted(v)}" for k, v in sizes.items())
            raise ValueError(
                f"Data cardinality is ambiguous: the first dimensions differ ({detail}). "
                f"Make sure {', '.join(sizes)} hold one row per sample."
            )
        self.n = all_sizes.pop()
        self.names = names
        check_weights(names[2], self.sample_weight)  # once, up front: never per batch

    def parts(self) -> list[tuple[str, Any]]:
        """(argument name, structure) of x, y and sample_weight, for the checks and their messages."""
        return list(zip(self.names, (self.x, self.y, self.sample_weight)))

    def take(self, idx: torch.Tensor, names: tuple[str, str, str] | None = None) -> ArrayData:
        out = object.__new__(ArrayData)
        out.x, out.y = gather(self.x, idx), gather(self.y, idx)
        out.sample_weight = None if self.sample_weight is None else self.sample_weight.index_select(0, idx)
        out.n = int(idx.numel())
        out.names = names or self.names
        return out

    def split_tail(self, split: float) -> tuple[ArrayData, ArrayData]:
        """F7: the last rows, in original order, go to validation (named so in the checks' messages)."""
        at = math.floor(self.n * (1.0 - split))
        if at <= 0 or at >= self.n:
            raise ValueError(
                f"validation_split={split} leaves an empty side with {self.n} samples "
                f"(train {at}, validation {self.n - at}); use a split that keeps at least one sample on each side"
            )
        tail = tuple(f"the last {self.n - at} samples of {name} used by validation_split" for name in self.names)
        return self.take(torch.arange(0, at)), self.take(torch.arange(at, self.n), tail)  # type: ignore[arg-type]

    def to(self, device: torch.device) -> ArrayData:
        out = object.__new__(ArrayData)
        out.x, out.y = to_device(self.x, device), to_device(self.y, device)
        out.sample_weight = None if self.sample_weight is None else self.sample_weight.to(device)
        out.n, out.names = self.n, self.names
        return out


class ArrayBatches:
    """Batches of an :class:`ArrayData`, gathered by index (D1, D2, F9)."""

    def __init__(
        self,
        data: ArrayData,
        batch_size: int,
        *,
        shuffle: bool | str = False,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
        shard: str | None = None,
    ) -> None:
        self.data, self.batch_size, self.shuffle, self.generator = data, batch_size, shuffle, generator
        # under torchrun: "train" = this rank's padded shard of each epoch's order, "eval" = disjoint, unpadded
        self.shard = shard if distributed.is_distributed() else None
        self.device = device or torch.device("cpu")
        # Keep the data on the training device when it fits comfortably, so a batch is one gather there.
        self.stored = data
        if self.device.type != "cpu":
            free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else 0
            if self.device.type != "cuda" or nbytes((data.x, data.y)) < 0.4 * free:
                self.stored = data.to(self.device)
        self.on_device = self.stored is not data or self.device.type == "cpu"

    def __len__(self) -> int:
        return math.ceil(self._rows() / self.batch_size)

    def _rows(self) -> int:
        if self.shard is None:
            return self.data.n
        return distributed.shard_bounds(self.data.n, pad=self.shard == "train")[2]

    def _order(self) -> torch.Tensor:
        n, b = self.data.n, self.batch_size
        if self.shuffle == "batch":
            order = torch.arange(n)
            for start in range(0, n, b):
                chunk = order[start : start + b]
                order[start : start + b] = chunk[torch.randperm(len(chunk), generator=self.generator)]
            return order
        if self.shuffle:
            return torch.randperm(n, generator=self.generator)
        return torch.arange(n)

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate(0)

    def iterate(self, skip: int = 0) -> Iterator[Batch]:
        """This epoch's batches after the first ``skip``; the data order is drawn now, not lazily."""
        order = self._order()
        if self.shard == "train":  # the same order on every rank (same seed): this rank's part of each global batch
            order = order[distributed.train_positions(self.data.n, self.batch_size)]
        elif self.shard == "eval":  # a contiguous, unpadded shard: no sample counts twice
            start, stop, _ = distributed.shard_bounds(self.data.n, pad=False)
            order = order[start:stop]
        order = order.to(self.device if self.on_device else "cpu")
        return self._batches(order, skip * self.batch_size)

    def _batches(self, order: torch.Tensor, first: int) -> Iterator[Batch]:
        d = self.stored
        for start in range(first, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.shuffle is False and self.shard is None:
                x = map_structure(lambda t, s=start: t[s : s + self.batch_size], d.x)
                y = map_structure(lambda t, s=start: t[s : s + self.batch_size], d.y)
                sw = None if d.sample_weight is None else d.sample_weight[start : start + self.batch_size]
            else:
                x, y = gather(d.x, idx), gather(d.y, idx)
                sw = None if d.sample_weight is None else d.sample_weight.index_select(0, idx)
            if not self.on_device:  # data too large for the GPU: pinned pages, asynchronous copies
                x, y, sw = (to_device(map_structure(_pin, p), self.device, non_blocking=True) for p in (x, y, sw))
            yield x, y, sw


def _pin(t: torch.Tensor) -> torch.Tensor:
    return t.pin_memory() if torch.cuda.is_available() else t


