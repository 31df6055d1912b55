"""fit's arguments: every check that can fail before training, and the data they describe."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .. import data as _data
from ..distributed import core as distributed
from ..losses import classes as losses_mod


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
    generator: torch.Generator | None = None
    data_seed: int = 0
    check_first: Callable[[Any, Any], None] | None = None


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
        model, x=x, y=y, sample_weight=sample_weight, class_weight=class_weight, batch_size=batch_size,
        shuffle=shuffle, validation_split=validation_split, validation_data=validation_data,
        validation_batch_size=validation_batch_size, validation_steps=validation_steps,
        steps_per_epoch=steps_per_epoch, seed=seed, check_finite=check_finite)
    data.check_first = first_batch_check(model, data.full_y)
    return data


def prepare_evaluate(model: Any, *, x: Any, y: Any, batch_size: Any, sample_weight: Any, steps: Any,
                     check_finite: bool = True) -> EvalData:
    positive_int(batch_size, "batch_size")
    positive_int(steps, "steps")
    if x is None:
        raise ValueError(
            "evaluate() needs data: x and y, a Dataset, a DataLoader or an iterable of batches"
        )
    data = (x, y) if sample_weight is None else (x, y, sample_weight)
    if not _data.is_array_input(x):
        _data.reject_for_source(y=y, sample_weight=sample_weight)
        data = x
    elif y is None:
        raise ValueError("evaluate() got x as arrays but no y; pass the targets as y=...")
    batches, n = _data.eval_batches(model.device, data, batch_size or 32, steps, "x", check_finite)
    return EvalData(batches, n)


def prepare_predict(model: Any, *, x: Any, batch_size: Any, steps: Any, check_finite: bool = True) -> EvalData:
    positive_int(batch_size, "batch_size")
    positive_int(steps, "steps")
    if _data.is_array_input(x):
        arrays = _data.ArrayData(x)
        batches = _data.ArrayBatches(arrays, batch_size or 32, device=model.device, shard="eval")
        n = arrays.n
    elif isinstance(x, torch.utils.data.Dataset) and not isinstance(x, torch.utils.data.IterableDataset):
        loader = _data.dataset_loader(x, batch_size or 32, False, None)
        batches, n = _data.SourceBatches(loader, model.device, shard="eval"), len(x)
    else:
        batches, n = _data.SourceBatches(x, model.device, shard="eval"), None
    return EvalData(_data.EpochIterator(batches, steps, what="predict input", eval_shard=True), n)


def first_batch_check(model: Any, full_y: Any) -> Callable[[Any, Any], None]:
    """Checks on the first batch's outputs, before the first update: the output structure, the targets'
    type and range for the loss, and the logits decision."""
    loss_fn = model._loss

    def check(y: Any, y_pred: Any) -> None:
        targets = full_y if full_y is not None else y
        if isinstance(y_pred, (tuple, list, dict)) and not isinstance(
            loss_fn, (losses_mod.LossFunctionWrapper, losses_mod.TorchLoss)
        ):
            raise ValueError(
                f"the module returns {type(y_pred).__name__} of {len(y_pred)} outputs, but loss "
                f"{loss_fn.name!r} takes one; return a single tensor or compile with a callable loss "
                "that takes (y_true, y_pred)"
            )
        if isinstance(targets, torch.Tensor) and isinstance(y_pred, torch.Tensor) and hasattr(loss_fn, "validate"):
            with torch.no_grad():
                loss_fn.validate(targets, y_pred.detach())
        if (
            model._decided_logits
            and loss_fn.from_logits
            and isinstance(y_pred, torch.Tensor)
            and losses_mod.looks_like_probabilities(y_pred.detach(), loss_fn)
        ):
            warnings.warn(
                "the module's outputs look like probabilities, but the loss treats them as logits because "
                f"the module does not end in Softmax/Sigmoid ({model._loss_reason}). If the model applies "
                "softmax itself, pass a loss object with from_logits=False.",
                UserWarning,
                stacklevel=4,
            )

    return check


def prepare_training(model: Any, *, x: Any, y: Any, sample_weight: Any, class_weight: Any, batch_size: Any,
                     shuffle: Any, validation_split: Any, validation_data: Any, validation_batch_size: Any,
                     validation_steps: Any, steps_per_epoch: Any, seed: Any, check_finite: bool) -> TrainingData:
    """Arrays or a source -> this fit's batches (F1-F3, F7-F11, F13-F15), validation batches included."""
    generator, data_seed = data_generator(model, seed)
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
        batches = _data.SourceBatches(x, model.device, shard="train", seed=data_seed)
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
    return TrainingData(train_iter, val_iter, bs, full_y, n_train, n_val, generator, data_seed)
