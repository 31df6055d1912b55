"""The machinery behind `epochwise.losses` (rules LO1-LO8 of docs/behaviour.md): the `Loss` base class with LO1 rank
alignment and the LO2-LO4 reductions, the LO6/LO7 formulas, the checks run by `Loss.validate`, and
`infer_from_logits`.

Every loss formula takes float32 tensors already rank-aligned by `align_ranks` and returns one value
per sample (per sample and timestep for sequences): the last axis is reduced. They stay on the
tensors' device, never synchronise (no `.item()`), and are differentiable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..text import snake_case

EPSILON = 1e-7
REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none", None)


def align_ranks(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LO1 step 2: make the ranks agree when they differ by one and the larger has a trailing 1.

    The lower-rank tensor is expanded when it is rank 1, otherwise the size-1 axis is squeezed, so
    `y` of shape `(n,)` against `p` of shape `(n, 1)` gives `(n, 1)` and `(n, 1)`, never `(n, n)`.
    """
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        if b.ndim == 1:
            b = b.unsqueeze(-1)
        else:
            a = a.squeeze(-1)
    elif b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        if a.ndim == 1:
            a = a.unsqueeze(-1)
        else:
            b = b.squeeze(-1)
    return a, b


def check_reduction(reduction: str | None) -> str | None:
    """Return `reduction` if LO2 knows it, else raise ValueError listing the valid values."""
    if reduction not in REDUCTIONS:
        valid = ", ".join(repr(r) for r in REDUCTIONS)
        raise ValueError(f"Invalid reduction={reduction!r}. Use one of {valid}.")
    return reduction


def div_no_nan(total: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """total / divisor, and 0 where divisor is 0 (Keras's ``divide_no_nan``: no NaN in the value or its
    gradient); on the device, no host sync."""
    zero = divisor == 0
    return torch.where(
        zero, torch.zeros_like(total), total / torch.where(zero, torch.ones_like(divisor), divisor)
    )


def _weights_for(values: torch.Tensor, weight) -> tuple[torch.Tensor, torch.Tensor]:
    """LO1 step 4: rank-align `weight` with `values`, add trailing axes, check it broadcasts."""
    weight = torch.as_tensor(weight, dtype=values.dtype, device=values.device)
    values, weight = align_ranks(values, weight)
    if 0 < weight.ndim < values.ndim:  # per-sample weights for per-timestep losses
        weight = weight.reshape(tuple(weight.shape) + (1,) * (values.ndim - weight.ndim))
    try:
        fits = torch.broadcast_shapes(weight.shape, values.shape) == values.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"sample_weight of shape {tuple(weight.shape)} does not fit the per-sample loss of shape "
            f"{tuple(values.shape)}: pass one weight per sample (shape ({values.shape[0] if values.ndim else 1},)) "
            "or one per loss element."
        )
    return values, weight


def reduce_weighted(
    values: torch.Tensor,
    sample_weight=None,
    mask: torch.Tensor | None = None,
    reduction: str | None = "sum_over_batch_size",
) -> torch.Tensor:
    """LO1 steps 4-5 with the reductions of LO2 and the masks of LO3.

    `sum_over_batch_size`/`mean` divide Σ(w·l) by the number of elements (the number of valid
    elements under a mask), `mean_with_sample_weight` by Σw, `sum` returns Σ(w·l), `none`/None the
    weighted values. A scalar (or empty) loss is returned as is.
    """
    weight = None
    if sample_weight is not None:
        values, weight = _weights_for(values, sample_weight)
    if mask is not None:
        mask = mask.to(values.dtype)
        weight = mask if weight is None else weight * mask
    if weight is not None:
        values = values * weight
    if reduction in (None, "none") or values.ndim == 0 or values.numel() == 0:
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weight is not None:
        return div_no_nan(total, weight.expand_as(values).sum())
    if mask is not None:
        return div_no_nan(total, mask.expand_as(values).sum())
    return total / values.numel()


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1) -> torch.Tensor:
    """LO6: −[y·log p + (1−y)·log(1−p)] with p clipped to [ε, 1−ε], averaged over `axis`."""
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        elementwise = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
    else:
        p = y_pred.clamp(EPSILON, 1.0 - EPSILON)
        elementwise = -(y_true * torch.log(p) + (1.0 - y_true) * torch.log1p(-p))
    return elementwise.mean(dim=axis)


