"""Array input: every leaf one tensor, batches gathered by index (no per-sample collate).

Memory-mapped NumPy arrays (``np.load(path, mmap_mode="r")``, ``np.memmap``, any array over an ``mmap``)
stay in their file: a :class:`MappedArray` reads each batch's rows when the batch is made, so data larger
than memory trains without a copy of it. Every other array becomes one in-memory tensor, as before.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .. import distributed
from .structures import (
    Batch,
    holds_strings,
    leaves,
    map_structure,
    nbytes,
    strings_error,
    to_device,
    to_tensor,
)
from .weights import check_weights

CHUNK_BYTES = 4 << 20  # what a whole-array check reads of a memory-mapped array at once


# --- memory-mapped arrays -----------------------------------------------------------------------
def is_memory_mapped(obj: Any) -> bool:
    """An ndarray whose memory is a memory-mapped file (an ``np.memmap`` or a view of one, ``np.load(...,
    mmap_mode=...)``, ``np.frombuffer`` over an ``mmap``); a fancy-indexed copy of one is not."""
    base = obj if isinstance(obj, np.ndarray) else None
    while base is not None:
        if isinstance(base, mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return False


class MappedArray:
    """One memory-mapped leaf, read per batch: rows gathered by index and converted per batch (float64 ->
    float32, F18), never whole."""

    def __init__(self, array: np.ndarray, name: str, labels: bool = False) -> None:
        if holds_strings(array):
            raise strings_error(name, array, labels)
        if array.ndim == 0:
            raise ValueError(f"{name} is a scalar; it needs a first (sample) dimension")
        self.array = array.view(np.ndarray)  # the file's pages, no copy
        wide = array.dtype.kind == "f" and array.dtype.itemsize == 8
        self.dtype = np.dtype(np.float32) if wide else array.dtype.newbyteorder("=")  # native order for torch
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` as a tensor of their own (a copy of that part of the file)."""
        return torch.from_numpy(np.array(self.array[start:stop], dtype=self.dtype, order="C"))

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """The rows ``idx``, in that order: one gather from the file's pages (sorting the indices first
        bought nothing once the file was cached and cost a second copy; see benchmarks/MMAP.md)."""
        return torch.from_numpy(np.take(self.array, idx.cpu().numpy(), axis=0).astype(self.dtype, copy=False))

    def view(self, start: int, stop: int) -> MappedArray:
        """Rows ``start:stop``, still in the file (validation_split's two sides)."""
        out = object.__new__(MappedArray)
        out.array, out.dtype, out.name = self.array[start:stop], self.dtype, self.name
        return out

    def chunks(self) -> Iterator[torch.Tensor]:
        """The whole array as tensors of about ``CHUNK_BYTES`` each, for the checks."""
        n = self.shape[0]
        row_bytes = max(1, self.nbytes // max(n, 1))
        step = max(1, CHUNK_BYTES // row_bytes)
        for start in range(0, n, step):
            yield self.rows(start, min(start + step, n))

    def load(self) -> torch.Tensor:
        """The whole array in memory (labels a class_weight reads whole)."""
        return self.rows(0, self.shape[0])

    def __repr__(self) -> str:
        return f"MappedArray({self.name}, shape={self.shape}, dtype={self.array.dtype})"


def _leaf(obj: Any, name: str, labels: bool = False) -> torch.Tensor | MappedArray:
    if is_memory_mapped(obj):
        return MappedArray(obj, name, labels)
    return to_tensor(obj, name, labels=labels)


def _rows(leaf: Any, start: int, stop: int) -> Any:
    return leaf.rows(start, stop) if isinstance(leaf, MappedArray) else leaf[start:stop]


def _take(leaf: Any, idx: torch.Tensor) -> Any:
    return leaf.take(idx) if isinstance(leaf, MappedArray) else leaf.index_select(0, idx)


def _view(leaf: Any, start: int, stop: int) -> Any:
    return leaf.view(start, stop) if isinstance(leaf, MappedArray) else leaf[start:stop]


def in_memory(obj: Any) -> Any:
    """``obj`` with every memory-mapped leaf read whole into a tensor."""
    return map_structure(lambda t: t.load() if isinstance(t, MappedArray) else t, obj)


def has_mapped(obj: Any) -> bool:
    return any(isinstance(leaf, MappedArray) for leaf in leaves(obj))


def _size_text(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


# --- array input ------------------------------------------------------------------------------
class ArrayData:
    """x / y / sample_weight as tensors (or memory-mapped leaves) with one shared first dimension.

    sample_weight, one value per sample, is always read into memory.
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        names: tuple[str, str, str] = ("x", "y", "sample_weight"),
    ) -> None:
        self.x = map_structure(lambda a: _leaf(a, names[0]), x)
        self.y = map_structure(lambda a: _leaf(a, names[1], labels=True), y)
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

    @property
    def mapped(self) -> bool:
        """Whether any leaf is memory-mapped (read per batch, kept off the accelerator)."""
        return has_mapped((self.x, self.y))

    def describe(self) -> list[str]:
        """The run plan's words for where each memory-mapped part is read from; nothing for in-memory data."""
        lines = []
        for name, part in self.parts()[:2]:
            mapped = [leaf for leaf in leaves(part) if isinstance(leaf, MappedArray)]
            if mapped:
                size = _size_text(sum(leaf.nbytes for leaf in mapped))
                cast = any(leaf.array.dtype.kind == "f" and leaf.array.dtype.itemsize == 8 for leaf in mapped)
                lines.append(f"{name}: memory-mapped ({size}), read per batch"
                             + (", float64 -> float32 per batch" if cast else ""))
        return lines

    def head(self, k: int) -> Any:
        """The first ``k`` rows of x, as tensors."""
        return map_structure(lambda t: _rows(t, 0, k), self.x)

    def take(self, idx: torch.Tensor, names: tuple[str, str, str] | None = None) -> ArrayData:
        """The rows ``idx`` as in-memory tensors."""
        out = object.__new__(ArrayData)
        out.x, out.y = (map_structure(lambda t: _take(t, idx), p) for p in (self.x, self.y))
        out.sample_weight = None if self.sample_weight is None else self.sample_weight.index_select(0, idx)
        out.n = int(idx.numel())
        out.names = names or self.names
        return out

    def _view(self, start: int, stop: int, names: tuple[str, str, str]) -> ArrayData:
        out = object.__new__(ArrayData)
        out.x, out.y, out.sample_weight = (map_structure(lambda t: _view(t, start, stop), p)
                                           for p in (self.x, self.y, self.sample_weight))
        out.n, out.names = stop - start, names
        return out

    def split_tail(self, split: float) -> tuple[ArrayData, ArrayData]:
        """F7: the last rows, in original order, go to validation (named so in the checks' messages).
        Both sides are views of the same rows, not copies."""
        at = math.floor(self.n * (1.0 - split))
        if at <= 0 or at >= self.n:
            raise ValueError(
                f"validation_split={split} leaves an empty side with {self.n} samples "
                f"(train {at}, validation {self.n - at}); use a split that keeps at least one sample on each side"
            )
        tail = tuple(f"the last {self.n - at} samples of {name} used by validation_split" for name in self.names)
        return self._view(0, at, self.names), self._view(at, self.n, tail)  # type: ignore[arg-type]

    def to(self, device: torch.device) -> ArrayData:
        out = object.__new__(ArrayData)
        out.x, out.y = to_device(self.x, device), to_device(self.y, device)
        out.sample_weight = None if self.sample_weight is None else self.sample_weight.to(device)
        out.n, out.names = self.n, self.names
        return out


class ArrayBatches:
    """Batches of an :class:`ArrayData`, gathered by index (D1, D2, F9).

    In-memory data is kept on the training device when it fits; memory-mapped leaves are read from
    their file per batch on the host and copied over from pinned memory.
    """

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
        if self.device.type != "cpu" and not data.mapped:
            free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else 0
            if self.device.type != "cuda" or nbytes((data.x, data.y)) < 0.4 * free:
                self.stored = data.to(self.device)
        self.on_device = self.stored is not data or self.device.type == "cpu"

    def __len__(self) -> int:
        return math.ceil(self._rows() / self.batch_size)

    def describe(self) -> list[str]:
        return self.data.describe()

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
        d, b = self.stored, self.batch_size
        parts = (d.x, d.y, d.sample_weight)
        for start in range(first, len(order), b):
            if self.shuffle is False and self.shard is None:
                x, y, sw = (map_structure(lambda t, s=start: _rows(t, s, s + b), p) for p in parts)
            else:
                idx = order[start : start + b]
                x, y, sw = (map_structure(lambda t, i=idx: _take(t, i), p) for p in parts)
            if not self.on_device:  # data too large for the GPU: pinned pages, asynchronous copies
                x, y, sw = (to_device(map_structure(_pin, p), self.device, non_blocking=True) for p in (x, y, sw))
            yield x, y, sw


def _pin(t: torch.Tensor) -> torch.Tensor:
    return t.pin_memory() if torch.cuda.is_available() else t
