"""Inputs to batches: in-memory arrays (gathered by index), Datasets, DataLoaders and iterables.

In-memory arrays take their own path: every leaf becomes one tensor (on the training device when it
fits), and a batch is ``leaf.index_select(0, idx)`` for a slice of the epoch's permutation: no
per-sample ``__getitem__``, no collate. Everything else is iterated as given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from . import distributed

Batch = tuple[Any, Any, Any]  # (x, y, sample_weight); y and sample_weight may be None


# --- structures ------------------------------------------------------------------------------
def map_structure(fn: Callable[[Any], Any], obj: Any) -> Any:
    """Apply ``fn`` to every leaf of a tuple / list / dict structure."""
    if isinstance(obj, dict):
        return {k: map_structure(fn, v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_structure(fn, v) for v in obj)
    return None if obj is None else fn(obj)


def leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [leaf for v in obj.values() for leaf in leaves(v)]
    if isinstance(obj, (list, tuple)):
        return [leaf for v in obj for leaf in leaves(v)]
    return [] if obj is None else [obj]


def first_leaf(obj: Any) -> Any:
    found = leaves(obj)
    return found[0] if found else None


def is_array_leaf(obj: Any) -> bool:
    return isinstance(obj, (torch.Tensor, np.ndarray)) or (
        hasattr(obj, "__array__") and not isinstance(obj, (str, bytes, Iterator))
    )


def is_array_input(obj: Any) -> bool:
    """True for an array or a tuple / list / dict structure whose leaves are all arrays (F1).

    A list whose items are all tuples or lists is a list of batches, not arrays.
    """
    if isinstance(obj, list) and obj and all(isinstance(v, (tuple, list)) for v in obj):
        return False
    if isinstance(obj, dict):
        return bool(obj) and all(is_array_input(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return bool(obj) and all(is_array_input(v) for v in obj)
    return is_array_leaf(obj) and not isinstance(obj, torch.utils.data.Dataset)


def to_tensor(obj: Any, name: str) -> torch.Tensor:
    """One array leaf as a tensor; float64 becomes float32 (F18), integers stay integers."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
    else:
        if hasattr(obj, "to_numpy"):  # pandas
            obj = obj.to_numpy()
        arr = np.asarray(obj)
        if arr.dtype == object:
            raise TypeError(
                f"{name} holds Python objects (dtype=object); convert it to a numeric array first, "
                f"e.g. np.asarray({name}, dtype='float32')"
            )
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr).copy()
        t = torch.from_numpy(arr)
    if t.dtype == torch.float64:
        t = t.float()
    if t.dim() == 0:
        raise ValueError(f"{name} is a scalar; it needs a first (sample) dimension")
    return t


def to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    def move(t: Any) -> Any:
        if isinstance(t, torch.Tensor):
            if t.dtype == torch.float64:
                t = t.float()
            return t.to(device, non_blocking=non_blocking)
        if isinstance(t, np.ndarray):
            return to_tensor(t, "batch").to(device, non_blocking=non_blocking)
        return t

    return map_structure(move, obj)


def gather(obj: Any, idx: torch.Tensor) -> Any:
    return map_structure(lambda t: t.index_select(0, idx), obj)


