"""fit's arguments: every check that can fail before training, and the data they describe."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import torch

from .. import data as _data
from .. import distributed
from ..data.arrays import in_memory
from ..data.checks import check_input_dtypes
from ..data.inputs import array_data
from ..text import check_int, is_int


class _DefaultTrue:
    """The default of ``shuffle``: true, but distinguishable from a ``True`` the user passed (§14, F9)."""

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "True"


SHUFFLE_DEFAULT: Any = _DefaultTrue()


def positive_int(value: Any, name: str, *, allow_none: bool = True, minimum: int = 1) -> int | None:
    """``value`` as a Python int (NumPy integers too, as Keras takes them), or None when allowed."""
    return check_int(value, name, minimum=minimum, allow_none=allow_none)


def check_validation_freq(freq: Any) -> int | list[int]:
    """F16: a positive int or a non-empty list of positive ints (NumPy integers too), as Python ints."""
    if is_int(freq):
        return int(freq)
    if isinstance(freq, list) and freq and all(is_int(v) for v in freq):
        return [int(v) for v in freq]
    raise ValueError(  # F16, raised up front rather than at the first epoch end
        f"validation_freq must be a positive int (validate every k epochs) or a list of 1-based epoch "
        f"numbers, got {freq!r}"
    )


def check_validation_split(split: Any) -> float:
    """F7: 0, or a fraction strictly between 0 and 1 (a NumPy float too), as a Python float."""
    if isinstance(split, bool) or not isinstance(split, Real) or not (split == 0 or 0 < split < 1):
        raise ValueError(
            f"validation_split must be 0 or a fraction strictly between 0 and 1, got {split!r}"
        )
    return float(split)


def plain_shuffle(shuffle: Any) -> bool | str:
    """The default and NumPy bools as Python bools; ``"batch"`` as it is."""
    return shuffle if isinstance(shuffle, str) else bool(shuffle)


def check_fit_args(*, x: Any, batch_size: Any, epochs: Any, initial_epoch: Any, steps_per_epoch: Any,
                   validation_steps: Any, validation_batch_size: Any, validation_freq: Any, shuffle: Any,
                   validation_split: Any, class_weight: Any, sample_weight: Any) -> None:
    """Every fit argument that can be wrong, checked before anything else happens."""
    positive_int(batch_size, "batch_size")
    positive_int(epochs, "epochs", allow_none=False, minimum=0)
    positive_int(initial_epoch, "initial_epoch", allow_none=False, minimum=0)
    positive_int(steps_per_epoch, "steps_per_epoch")
    positive_int(validation_steps, "validation_steps")
    positive_int(validation_batch_size, "validation_batch_size")
    check_validation_freq(validation_freq)
    if shuffle not in (True, False, "batch") and not isinstance(shuffle, _DefaultTrue):
        raise ValueError(f"shuffle must be True, False or 'batch', got {shuffle!r}")
    check_validation_split(validation_split)
    if class_weight is not None and sample_weight is not None:
        raise ValueError(
            "pass class_weight or sample_weight, not both: fold the class weights into sample_weight"
        )
    if class_weight is not None and not isinstance(class_weight, dict):
        raise ValueError(
            f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}"
        )
    if x is None:
        raise ValueError(
            "fit() needs training data: x (and y), a Dataset, a DataLoader or an iterable of batches"
        )


@dataclass
class TrainingData:
    train: _data.EpochIterator
    val: _data.EpochIterator | None
    batch_size: int | None
    n_train: int | None
    n_val: int | None
    generator: torch.Generator | None = None
    data_seed: int = 0
    check_first: Callable[[Any, Any], None] | None = None
    epochs: int = 1  # the checked loop arguments as Python ints (NumPy integers are accepted)
    initial_epoch: int = 0
    validation_freq: int | list[int] = 1
    storage: list[str] = field(default_factory=list)  # the run plan's lines on memory-mapped inputs


def check_dtypes(model: Any, batches: _data.EpochIterator) -> None:
    """Integer array x into a module that takes floats: a clear error before any step (not torch's)."""
    head = batches.head(2)
    if head is not None:
        check_input_dtypes(model.module, _data.to_device(head, model.device), "x")


@dataclass
class EvalData:
    batches: _data.EpochIterator
    n: int | None
    check_first: Callable[[Any, Any], None] | None = None


def data_generator(model: Any, seed: int | None) -> tuple[torch.Generator, int]:
    """The generator of this fit's data order, and its seed.

    Without a seed, one is drawn from torch's global RNG so ``torch.manual_seed`` still fixes the order;
    under torchrun every rank takes rank 0's, so the shards of each epoch's order never overlap.
    """
    chosen = seed if seed is not None else model.seed
    if chosen is not None:  # a NumPy integer too; torch's generator takes only Python ints
        if isinstance(chosen, bool) or not isinstance(chosen, Integral):
            raise ValueError(f"seed must be an integer or None, got {chosen!r}")
        chosen = int(chosen)
    if chosen is None:
        chosen = int(torch.randint(0, 2**62, (1,)).item())
    chosen = distributed.broadcast_int(chosen)
    gen = torch.Generator()
    gen.manual_seed(chosen)
    return gen, chosen


def prepare_fit(model: Any, *, x: Any, y: Any, batch_size: Any, epochs: Any, validation_split: Any,
                validation_data: Any, shuffle: Any, class_weight: Any, sample_weight: Any, initial_epoch: Any,
                steps_per_epoch: Any, validation_steps: Any, validation_batch_size: Any, validation_freq: Any,
                seed: Any, check_finite: bool) -> TrainingData:
    """Every fit argument checked, and this fit's batches (validation included), before the first step."""
    check_fit_args(
        x=x, batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
        validation_steps=validation_steps, validation_batch_size=validation_batch_size,
        validation_freq=validation_freq, shuffle=shuffle, validation_split=validation_split,
        class_weight=class_weight, sample_weight=sample_weight)
    data = prepare_training(
        model, x=x, y=y, sample_weight=sample_weight, class_weight=class_weight,
        batch_size=positive_int(batch_size, "batch_size"), shuffle=shuffle,
        validation_split=check_validation_split(validation_split), validation_data=validation_data,
        validation_batch_size=positive_int(validation_batch_size, "validation_batch_size"),
        validation_steps=positive_int(validation_steps, "validation_steps"),
        steps_per_epoch=positive_int(steps_per_epoch, "steps_per_epoch"), seed=seed, check_finite=check_finite)
    data.epochs = positive_int(epochs, "epochs", allow_none=False, minimum=0)
    data.initial_epoch = positive_int(initial_epoch, "initial_epoch", allow_none=False, minimum=0)
    data.validation_freq = check_validation_freq(validation_freq)
    return data


def prepare_evaluate(model: Any, *, x: Any, y: Any, batch_size: Any, sample_weight: Any, steps: Any,
                     check_finite: bool = True) -> EvalData:
    """evaluate's batches, checked like fit's: finite values, and the targets on the first output."""
    batch_size, steps = positive_int(batch_size, "batch_size"), positive_int(steps, "steps")
    if x is None:
        raise ValueError("evaluate() needs data: x and y, a Dataset, a DataLoader or an iterable of batches")
    data = (x, y) if sample_weight is None else (x, y, sample_weight)
    if not _data.is_array_input(x):
        _data.reject_for_source(y=y, sample_weight=sample_weight)
        data = x
    elif y is None:
        raise ValueError("evaluate() got x as arrays but no y; pass the targets as y=...")
    else:
        model._bind_targets(y)  # one loss, one target per output: the loss applies to each output
    prepared = _data.eval_input(model.device, data, name="x", names=("x", "y", "sample_weight"),
                                batch_size=batch_size or 32, steps=steps, what="evaluation data", call="evaluate",
                                check_finite=check_finite, loss=model._loss)
    check_dtypes(model, prepared.batches)
    return EvalData(prepared.batches, prepared.n, _data.first_batch_check(model, prepared.targets))


def prepare_predict(model: Any, *, x: Any, batch_size: Any, steps: Any, check_finite: bool = True) -> EvalData:
    """predict's batches: the inputs checked like fit's (finite values, equal lengths)."""
    batch_size, steps = positive_int(batch_size, "batch_size"), positive_int(steps, "steps")
    if x is None:
        raise ValueError("predict() needs inputs: x, a Dataset, a DataLoader or an iterable of batches")
    common = {"batch_size": batch_size or 32, "steps": steps, "shard": "eval", "what": "predict input",
              "call": "predict", "check_finite": check_finite, "with_targets": False}
    if _data.is_array_input(x):
        prepared = _data.from_arrays(model.device, _data.ArrayData(x), **common)
    else:
        prepared = _data.from_source(model.device, x, name="x", **common)
    check_dtypes(model, prepared.batches)
    return EvalData(prepared.batches, prepared.n)


def prepare_training(model: Any, *, x: Any, y: Any, sample_weight: Any, class_weight: Any, batch_size: Any,
                     shuffle: Any, validation_split: Any, validation_data: Any, validation_batch_size: Any,
                     validation_steps: Any, steps_per_epoch: Any, seed: Any, check_finite: bool) -> TrainingData:
    """Arrays or a source -> this fit's batches (F1-F3, F7-F11, F13-F15), validation batches included, all
    checked (see data.checks); ``check_first`` checks every target set on the first batch's output."""
    generator, data_seed = data_generator(model, seed)
    device = model.device
    val = None
    if _data.is_array_input(x):
        if y is None:
            raise ValueError("fit() got x as arrays but no y; pass the targets as y=...")
        model._bind_targets(y)  # one loss, one target per output: the loss applies to each output
        arrays = array_data(x, y, sample_weight, model._loss)
        tail = None
        if validation_split and validation_data is None:
            arrays, tail = arrays.split_tail(float(validation_split))
        if check_finite:  # before class_weight reads the labels
            _data.check_finite(arrays.parts() + (tail.parts() if tail is not None else []), "fit")
        if tail is not None and isinstance(arrays.y, torch.Tensor):
            _data.warn_single_class_tail(model._loss, arrays.y, tail.y, validation_split, tail.n)
        if class_weight is not None:
            if isinstance(arrays.y, (tuple, list, dict)):
                raise ValueError(
                    "class_weight is only supported for a model with a single output (as in Keras); weight each "
                    "output's samples with sample_weight=[w_0, w_1, ...] or a dict {output name: weights}"
                )
            every_y = [arrays.y] if tail is None else [arrays.y, tail.y]  # the classes of all of y
            every_y = [in_memory(part) for part in every_y]  # memory-mapped labels are read whole here
            arrays.sample_weight = _data.class_weights_to_sample_weights(every_y[0], class_weight, every_y)
        bs = batch_size or (math.ceil(arrays.n / steps_per_epoch) if steps_per_epoch else 32)  # F3
        train = _data.from_arrays(device, arrays, batch_size=bs, steps=steps_per_epoch, shard="train",
                                  what="training data", call="fit", check_finite=False, steps_name="steps_per_epoch",
                                  shuffle=plain_shuffle(shuffle), generator=generator)
        if tail is not None:
            val = _data.from_arrays(device, tail, batch_size=validation_batch_size or bs, steps=validation_steps,
                                    shard="eval", what="validation data", call="fit", check_finite=False,
                                    steps_name="validation_steps")
    else:
        _data.reject_for_source(
            y=y, sample_weight=sample_weight, class_weight=class_weight, validation_split=validation_split
        )
        if not _data.is_map_dataset(x) and shuffle is True and not isinstance(shuffle, _DefaultTrue):
            warnings.warn(  # §14: warn only when asked
                "shuffle=True is ignored for a DataLoader or iterable: shuffle inside it instead "
                "(DataLoader(..., shuffle=True))",
                UserWarning,
                stacklevel=4,
            )
        train = _data.from_source(device, x, name="x", batch_size=batch_size or 32, steps=steps_per_epoch,
                                  shard="train", what="training data", call="fit", check_finite=check_finite,
                                  steps_name="steps_per_epoch",
                                  shuffle=bool(shuffle), generator=generator, seed=data_seed)
    if validation_data is not None:
        val = _data.eval_input(device, validation_data, name="validation_data",
                               batch_size=validation_batch_size or batch_size or 32, steps=validation_steps,
                               what="validation_data", call="fit", check_finite=check_finite, peek=True,
                               steps_name="validation_steps", loss=model._loss,
                               fix="pass validation data with at least one sample, or leave validation_data out")
    others = [val.targets] if val is not None and val.targets is not None else []
    check = _data.first_batch_check(model, train.targets, others)
    check_dtypes(model, train.batches)
    storage = train.batches.describe() + (val.batches.describe() if validation_data is not None and val else [])
    return TrainingData(train.batches, val.batches if val is not None else None, train.batch_size, train.n,
                        val.n if val is not None else None, generator, data_seed, check, storage=storage)
