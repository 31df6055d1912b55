"""One preparation for every input path: fit's training and validation data, evaluate and predict.

Arrays become an :class:`ArrayData`, checked whole; anything else a :class:`SourceBatches`, checked on
its first batch. Both come back as an :class:`EpochIterator`, with the number of samples and the
targets to check against the module's first output (see :mod:`.checks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import distributed
from . import checks
from .arrays import ArrayBatches, ArrayData
from .epochs import EpochIterator
from .sources import SourceBatches, dataset_loader, source_samples
from .structures import PACKED_TARGETS, PACKED_WEIGHTS, is_array_input, is_packed, to_tensor
from .weights import check_weights


@dataclass
class Prepared:
    """One input path's batches, its number of samples (None when unknown) and its targets to check."""

    batches: EpochIterator
    n: int | None
    targets: checks.Targets | None  # None: nothing to check (predict, or no batch on this process)
    batch_size: int | None


def _epochs(batches: Any, steps: int | None, what: str, shard: str, steps_name: str) -> EpochIterator:
    train = shard == "train"
    return EpochIterator(batches, steps, what=what, eval_shard=not train, carry_over=train, steps_name=steps_name)


def is_map_dataset(obj: Any) -> bool:
    return isinstance(obj, torch.utils.data.Dataset) and not isinstance(obj, torch.utils.data.IterableDataset)


class OutputWeightBatches(ArrayBatches):
    """Batches of arrays whose sample weights are given per output: ArrayData holds them inside y (see
    :func:`array_data`) and each batch hands them back as the third part, in their structure."""

    def _batches(self, order: torch.Tensor, first: int) -> Any:
        for x, y, _ in super()._batches(order, first):
            yield x, y[PACKED_TARGETS], y[PACKED_WEIGHTS]


def array_data(x: Any, y: Any, sample_weight: Any, loss: Any = None,
               names: tuple[str, str, str] = ("x", "y", "sample_weight")) -> ArrayData:
    """x / y / sample_weight arrays as an :class:`ArrayData`; for a model with several outputs (``loss``
    an ``OutputLosses``) y must hold one target per output, and sample_weight may hold one array per
    output (the same structure) or be one array for every output (F11)."""
    if loss is None or not hasattr(loss, "check_structure"):
        return ArrayData(x, y, sample_weight, names=names)
    structure = "a list in output order, or a dict {output name: array}"
    if y is not None:
        loss.check_structure(y, names[1], f"pass one target array per output: {structure}")
    if sample_weight is None or not isinstance(sample_weight, (tuple, list, dict)):
        return ArrayData(x, y, sample_weight, names=names)
    loss.check_structure(sample_weight, names[2], f"pass one weight array per output ({structure}), or one "
                         "array of shape (n,) for every output", complete=False)
    weights = type(sample_weight)(
        {k: _weights(v, f"{names[2]}[{k!r}]") for k, v in sample_weight.items()} if isinstance(sample_weight, dict)
        else [_weights(v, f"{names[2]}[{i}]") for i, v in enumerate(sample_weight)])
    return ArrayData(x, {PACKED_TARGETS: y, PACKED_WEIGHTS: weights}, None,
                     names=(names[0], f"{names[1]} / {names[2]}", names[2]))


def _weights(value: Any, name: str) -> torch.Tensor | None:
    if value is None:
        return None
    weights = to_tensor(value, name).float()
    check_weights(name, weights)
    return weights


def unpacked_targets(arrays: ArrayData) -> Any:
    """The targets of arrays made by :func:`array_data` (without per-output weights packed in)."""
    return arrays.y[PACKED_TARGETS] if is_packed(arrays.y) else arrays.y


def from_arrays(device: torch.device, arrays: ArrayData, *, batch_size: int, steps: int | None, shard: str,
                what: str, call: str, check_finite: bool, fix: str = "pass at least one", steps_name: str = "steps",
                shuffle: bool | str = False, generator: torch.Generator | None = None,
                with_targets: bool = True) -> Prepared:
    """Checked arrays -> batches gathered by index. ``shard``: ``"train"`` (under torchrun, padded shards;
    with ``steps`` the batches carry over between epochs, F13) or ``"eval"`` (disjoint shards; every pass
    starts at the beginning, F14)."""
    if check_finite:
        checks.check_finite(arrays.parts(), call)
    if arrays.n == 0:
        raise ValueError(f"{arrays.names[0]} holds 0 samples; {fix}")
    kind = OutputWeightBatches if is_packed(arrays.y) else ArrayBatches
    batches = kind(arrays, batch_size, shuffle=shuffle, generator=generator, device=device, shard=shard)
    y_name = arrays.names[1].split(" / ")[0] if is_packed(arrays.y) else arrays.names[1]
    targets = checks.Targets(y_name, unpacked_targets(arrays), checks.sample_shapes(arrays.x)) if with_targets else None
    return Prepared(_epochs(batches, steps, what, shard, steps_name), arrays.n, targets, batch_size)


