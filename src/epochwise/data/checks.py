"""The checks every input path shares: fit's training and validation data, evaluate and predict.

Arrays are checked whole, once, before anything runs; a DataLoader or iterable on its first batch. The
targets are checked against the module's first output (the number of classes, the output's shape), so
that part runs on the first batch, after the forward pass and before the first loss. Every error names
the argument and says the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..losses import classes as losses_mod
from .arrays import MappedArray
from .structures import leaves
from .weights import check_weights, class_ids, is_classification_target


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value is finite. A NaN or inf makes the sum non-finite, so a finite sum (one pass,
    no temporary) proves it; only a non-finite sum (a bad value, or an overflow) needs the exact scan."""
    if t.numel() == 0 or bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def check_finite(parts: Iterable[tuple[str, Any]], call: str) -> None:
    """No NaN or inf in any floating leaf of the named parts; ``call`` is the API call, e.g. ``"fit"``."""
    for name, part in parts:
        for leaf in leaves(part):
            if isinstance(leaf, MappedArray) and leaf.dtype.kind != "f":
                continue
            # a memory-mapped leaf is read in chunks, so the file never sits in memory whole
            pieces = leaf.chunks if isinstance(leaf, MappedArray) else lambda leaf=leaf: [leaf]
            if not all(not isinstance(t, torch.Tensor) or not t.is_floating_point() or all_finite(t)
                       for t in pieces()):
                bad = sum(int((~torch.isfinite(t)).sum()) for t in pieces())
                raise ValueError(
                    f"{name} contains {bad} NaN or inf value(s); clean the data (e.g. np.nan_to_num) or pass "
                    f"{call}(..., check_finite=False) to use it anyway"
                )


def check_not_empty(n: int, name: str, role: str) -> None:
    if n == 0:
        raise ValueError(f"{name} holds 0 samples; {role} needs at least one")


def sample_shapes(x: Any) -> list[tuple[int, ...]]:
    """The shape of one sample of each input leaf (the first dimension left out)."""
    return [tuple(leaf.shape[1:]) for leaf in leaves(x) if isinstance(leaf, (torch.Tensor, MappedArray))]


@dataclass
class Targets:
    """Targets to check against the module's first output, and the name the errors give them.

    ``y``: whole target arrays, or a validation source's first batch's targets. For the data the first
    batch comes from, None means that batch's own targets (a DataLoader / iterable). ``x_shapes``: the
    per-sample shapes of the matching inputs (a source's first batch fills them in), so validation targets
    are checked only against an output of inputs shaped alike.
    """

    name: str
    y: Any = None
    x_shapes: list[tuple[int, ...]] | None = None


def first_batch_inspector(name: str, check_finite_values: bool, call: str, record: Targets | None,
                          with_targets: bool = True) -> Callable[[Any, Any, Any], None]:
    """What a source's first batch goes through, before the forward pass: finite values, and the inputs'
    shapes recorded for the target checks."""

    def inspect(x: Any, y: Any, sw: Any) -> None:
        if check_finite_values:
            parts = [(f"the inputs of the first batch of {name}", x)]
            if with_targets:
                parts += [(f"the targets of the first batch of {name}", y),
                          (f"the sample weights of the first batch of {name}", sw)]
            check_finite(parts, call)
        if with_targets and isinstance(sw, torch.Tensor):
            check_weights(f"the sample weights of the first batch of {name}", sw)
        if record is not None:
            record.x_shapes = sample_shapes(x)

    return inspect


def check_output_structure(loss: Any, y_pred: Any) -> None:
    if isinstance(y_pred, (tuple, list, dict)) and not isinstance(
        loss, (losses_mod.LossFunctionWrapper, losses_mod.TorchLoss)
    ):
        raise ValueError(
            f"the module returns {type(y_pred).__name__} of {len(y_pred)} outputs, but loss {loss.name!r} takes "
            "one and y is one array; pass y with one target per output (a list, or a dict by output name) to "
            "apply the loss to each output, compile with a loss per output (loss=[...] or loss={...}), or use "
            "a callable loss that takes the whole structure (y_true, y_pred)"
        )