def _log_probabilities(y_pred: torch.Tensor, from_logits: bool, axis: int) -> torch.Tensor:
    if from_logits:
        return F.log_softmax(y_pred, dim=axis)
    p = y_pred / y_pred.sum(dim=axis, keepdim=True)
    return torch.log(p.clamp(EPSILON, 1.0 - EPSILON))


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1) -> torch.Tensor:
    """LO6: −Σ y·log p over the class axis; probabilities are renormalised and clipped first."""
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[axis]
    return -(y_true * _log_probabilities(y_pred, from_logits, axis)).sum(dim=axis)


def sparse_categorical_crossentropy(
    y_true, y_pred, from_logits=False, ignore_class=None, axis=-1
) -> torch.Tensor:
    """LO6: −log p[label]; labels have the prediction's shape minus the class axis.

    Positions whose label equals `ignore_class` get loss 0 (the mean that excludes them is
    applied by the reduction, LO3).
    """
    labels = sparse_labels(y_true, y_pred).long()
    valid = None
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = torch.where(valid, labels, torch.zeros_like(labels))
    log_p = _log_probabilities(y_pred, from_logits, axis).movedim(axis, -1)
    loss = -log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if valid is not None:
        loss = torch.where(valid, loss, torch.zeros_like(loss))
    return loss


def mean_squared_error(y_true, y_pred) -> torch.Tensor:
    """LO7: mean (y − p)²."""
    return torch.square(y_true - y_pred).mean(dim=-1)


def mean_absolute_error(y_true, y_pred) -> torch.Tensor:
    """LO7: mean |y − p|."""
    return torch.abs(y_true - y_pred).mean(dim=-1)


def mean_absolute_percentage_error(y_true, y_pred) -> torch.Tensor:
    """LO7: 100·mean(|y − p| / max(|y|, ε))."""
    return 100.0 * (torch.abs(y_true - y_pred) / y_true.abs().clamp_min(EPSILON)).mean(dim=-1)


def mean_squared_logarithmic_error(y_true, y_pred) -> torch.Tensor:
    """LO7: mean (log(max(p, ε) + 1) − log(max(y, ε) + 1))²."""
    diff = torch.log1p(y_pred.clamp_min(EPSILON)) - torch.log1p(y_true.clamp_min(EPSILON))
    return torch.square(diff).mean(dim=-1)


def huber(y_true, y_pred, delta=1.0) -> torch.Tensor:
    """LO7: mean of ½e² where |e| ≤ δ, else δ|e| − ½δ²."""
    error = y_pred - y_true
    abs_error = error.abs()
    quadratic = 0.5 * torch.square(error)
    linear = delta * abs_error - 0.5 * delta * delta
    return torch.where(abs_error <= delta, quadratic, linear).mean(dim=-1)


def log_cosh(y_true, y_pred) -> torch.Tensor:
    """LO7: mean log cosh(p − y), computed as x + softplus(−2x) − log 2 (no overflow)."""
    x = y_pred - y_true
    return (x + F.softplus(-2.0 * x) - math.log(2.0)).mean(dim=-1)


def kl_divergence(y_true, y_pred) -> torch.Tensor:
    """LO7: Σ y·log(y/p) with y and p clipped to [ε, 1]."""
    y_true = y_true.clamp(EPSILON, 1.0)
    y_pred = y_pred.clamp(EPSILON, 1.0)
    return (y_true * torch.log(y_true / y_pred)).sum(dim=-1)