def nbytes(obj: Any) -> int:
    return sum(t.element_size() * t.nelement() for t in leaves(obj))


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
        self.y = map_structure(lambda a: to_tensor(a, names[1]), y)
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

    def take(self, idx: torch.Tensor) -> ArrayData:
        out = object.__new__(ArrayData)
        out.x, out.y = gather(self.x, idx), gather(self.y, idx)
        out.sample_weight = None if self.sample_weight is None else self.sample_weight.index_select(0, idx)
        out.n = int(idx.numel())
        return out

    def split_tail(self, split: float) -> tuple[ArrayData, ArrayData]:
        """F7: the last rows, in original order, go to validation."""
        at = math.floor(self.n * (1.0 - split))
        if at <= 0 or at >= self.n:
            raise ValueError(
                f"validation_split={split} leaves an empty side with {self.n} samples "
                f"(train {at}, validation {self.n - at}); use a split that keeps at least one sample on each side"
            )
        return self.take(torch.arange(0, at)), self.take(torch.arange(at, self.n))

    def to(self, device: torch.device) -> ArrayData:
        out = object.__new__(ArrayData)
        out.x, out.y = to_device(self.x, device), to_device(self.y, device)
        out.sample_weight = None if self.sample_weight is None else self.sample_weight.to(device)
        out.n = self.n
        return out

    def check_finite(self) -> None:
        for label, part in (("x", self.x), ("y", self.y), ("sample_weight", self.sample_weight)):
            for leaf in leaves(part):
                if leaf.is_floating_point() and not _all_finite(leaf):
                    bad = int((~torch.isfinite(leaf)).sum())
                    raise ValueError(
                        f"{label} contains {bad} NaN or inf value(s); clean the data "
                        "(e.g. np.nan_to_num) or pass check_finite=False to train on it anyway"
                    )


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every value is finite. A NaN or inf makes the sum non-finite, so a finite sum (one pass,
    no temporary) proves it; only a non-finite sum (a bad value, or an overflow) needs the exact scan."""
    if t.numel() == 0 or bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


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


# --- other sources ------------------------------------------------------------------------------
def unpack_batch(batch: Any) -> Batch:
    """F1: a source yields x, (x,), (x, y) or (x, y, sample_weight); a dict is x alone."""
    if isinstance(batch, dict) or not isinstance(batch, (list, tuple)):
        return batch, None, None
    if len(batch) == 1:
        return batch[0], None, None
    if len(batch) == 2:
        return batch[0], batch[1], None
    if len(batch) == 3:
        return batch[0], batch[1], batch[2]
    raise ValueError(
        f"a batch must be x, (x, y) or (x, y, sample_weight), but a tuple of {len(batch)} items was yielded; "
        "wrap several inputs in a tuple: ((x1, x2), y)"
    )


class SourceBatches:
    """Batches from a DataLoader, a Dataset (batched here) or any iterable of batches.

    Under torchrun a DataLoader with the default sampler gets a :class:`~epochwise.distributed.ShardSampler`
    (``shard="train"``: padded, shuffled like the original; ``"eval"``: disjoint, in order).
    """

    def __init__(self, source: Any, device: torch.device, shard: str | None = None, seed: int = 0) -> None:
        if shard is not None and distributed.is_distributed():
            source = _sharded_loader(source, shard, seed)
        self.source, self.device = source, device
        self.pin = device.type == "cuda"

    def __len__(self) -> int:
        return len(self.source)

    def sized(self) -> bool:
        try:
            len(self.source)
        except TypeError:
            return False
        return True

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.source:
            x, y, sw = unpack_batch(batch)
            yield (
                to_device(x, self.device, self.pin),
                to_device(y, self.device, self.pin),
                to_device(sw, self.device, self.pin),
            )


def _sharded_loader(loader: Any, shard: str, seed: int) -> Any:
    DataLoader = torch.utils.data.DataLoader
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return loader  # iterables and iterable datasets: the user shards them (documented)
    if not isinstance(loader.sampler, (torch.utils.data.RandomSampler, torch.utils.data.SequentialSampler)):
        return loader  # the user's own sampler (a DistributedSampler, say) stays
    if loader.batch_size is None:
        return loader
    sampler = distributed.ShardSampler(len(loader.dataset), shuffle=isinstance(loader.sampler, torch.utils.data.RandomSampler),
                                       seed=seed, pad=shard == "train", batch_size=loader.batch_size)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)


def dataset_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=bool(shuffle), generator=generator
    )


class EpochIterator:
    """Steps of each epoch, with F13's rule for ``steps_per_epoch``.

    Without ``steps`` every epoch is a fresh pass. With ``steps`` the iterator carries over between
    epochs and is restarted only after it runs out, which cuts that epoch short (with one warning per fit).
    ``epoch(skip)`` starts an epoch after its first ``skip`` batches (a resumed run).
    """

    def __init__(
        self, batches: Iterable[Batch], steps: int | None = None, *, what: str = "training data", eval_shard: bool = False
    ) -> None:
        self.batches, self.steps, self.what = batches, steps, what
        # under torchrun a rank's evaluation shard may be empty (fewer samples than processes): that rank
        # runs no batch and adds nothing to the reduced sums, instead of failing while the others wait
        self.empty_ok = eval_shard and distributed.is_distributed()
        self._it: Iterator[Batch] | None = None
        self._warned = False
        source = getattr(batches, "source", batches)
        self.one_shot = isinstance(source, Iterator)  # a generator cannot be restarted
        self.exhausted = False
        self.generator = getattr(batches, "generator", None) or getattr(source, "generator", None)

    def num_steps(self) -> int | None:
        if self.steps is not None:
            return self.steps
        try:
            return len(self.batches)  # type: ignore[arg-type]
        except TypeError:
            return None

    def __iter__(self) -> Iterator[tuple[int, Batch]]:
        return self.epoch(0)

    def _fresh(self, skip: int) -> Iterator[Batch]:
        if self.one_shot and self.exhausted:
            self._ran_out_at_start()
        if isinstance(self.batches, ArrayBatches):
            return self.batches.iterate(skip)
        it = iter(self.batches)
        for _ in range(skip):
            next(it, None)
        return it

    def epoch(self, skip: int = 0) -> Iterator[tuple[int, Batch]]:
        if self.steps is None:
            return self._full_pass(self._fresh(skip), skip)
        if self._it is None:
            self._it = self._fresh(0)
            for _ in range(skip):
                next(self._it, None)
        return self._capped(skip)

    def _full_pass(self, it: Iterator[Batch], skip: int) -> Iterator[tuple[int, Batch]]:
        step = skip - 1
        for step, batch in enumerate(it, start=skip):
            yield step, batch
        if step < 0:
            self._ran_out_at_start()
        self.exhausted = True

    def _capped(self, skip: int) -> Iterator[tuple[int, Batch]]:
        assert self._it is not None
        for step in range(skip, self.steps or 0):
            try:
                batch = next(self._it)
            except StopIteration:
                self._it, self.exhausted = None, True
                if step == 0:
                    self._ran_out_at_start()
                elif not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"Your input ran out of data after {step} of steps_per_epoch={self.steps} steps; the epoch "
                        "was cut short and the next one starts the data again (rule F13). Make steps_per_epoch "
                        "at most the number of batches, or let it default.",
                        UserWarning,
                        stacklevel=4,
                    )
                return
            yield step, batch

    def _ran_out_at_start(self) -> None:
        if self.empty_ok and not self.one_shot:
            return
        if self.one_shot:
            raise ValueError(
                f"the {self.what} is a generator that is already exhausted, so this epoch has no batches. "
                "Pass a re-iterable object (a DataLoader, a Dataset, a list of batches) or an infinite generator "
                "with steps_per_epoch."
            )
        raise ValueError(f"the {self.what} yielded no batches")


def eval_batches(
    device: torch.device, data: Any, batch_size: int, steps: int | None, name: str, check_finite: bool
) -> tuple[EpochIterator, int | None]:
    """Batches for validation_data / evaluate: (x, y[, sample_weight]) arrays or a source (F8)."""
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and all(is_array_input(d) for d in data):
        arrays = ArrayData(*data, names=(f"{name}[0]", f"{name}[1]", f"{name}[2]"))
        if check_finite:
            arrays.check_finite()
        batches = ArrayBatches(arrays, batch_size, device=device, shard="eval")
        return EpochIterator(batches, steps, what=name, eval_shard=True), arrays.n
    if isinstance(data, (tuple, list)) and data and is_array_input(data[0]) and len(data) not in (2, 3):
        raise ValueError(
            f"{name} must be (x, y) or (x, y, sample_weight), got a sequence of {len(data)} items"
        )
    if is_array_input(data):
        raise ValueError(f"{name} holds inputs but no targets; pass (x_val, y_val)")
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        data = dataset_loader(data, batch_size, False, None)
    batches = SourceBatches(data, device, shard="eval")
    return EpochIterator(batches, steps, what=name, eval_shard=True), source_samples(data)


def reject_for_source(**given: Any) -> None:
    """F2, F7, F10: what only array input may have."""
    for name, value in given.items():
        if name == "validation_split" and value:
            raise ValueError(
                "validation_split needs array input; for a DataLoader or iterable pass validation_data"
            )
        if name != "validation_split" and value is not None:
            where = (
                "the class weights into per-sample weights"
                if name == "class_weight"
                else f"{name} into each batch"
            )
            raise ValueError(
                f"{name} cannot be given separately when x is a DataLoader, Dataset or iterable (F2); "
                f"put {where}: yield (x, y, sample_weight)"
            )


def source_samples(source: Any) -> int | None:
    """The number of samples behind a DataLoader, when it says."""
    dataset = getattr(source, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


# --- weights ------------------------------------------------------------------------------------
def class_weights_to_sample_weights(y: torch.Tensor, class_weight: dict) -> torch.Tensor:
    """F10: per-sample weights from a {class index: weight} dict (argmax for one-hot y)."""
    try:
        table = {int(k): float(v) for k, v in class_weight.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"class_weight keys must be class indices (int) and values numbers, got {class_weight!r}"
        ) from err
    labels = y
    if labels.dim() > 1 and labels.shape[-1] > 1:
        labels = labels.argmax(-1)
    elif labels.dim() > 1 and labels.shape[-1] == 1:
        labels = labels.squeeze(-1)
    labels = torch.round(labels.float()).long() if labels.is_floating_point() else labels.long()
    size = max(max(table) + 1, int(labels.max()) + 1 if labels.numel() else 0)
    lookup = torch.ones(size)
    for k, v in table.items():
        if k >= 0:
            lookup[k] = v
    return lookup[labels.cpu()].reshape(labels.shape[:1] + labels.shape[1:]).float()
