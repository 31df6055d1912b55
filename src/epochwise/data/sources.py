"""Datasets, DataLoaders and iterables of batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..distributed import core as distributed
from .arrays import ArrayBatches, ArrayData
from .epochs import EpochIterator
from .structures import Batch, is_array_input, to_device


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