def check_targets(loss: Any, name: str, y_true: Any, y_pred: Any) -> None:
    """The targets' type, range and shape for the loss (``Loss.validate``), the error prefixed by ``name``."""
    if isinstance(y_true, MappedArray):  # memory-mapped targets: checked chunk by chunk
        for chunk in y_true.chunks():
            check_targets(loss, name, chunk, y_pred)
        return
    if not (isinstance(y_true, torch.Tensor) and isinstance(y_pred, torch.Tensor) and hasattr(loss, "validate")):
        return
    if y_true.ndim and y_pred.ndim and y_true.shape[0] < y_pred.shape[0]:
        y_pred = y_pred[: y_true.shape[0]]  # a user's loss is tried on as many outputs as there are targets
    try:
        with torch.no_grad():
            loss.validate(y_true, y_pred.detach())
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err


def check_logits(model: Any, y_pred: Any, loss: Any = None, decided: bool | None = None) -> None:
    """Outputs that look like probabilities given to a loss that compile decided takes logits (``loss``
    and ``decided``: one output's, for several outputs)."""
    loss = model._loss if loss is None else loss
    decided = model._decided_logits if decided is None else decided
    if not (decided and getattr(loss, "from_logits", False) and isinstance(y_pred, torch.Tensor)):
        return
    binary = isinstance(loss, losses_mod.BinaryCrossentropy) or (
        isinstance(loss, losses_mod.AutoCrossentropy) and (y_pred.ndim <= 1 or y_pred.shape[-1] == 1))
    if binary and y_pred.numel() < 16:
        return  # a few logits that fall in [0, 1] by chance are no evidence (rows summing to 1 are)
    if losses_mod.looks_like_probabilities(y_pred.detach(), loss):
        kind = type(loss).__name__
        raise ValueError(
            "the module's outputs look like probabilities (all in [0, 1]), but compile decided that loss "
            f"{loss.name!r} takes logits ({model._loss_reason}). If forward() applies softmax or sigmoid itself, "
            f"pass a loss object with from_logits=False, e.g. loss=ew.losses.{kind}(from_logits=False); if the "
            f"outputs really are logits, pass ew.losses.{kind}(from_logits=True)"
        )


def first_batch_check(model: Any, reference: Targets | None, others: Iterable[Targets] = ()
                      ) -> Callable[[Any, Any], None]:
    """``check(y, y_pred)`` for the first batch, after the forward pass and before the first loss: the
    output structure, the logits decision, and every target set's type and range for the loss.

    ``reference`` is the data that first batch came from (its own ``y`` when ``reference.y`` is None);
    ``others`` (validation data) are checked against the same output when their inputs have the same
    per-sample shapes (inputs of other shapes, to a module that takes several, give outputs of other shapes).
    """
    others = list(others)

    def check(y: Any, y_pred: Any) -> None:
        if reference is not None and reference.y is None:  # a source's targets: one loss may apply per output
            model._bind_targets(y)
        loss = model._loss
        if hasattr(loss, "check_first_batch"):  # several outputs (losses.outputs): each output's loss and targets
            sets = [] if reference is None else [(reference.name, y if reference.y is None else reference.y)]
            loss.check_first_batch(sets + [(t.name, t.y) for t in others], y_pred, check_targets)
            for name in loss.decided:
                check_logits(model, loss.part(y_pred, name), loss.losses[name], decided=True)
            return
        check_output_structure(loss, y_pred)
        check_logits(model, y_pred)
        if reference is not None:
            y_true = y if reference.y is None else reference.y
            require_targets(reference.name, y_true, y_pred)
            check_targets(loss, reference.name, y_true, y_pred)
        for targets in others:
            require_targets(targets.name, targets.y, y_pred)
            known = reference is not None and reference.x_shapes is not None and targets.x_shapes is not None
            if not known or targets.x_shapes == reference.x_shapes:
                check_targets(loss, targets.name, targets.y, y_pred)

    return check


def require_targets(name: str, y_true: Any, y_pred: Any) -> None:
    """A single output needs targets (a callable loss may take none with several outputs)."""
    if y_true is None and isinstance(y_pred, torch.Tensor):
        raise ValueError(f"{name} holds no targets; yield (x, y) or (x, y, sample_weight) batches")