def poisson(y_true, y_pred) -> torch.Tensor:
    """LO7: mean(p − y·log(p + ε))."""
    return (y_pred - y_true * torch.log(y_pred + EPSILON)).mean(dim=-1)


def cosine_similarity(y_true, y_pred, axis=-1) -> torch.Tensor:
    """LO7: −Σ normalise(y)·normalise(p) along `axis` (x / max(‖x‖, ε))."""
    y_true = F.normalize(y_true, dim=axis, eps=EPSILON)
    y_pred = F.normalize(y_pred, dim=axis, eps=EPSILON)
    return -(y_true * y_pred).sum(dim=axis)


def _hinge_labels(y_true: torch.Tensor) -> torch.Tensor:
    """Map 0/1 labels to −1/+1 when every label is 0 or 1 (decided on device, no sync)."""
    is_binary = ((y_true == 0) | (y_true == 1)).all()
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true, y_pred) -> torch.Tensor:
    """LO7: mean max(1 − y·p, 0), with 0/1 labels first mapped to −1/+1."""
    return torch.relu(1.0 - _hinge_labels(y_true) * y_pred).mean(dim=-1)


def squared_hinge(y_true, y_pred) -> torch.Tensor:
    """mean max(1 − y·p, 0)², with 0/1 labels first mapped to −1/+1."""
    return torch.square(torch.relu(1.0 - _hinge_labels(y_true) * y_pred)).mean(dim=-1)


def categorical_hinge(y_true, y_pred) -> torch.Tensor:
    """max(max((1 − y)·p) − Σ y·p + 1, 0) over the class axis."""
    pos = (y_true * y_pred).sum(dim=-1)
    neg = ((1.0 - y_true) * y_pred).amax(dim=-1)
    return torch.relu(neg - pos + 1.0)


_PROBABILITY_LAYERS = (nn.Softmax, nn.Softmax2d, nn.Softmin, nn.Sigmoid)


def _final_layer(module: nn.Module) -> nn.Module | None:
    """The last layer of a (nested) nn.Sequential, skipping Identity and empty Sequentials."""
    if not isinstance(module, nn.Sequential):
        return module
    for child in reversed(list(module)):
        last = None if isinstance(child, nn.Identity) else _final_layer(child)
        if last is not None:
            return last
    return None


def infer_from_logits(module: nn.Module) -> tuple[bool, str]:
    """Decide whether a module returns logits (True) or probabilities (False), with the reason.

    Only an nn.Sequential (nested ones too) shows its final layer; for other modules forward()
    may do anything after its last registered layer, so outputs are treated as logits.

    >>> infer_from_logits(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1)))
    (False, 'probabilities: module ends in Softmax')
    """
    while True:  # see through torch.compile and (Distributed)DataParallel wrappers
        if isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        elif isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            module = module.module
        else:
            break
    last = _final_layer(module)
    if last is None:
        return True, "logits: module has no layers"
    if not isinstance(module, nn.Sequential) or next(last.children(), None) is not None:
        owner = last if isinstance(module, nn.Sequential) else module
        return True, (
            f"outputs treated as logits ({type(owner).__name__} does not end in Softmax/Sigmoid that epochwise "
            "can see; if forward() returns probabilities, pass the loss with from_logits=False)"
        )
    name = type(last).__name__
    if isinstance(last, _PROBABILITY_LAYERS):
        return False, f"probabilities: module ends in {name}"
    if isinstance(last, nn.LogSoftmax):
        return True, "log-probabilities: module ends in LogSoftmax, treated as logits"
    return True, f"logits: module ends in {name}"


# ---- checks run once by `Loss.validate` (all targets against the first batch's output) ----


def shape_str(t: torch.Tensor) -> str:
    """`(.., 10)`: a shape with the batch dimension left out, as the error messages print it."""
    return "(" + ", ".join([".."] + [str(d) for d in t.shape[1:]]) + ")" if t.ndim else "()"


