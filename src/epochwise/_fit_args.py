"""fit's arguments: every check that can fail before training, and the data they describe."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from . import _data


class _DefaultTrue:
    """The default of ``shuffle``: true, but distinguishable from a ``True`` the user passed (§14, F9)."""

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "True"


SHUFFLE_DEFAULT: Any = _DefaultTrue()


def positive_int(value: Any, name: str, *, allow_none: bool = True, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {bound}{' or None' if allow_none else ''}, got {value!r}")


def check_validation_freq(freq: Any) -> None:
    if isinstance(freq, bool) or not (
        (isinstance(freq, int) and freq > 0)
        or (
            isinstance(freq, list)
            and freq
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in freq)
        )
    ):
        raise ValueError(  # F16, raised up front rather than at the first epoch end
            f"validation_freq must be a positive int (validate every k epochs) or a list of 1-based epoch "
            f"numbers, got {freq!r}"
        )


def plain_shuffle(shuffle: Any) -> bool | str:
    return True if isinstance(shuffle, _DefaultTrue) else shuffle


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
    if (
        isinstance(validation_split, bool)
        or not isinstance(validation_split, (int, float))
        or not (validation_split == 0 or 0 < validation_split < 1)
    ):
        raise ValueError(
            f"validation_split must be a fraction strictly between 0 and 1, got {validation_split!r}"
        )
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
    full_y: Any
    n_train: int | None
    n_val: int | None


def prepare_training(model: Any, *, x: Any, y: Any, sample_weight: Any, class_weight: Any, batch_size: Any,
                     shuffle: Any, validation_split: Any, validation_data: Any, validation_batch_size: Any,
                     validation_steps: Any, steps_per_epoch: Any, seed: Any, check_finite: bool) -> TrainingData:
    """Arrays or a source -> this fit's batches (F1-F3, F7-F11, F13-F15), validation batches included."""
    generator = model._generator(seed)
    array_input = _data.is_array_input(x)
    n_val = None
    if array_input:
        if y is None:
            raise ValueError("fit() got x as arrays but no y; pass the targets as y=...")
        train = _data.ArrayData(x, y, sample_weight)
        val_arrays = None
        if validation_split and validation_data is None:
            train, val_arrays = train.split_tail(float(validation_split))
        if class_weight is not None:
            if isinstance(train.y, (tuple, list, dict)):
                raise ValueError(
                    "class_weight works with a single target array; use sample_weight for several outputs"
                )
            train.sample_weight = _data.class_weights_to_sample_weights(train.y, class_weight)
        if check_finite:
            train.check_finite()
        bs = batch_size or (math.ceil(train.n / steps_per_epoch) if steps_per_epoch else 32)  # F3
        batches = _data.ArrayBatches(
            train, bs, shuffle=plain_shuffle(shuffle), generator=generator, device=model.device, shard="train"
        )
        full_y = train.y
        n_train = train.n
    else:
        _data.reject_for_source(
            y=y, sample_weight=sample_weight, class_weight=class_weight, validation_split=validation_split
        )
        if isinstance(x, torch.utils.data.Dataset) and not isinstance(
            x, torch.utils.data.IterableDataset
        ):
            bs = batch_size or 32
            x = _data.dataset_loader(x, bs, bool(shuffle), generator)
        elif shuffle is True and not isinstance(shuffle, _DefaultTrue):  # §14: warn only when asked
            warnings.warn(
                "shuffle=True is ignored for a DataLoader or iterable: shuffle inside it instead "
                "(DataLoader(..., shuffle=True))",
                UserWarning,
                stacklevel=2,
            )
        batches = _data.SourceBatches(x, model.device, shard="train", seed=model._data_seed)
        bs, full_y, n_train = getattr(x, "batch_size", None), None, _data.source_samples(x)
        val_arrays = None
    train_iter = _data.EpochIterator(batches, steps_per_epoch)

    val_iter = None
    if validation_data is not None:
        val_iter, n_val = _data.eval_batches(
            model.device,
            validation_data,
            validation_batch_size or batch_size or 32,
            validation_steps,
            "validation_data",
            check_finite,
        )
    elif val_arrays is not None:
        n_val = val_arrays.n
        val_iter = _data.EpochIterator(
            _data.ArrayBatches(val_arrays, validation_batch_size or bs or 32, device=model.device, shard="eval"),
            validation_steps,
            what="validation data",
            eval_shard=True,
        )
    return TrainingData(train_iter, val_iter, bs, full_y, n_train, n_val)
