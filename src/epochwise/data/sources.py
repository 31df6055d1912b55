"""Datasets, DataLoaders and iterables of batches."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from .. import distributed
from .structures import Batch, to_device


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
    (``shard="train"``: padded, shuffled like the original; ``"eval"``: disjoint, in order). ``inspect(x, y,
    sw)`` runs once, on the first batch ever yielded (the checks of :mod:`.checks`).
    """

    def __init__(self, source: Any, device: torch.device, shard: str | None = None, seed: int = 0,
                 inspect: Callable[[Any, Any, Any], None] | None = None) -> None:
        if shard is not None and distributed.is_distributed():
            source = _sharded_loader(source, shard, seed)
        self.source, self.device = source, device
        self.pin = device.type == "cuda"
        self.inspect = inspect
        self._head: list[Any] = []  # a one-shot iterator's batch read by peek(), yielded first

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Batch]:
        source = itertools.chain(self._head, self.source) if self._head else self.source
        self._head = []
        for batch in source:
            x, y, sw = self._move(batch)
            if self.inspect is not None:
                inspect, self.inspect = self.inspect, None
                inspect(x, y, sw)
            yield x, y, sw

    def _move(self, batch: Any) -> Batch:
        x, y, sw = unpack_batch(batch)
        return to_device(x, self.device, self.pin), to_device(y, self.device, self.pin), to_device(sw, self.device, self.pin)

    def peek(self) -> Batch | None:
        """The first batch (None when there is none), read ahead without changing what the passes yield.

        A one-shot iterator keeps the batch for its first pass; a re-iterable source is read from the
        start once more, with the random states its order may draw from put back afterwards.
        """
        if isinstance(self.source, Iterator):
            batch = next(self.source, _END)
            if batch is _END:
                return None
            self._head = [batch]
            return self._move(batch)
        generators = _generators(self.source)
        states = [g.get_state() for g in generators]
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                it = iter(self.source)
                batch = next(it, _END)
                del it
        finally:
            for g, state in zip(generators, states):
                g.set_state(state)
            random.setstate(py_state)
            np.random.set_state(np_state)
        return None if batch is _END else self._move(batch)


_END = object()


def _generators(source: Any) -> list[torch.Generator]:
    """The torch generators a DataLoader's order draws from (its own, its samplers')."""
    found = []
    for owner in (source, getattr(source, "sampler", None), getattr(getattr(source, "batch_sampler", None), "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


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