_CLASS_LOSSES = (losses_mod.BinaryCrossentropy, losses_mod.CategoricalCrossentropy,
                 losses_mod.SparseCategoricalCrossentropy, losses_mod.AutoCrossentropy, losses_mod.Hinge,
                 losses_mod.SquaredHinge, losses_mod.CategoricalHinge)
_TORCH_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.BCELoss, nn.BCEWithLogitsLoss, nn.MultiMarginLoss)


def is_classification_loss(loss: Any) -> bool:
    """A loss whose targets are classes: the crossentropies and hinges, or a torch classification loss."""
    if isinstance(loss, _CLASS_LOSSES):
        return True
    inner = getattr(loss, "loss", None) if isinstance(loss, losses_mod.TorchLoss) else None
    return isinstance(inner, _TORCH_CLASS_LOSSES) or getattr(inner, "__name__", "") in (
        "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits")


def warn_single_class_tail(loss: Any, train_y: Any, tail_y: Any, split: float, n_tail: int) -> None:
    """F7's classic trap: data sorted by label gives a validation_split tail of one class. Warn once, before
    training, when the tail's targets hold a single class, the training part more than one, and a tail of
    that size drawn at random would be all one class with a chance under 1 % (the classes' frequencies in
    all of y), so a small tail that is one class by chance does not warn."""
    if not (is_classification_loss(loss) and is_classification_target(tail_y)):
        return
    tail_classes = torch.unique(class_ids(tail_y)[0])
    if tail_classes.numel() != 1 or not is_classification_target(train_y):
        return
    train_ids = class_ids(train_y)[0]
    train_classes = torch.unique(train_ids)
    if train_classes.numel() < 2:
        return
    _, counts = torch.unique(torch.cat([train_ids.reshape(-1), class_ids(tail_y)[0].reshape(-1)]), return_counts=True)
    frequencies = counts.double() / counts.sum()
    if float((frequencies ** tail_y.shape[0]).sum()) >= 0.01:
        return
    warnings.warn(
        f"validation_split={split:g} takes the last {n_tail} samples in their order, and here they are all class "
        f"{int(tail_classes[0])} (the training part holds {train_classes.numel()} classes): the data looks "
        "sorted by label, so validation measures that class alone. Shuffle the data before fit, e.g. "
        "x, y = sklearn.utils.shuffle(x, y, random_state=0), or p = np.random.permutation(len(x)); "
        "x, y = x[p], y[p]",
        UserWarning,
        stacklevel=5,
    )


_DTYPE_CLASH = ("same dtype", "should be the same", "expected scalar type", "must have the type")


def check_input_dtypes(module: nn.Module, x: Any, name: str) -> None:
    """Integer inputs (uint8 pixels, say) to a module whose layers take floats: torch's "mat1 and mat2 must
    have the same dtype" becomes, before any step, an error naming ``name``, its dtype and the conversion.
    ``x`` is a few rows on the module's device. Only with an integer leaf, and decided by a forward pass of
    those rows in eval mode without gradients: a module that takes integers (an embedding) passes. No
    conversion is ever made."""
    ints = [t for t in leaves(x) if isinstance(t, torch.Tensor) and not t.is_floating_point()
            and not t.is_complex() and t.dtype != torch.bool]
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    if not ints or param is None or isinstance(param, nn.parameter.UninitializedParameter) or distributed.is_sharded(
            module):
        return
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if isinstance(x, dict):
                module(**x)
            else:
                module(*x) if isinstance(x, (tuple, list)) else module(x)
    except RuntimeError as err:
        if not any(clash in str(err) for clash in _DTYPE_CLASH):
            return  # another problem: the first step raises it as it is
        have, want = (str(t).replace("torch.", "") for t in (ints[0].dtype, param.dtype))
        scale = " / 255" if ints[0].dtype == torch.uint8 else ""
        raise ValueError(
            f"{name} is {have}, but the module's first layer expects {want} (torch: {str(err).splitlines()[0]}); "
            f"convert it first, e.g. {name} = {name}.astype(\"{want}\"){scale}"
            + (" for 0-255 pixel values" if scale else "")
        ) from err
    finally:
        module.train(was_training)