def check_batched(name: str, y_true: torch.Tensor, y_pred: torch.Tensor) -> None:
    """Both tensors need a batch dimension; float targets must not hold NaN."""
    if y_pred.ndim == 0 or y_true.ndim == 0:
        which = "the module's output" if y_pred.ndim == 0 else "the targets"
        raise ValueError(
            f"Loss {name!r} needs a batch dimension, but {which} is a scalar: use one row per sample."
        )
    if y_true.is_floating_point() and bool(torch.isnan(y_true).any()):
        raise ValueError(f"The targets contain NaN, so loss {name!r} would be NaN: remove or impute them.")


def check_same_shape(name: str, y_true: torch.Tensor, y_pred: torch.Tensor) -> None:
    """After LO1 rank alignment the trailing shapes must be equal (no silent broadcast)."""
    t, p = align_ranks(y_true, y_pred)
    if t.ndim == p.ndim and t.shape[1:] == p.shape[1:]:
        return
    if y_pred.ndim > 1 and y_pred.shape[-1] > 1 and y_true.shape[1:] in ((), (1,)) and "crossentropy" in name:
        hint = f"for {y_pred.shape[-1]} classes and integer labels use 'sparse_categorical_crossentropy'"
    else:
        hint = f"make the last layer output {shape_str(y_true)} per sample, or reshape the targets"
    raise ValueError(
        f"module output shape {shape_str(y_pred)} does not fit targets of shape {shape_str(y_true)} for loss "
        f"{name!r}: {hint}."
    )


def check_binary_targets(y_true: torch.Tensor) -> None:
    """binary_crossentropy targets must lie in [0, 1]."""
    low, high = float(y_true.min()), float(y_true.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"binary_crossentropy needs targets in [0, 1]; found min {low:g}, max {high:g}. Map -1/+1 labels "
            "with (y + 1) / 2; for integer class ids use 'sparse_categorical_crossentropy'."
        )


def check_categorical_targets(y_true: torch.Tensor, y_pred: torch.Tensor, axis: int) -> None:
    """categorical_crossentropy needs ≥ 2 outputs and one-hot targets of the output's shape."""
    classes = y_pred.shape[axis] if y_pred.ndim > 1 else 1
    if classes == 1:
        raise ValueError(
            f"categorical_crossentropy needs one output per class, but the module output shape is "
            f"{shape_str(y_pred)}: its loss would always be 0. Use 'binary_crossentropy' for one output."
        )
    if y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
        raise ValueError(
            f"categorical_crossentropy got integer-like targets of shape {shape_str(y_true)} for a module output "
            f"of shape {shape_str(y_pred)}: use 'sparse_categorical_crossentropy', or one-hot encode the targets "
            f"with torch.nn.functional.one_hot(y.long(), {classes})."
        )
    check_same_shape("categorical_crossentropy", y_true, y_pred)