def from_source(device: torch.device, source: Any, *, name: str, batch_size: int, steps: int | None, shard: str,
                what: str, call: str, check_finite: bool, fix: str = "pass at least one", steps_name: str = "steps",
                shuffle: bool = False, generator: torch.Generator | None = None, seed: int = 0,
                peek: bool = False, with_targets: bool = True) -> Prepared:
    """A Dataset (batched here with ``batch_size``), a DataLoader or an iterable of batches.

    Its first batch is checked when it comes, before its forward pass; with ``peek`` (validation data,
    which runs only after an epoch) it is read ahead now, and its targets are kept for the target check.
    """
    if is_map_dataset(source):
        source = dataset_loader(source, batch_size, shuffle, generator)
    n, size = source_samples(source), getattr(source, "batch_size", None)
    if not peek:
        record = checks.Targets(f"the first batch of {name}") if with_targets else None
        inspect = checks.first_batch_inspector(name, check_finite, call, record, with_targets)
        batches = SourceBatches(source, device, shard=shard, seed=seed, inspect=inspect)
        return Prepared(_epochs(batches, steps, what, shard, steps_name), n, record, size)
    batches = SourceBatches(source, device, shard=shard, seed=seed)
    first = batches.peek()
    targets = None
    if first is not None:
        x, y, sw = first
        checks.first_batch_inspector(name, check_finite, call, None, with_targets)(x, y, sw)
        targets = checks.Targets(f"the first batch of {name}", y, checks.sample_shapes(x))
    elif not distributed.is_distributed():  # under torchrun this process's shard alone may be empty
        raise ValueError(f"{name} yielded no batches; {fix}")
    return Prepared(_epochs(batches, steps, what, shard, steps_name), n, targets, size)


def is_batch_list(data: Any) -> bool:
    """A list whose items are all tuples or lists is a list of batches, not (x, y) arrays."""
    return isinstance(data, list) and all(isinstance(d, (tuple, list)) for d in data)


def is_array_tuple(data: Any) -> bool:
    """(x, y) or (x, y, sample_weight) of arrays."""
    return (isinstance(data, (tuple, list)) and not is_batch_list(data) and len(data) in (2, 3)
            and all(is_array_input(d) for d in data))


def eval_input(device: torch.device, data: Any, *, name: str, batch_size: int, steps: int | None, what: str,
               call: str, check_finite: bool, names: tuple[str, str, str] | None = None,
               fix: str = "pass at least one", steps_name: str = "steps", peek: bool = False,
               loss: Any = None) -> Prepared:
    """validation_data / evaluate's data: (x, y[, sample_weight]) arrays or a source (F8). ``loss``: the
    model's loss, which says whether the targets must hold one entry per output."""
    if is_array_tuple(data):
        names = names or (f"{name}[0]", f"{name}[1]", f"{name}[2]")
        arrays = array_data(*data, *([None] if len(data) == 2 else []), loss=loss, names=names)
        return from_arrays(device, arrays, batch_size=batch_size, steps=steps, shard="eval", what=what, call=call,
                           check_finite=check_finite, fix=fix, steps_name=steps_name)
    if isinstance(data, (tuple, list)) and data and not is_batch_list(data) and is_array_input(data[0]):
        if len(data) not in (2, 3):
            raise ValueError(f"{name} must be (x, y) or (x, y, sample_weight), got a sequence of {len(data)} items")
    if is_array_input(data):
        raise ValueError(f"{name} holds inputs but no targets; pass (x_val, y_val)")
    return from_source(device, data, name=name, batch_size=batch_size, steps=steps, shard="eval", what=what,
                       call=call, check_finite=check_finite, fix=fix, steps_name=steps_name, peek=peek)