def sparse_labels(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """Labels with a trailing size-1 axis squeezed when they have the prediction's rank (LO6)."""
    return y_true.squeeze(-1) if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1 else y_true


def check_sparse_targets(
    y_true: torch.Tensor, y_pred: torch.Tensor, axis: int, ignore_class: int | None
) -> None:
    """Integer class ids in [0, K) with the output's shape minus the class axis; not one-hot."""
    name = "sparse_categorical_crossentropy"
    pred = y_pred.movedim(axis, -1) if y_pred.ndim > 1 else y_pred.unsqueeze(-1)
    classes = pred.shape[-1]
    if classes == 1:
        raise ValueError(
            f"{name} needs one output per class, but the module output shape is {shape_str(y_pred)}. "
            "Use 'binary_crossentropy' for one output with 0/1 targets."
        )
    labels = sparse_labels(y_true, pred)
    if labels.ndim == pred.ndim and labels.shape[1:] == pred.shape[1:]:
        raise ValueError(
            f"{name} got one-hot targets of shape {shape_str(y_true)}: use 'categorical_crossentropy', "
            "or pass integer labels (y.argmax(-1))."
        )
    if labels.shape[1:] != pred.shape[1:-1]:
        raise ValueError(
            f"module output shape {shape_str(y_pred)} does not fit targets of shape {shape_str(y_true)} for loss "
            f"{name!r}: integer labels of shape {shape_str(pred[..., 0])} are expected."
        )
    if ignore_class is not None:
        labels = labels[labels != ignore_class]
    if labels.numel() == 0:
        return
    low, high = float(labels.min()), float(labels.max())
    integral = not labels.is_floating_point() or bool((labels == labels.round()).all())
    if not integral or low < 0 or high >= classes:
        problem = "out-of-range" if integral else "non-integer"
        hint = " (they look 1-based: subtract 1)" if low >= 1 and high == classes else ""
        raise ValueError(
            f"{name} needs integer class ids in [0, {classes}) for a module with {classes} outputs, but the "
            f"targets have {problem} values (min {low:g}, max {high:g}){hint}. Make the last layer output one "
            "value per class, or fix the labels."
        )


def as_tensors(y_true, y_pred) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = torch.as_tensor(y_pred)
    return torch.as_tensor(y_true, device=y_pred.device), y_pred


class Loss:
    """Base class: `loss(y_true, y_pred, sample_weight=None)` returns the reduced loss (LO1-LO4).

    Subclasses implement `call(y_true, y_pred)`, returning one value per sample with the last axis
    reduced. `reduction` is "sum_over_batch_size" (= "mean"), "sum", "mean_with_sample_weight",
    "none" or None (LO2).

    >>> class MeanCubedError(Loss):
    ...     def call(self, y_true, y_pred):
    ...         return (y_pred - y_true).abs().pow(3).mean(dim=-1)
    >>> MeanCubedError()(torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]))
    tensor(4.)
    """

    # Elementwise losses see a rank-1 (y, p) pair as one value per sample and add a trailing axis, so the
    # batch is never averaged inside `call` (the LO6 ⚠ fixed): the default reduction gives the Keras
    # value, while weights, "sum" and "none" act per sample instead of on the batch mean.
    _elementwise = False

    def __init__(self, reduction: str | None = "sum_over_batch_size", name: str | None = None) -> None:
        self.reduction = check_reduction(reduction)
        self.name = name or snake_case(type(self).__name__)  # MeanSquaredError -> "mean_squared_error"

    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} must implement call(y_true, y_pred) -> per-sample values."
        )

    def __call__(self, y_true, y_pred, sample_weight=None) -> torch.Tensor:
        y_true, y_pred = self._prepare(y_true, y_pred)
        values, mask = self._values_and_mask(y_true, y_pred)
        return reduce_weighted(values, sample_weight, mask, self.reduction)

    def _prepare(self, y_true, y_pred) -> tuple[torch.Tensor, torch.Tensor]:
        """LO1 steps 1-2: float32 on y_pred's device, ranks aligned."""
        y_true, y_pred = as_tensors(y_true, y_pred)
        y_true, y_pred = align_ranks(y_true.to(torch.float32), y_pred.to(torch.float32))
        if self._elementwise and y_true.ndim == 1 and y_pred.ndim == 1:
            y_true, y_pred = y_true.unsqueeze(-1), y_pred.unsqueeze(-1)
        return y_true, y_pred

    def _values_and_mask(self, y_true, y_pred) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.call(y_true, y_pred), None

    def validate(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> None:
        """Check once, before training, that the targets (all of them) fit the module's first output.

        Only trailing shapes are compared (`y_true` may hold more samples than `y_pred`). Raises
        ValueError naming the problem and the fix.
        """
        y_true, y_pred = as_tensors(y_true, y_pred)
        check_batched(self.name, y_true, y_pred)
        self._check_targets(y_true, y_pred)

    def _check_targets(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> None:
        check_same_shape(self.name, y_true, y_pred)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict) -> Loss:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
