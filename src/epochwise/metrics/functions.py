"""Per-sample metric functions and the counts behind AUC, Precision and Recall.

Every function here runs on the device of its inputs and never reads a tensor value on the host
(no ``.item()``, no ``float(tensor)``, no Python branch on tensor values), so the training loop can
call it every step without a host sync. Data-dependent choices use ``torch.where``. The LO6/LO7
formulas are the losses' own (``epochwise.losses.functions``), so a metric and its loss never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..losses import functions as lf
from ..losses.functions import align_ranks, div_no_nan, sparse_labels


def as_float(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float32 else x.float()


def logit_threshold(threshold: float) -> float:
    """The logit z with sigmoid(z) == threshold, so ``z_pred > z`` iff ``sigmoid(z_pred) > threshold``."""
    if threshold <= 0.0:
        return -math.inf
    if threshold >= 1.0:
        return math.inf
    return math.log(threshold / (1.0 - threshold))


# --- accuracy family (ME1): boolean per-sample matches --------------------------------------------
def accuracy(y_true: Tensor, y_pred: Tensor) -> Tensor:
    y_true, y_pred = align_ranks(y_true, y_pred)
    return torch.eq(y_true, y_pred)


def binary_accuracy(y_true: Tensor, y_pred: Tensor, threshold: float = 0.5) -> Tensor:
    # Keras casts (p > threshold) to y_true's dtype and tests equality: soft labels never match.
    y_true, y_pred = align_ranks(y_true, y_pred)
    return torch.eq(y_pred > threshold, y_true)


def categorical_accuracy(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return torch.eq(y_true.argmax(-1), y_pred.argmax(-1))


def sparse_categorical_accuracy(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return torch.eq(y_pred.argmax(-1), sparse_labels(y_true, y_pred))


def _in_top_k(labels: Tensor, y_pred: Tensor, k: int) -> Tensor:
    """True where the label's score is at least the k-th largest score (ties count as in, like Keras)."""
    k = min(k, y_pred.shape[-1])
    kth = y_pred.topk(k, dim=-1).values[..., -1:]
    return (y_pred.gather(-1, labels.unsqueeze(-1)) >= kth).squeeze(-1)


def top_k_categorical_accuracy(y_true: Tensor, y_pred: Tensor, k: int = 5) -> Tensor:
    return _in_top_k(y_true.argmax(-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true: Tensor, y_pred: Tensor, k: int = 5) -> Tensor:
    return _in_top_k(sparse_labels(y_true, y_pred).long(), y_pred, k)


# --- loss formulas as metrics (LO6, LO7) ----------------------------------------------------------
def loss_formula(formula: Callable[..., Tensor], sign: float = 1.0) -> Callable[..., Tensor]:
    """A formula of ``_loss_functions`` (one value per sample, last axis reduced) as a metric function.

    Like a loss (LO1): float32, ranks aligned, and a rank-1 pair is one value per sample. ``sign=-1``
    turns the cosine-similarity loss back into the similarity.
    """

    def metric_fn(y_true: Tensor, y_pred: Tensor, **kwargs: Any) -> Tensor:
        y_true, y_pred = align_ranks(as_float(y_true), as_float(y_pred))
        if y_true.dim() == 1 and y_pred.dim() == 1:
            y_true, y_pred = y_true.unsqueeze(-1), y_pred.unsqueeze(-1)
        values = formula(y_true, y_pred, **kwargs)
        return values if sign == 1.0 else values * sign

    metric_fn.__name__ = formula.__name__
    return metric_fn


def sparse_categorical_crossentropy(y_true: Tensor, y_pred: Tensor, from_logits: bool = False) -> Tensor:
    """LO6 with integer labels: the labels keep their dtype, the scores become float32."""
    return lf.sparse_categorical_crossentropy(y_true, as_float(y_pred), from_logits=from_logits)


mean_absolute_error = loss_formula(lf.mean_absolute_error)
mean_squared_error = loss_formula(lf.mean_squared_error)
mean_absolute_percentage_error = loss_formula(lf.mean_absolute_percentage_error)
mean_squared_logarithmic_error = loss_formula(lf.mean_squared_logarithmic_error)
log_cosh = loss_formula(lf.log_cosh)
hinge = loss_formula(lf.hinge)
squared_hinge = loss_formula(lf.squared_hinge)
poisson = loss_formula(lf.poisson)
kl_divergence = loss_formula(lf.kl_divergence)
cosine_similarity = loss_formula(lf.cosine_similarity, sign=-1.0)
binary_crossentropy = loss_formula(lf.binary_crossentropy)
categorical_crossentropy = loss_formula(lf.categorical_crossentropy)


# --- AUC (Keras: confusion counts at evenly spaced thresholds, interpolated area) -----------------
def auc_bucket_indices(y_pred: Tensor, num_thresholds: int) -> Tensor:
    """Bucket b of each prediction: it exceeds thresholds 0..b, with thresholds
    ``[-eps, 1/(T-1), ..., (T-2)/(T-1), 1+eps]`` (strict ``>``, as Keras' optimised update)."""
    idx = as_float(y_pred).clamp(0.0, 1.0).mul(num_thresholds - 1).ceil_().sub_(1.0).clamp_(min=0.0)
    return idx.long()


def auc_area(buckets: Tensor, curve: str, summation_method: str) -> Tensor:
    """Area under the ROC or PR curve from per-bucket positive/negative weights ``(2, T)``."""
    tp = buckets[0].flip(0).cumsum(0).flip(0)  # tp[j] = weight of positives above threshold j
    fp = buckets[1].flip(0).cumsum(0).flip(0)
    fn = tp[0] - tp
    tn = fp[0] - fp
    if curve == "PR" and summation_method == "interpolation":
        return _interpolate_pr_auc(tp, fp, fn)
    recall = div_no_nan(tp, tp + fn)
    if curve == "ROC":
        x, y = div_no_nan(fp, fp + tn), recall
    else:
        x, y = recall, div_no_nan(tp, tp + fp)
    if summation_method == "interpolation":
        heights = (y[:-1] + y[1:]) / 2.0
    elif summation_method == "minoring":
        heights = torch.minimum(y[:-1], y[1:])
    else:
        heights = torch.maximum(y[:-1], y[1:])
    return ((x[:-1] - x[1:]) * heights).sum()


def _interpolate_pr_auc(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Davis & Goadrich (2006) interpolation of the PR curve, as Keras' ``interpolate_pr_auc``."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = div_no_nan(dtp, dp.clamp_min(0.0))
    intercept = tp[1:] - slope * p[1:]
    both_positive = (p[:-1] > 0) & (p[1:] > 0)
    ratio = torch.where(both_positive, div_no_nan(p[:-1], p[1:].clamp_min(0.0)), torch.ones_like(p[1:]))
    increment = div_no_nan(slope * (dtp + intercept * ratio.log()), (tp[1:] + fn[1:]).clamp_min(0.0))
    return increment.sum()


# --- running means (ME3) -------------------------------------------------------------------------
def broadcast_weights(w: Tensor, shape: torch.Size, what: str) -> Tensor:
    """Per-sample (or per-sample-and-timestep) weights broadcast against ``shape`` (a view)."""
    while w.dim() < len(shape):
        w = w.unsqueeze(-1)
    try:
        return w.expand(shape)
    except RuntimeError:
        raise ValueError(
            f"sample_weight of shape {tuple(w.shape)} cannot be broadcast to the {what} of shape "
            f"{tuple(shape)}; pass one weight per sample (shape (batch,)) or per sample and timestep."
        ) from None


def weights_like(sample_weight: object, like: Tensor) -> Tensor:
    w = torch.as_tensor(sample_weight, device=like.device)
    return w if w.dtype == torch.float32 else w.float()


def accumulate_mean(state: Tensor, values: Tensor, sample_weight: object) -> int:
    """Add per-sample ``values`` (rank >= 1) to ``state = [total, weighted count]`` as Keras' ``Mean``.

    Non-batch axes are averaged; weights of lower rank than the values average the extra value axes
    first (temporal weights). Returns the unweighted sample count to add on the host (0 if weighted).
    """
    n = values.shape[0]
    if sample_weight is None:
        per_sample = values.numel() // n if n else 1
        state[0].add_(values.sum(dtype=torch.float32), alpha=1.0 / per_sample)
        return n
    w = weights_like(sample_weight, values)
    if w.dim() == 0:
        w = w.expand(n)
    values, w = align_ranks(as_float(values), w)
    if values.dim() > w.dim():
        values = values.mean(dim=tuple(range(w.dim(), values.dim())))
    w = broadcast_weights(w, values.shape, "metric values")
    per_sample = values.numel() // n if n else 1
    state[0].add_((values * w).sum(), alpha=1.0 / per_sample)
    state[1].add_(w.sum(), alpha=1.0 / per_sample)
    return 0


# --- argument checks and stateful counts (AUC, Precision, Recall) --------------------------------
def check_probability(value: Any, arg: str) -> float:
    if isinstance(value, (list, tuple)):
        raise ValueError(f"{arg} takes one threshold here, got {value!r}; create one metric per threshold.")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{arg} must be a probability in [0, 1], got {value!r}.")
    return float(value)


def _targets_like(y_true: Tensor, p: Tensor, name: str) -> Tensor:
    if y_true.shape != p.shape:
        raise ValueError(
            f"{name}: targets of shape {tuple(y_true.shape)} do not match predictions of shape "
            f"{tuple(p.shape)}; pass 0/1 targets with one entry per predicted probability."
        )
    return as_float(y_true)


def auc_update(buckets: Tensor, y_true: Tensor, p: Tensor, sample_weight: Any, name: str) -> None:
    """Add the weight of positive (row 0) and negative (row 1) targets to each prediction's bucket."""
    y_true, p = align_ranks(y_true, p)
    y = _targets_like(y_true, p, name).reshape(-1)
    idx = auc_bucket_indices(p, buckets.shape[1]).reshape(-1)
    if sample_weight is None:
        pos, neg = y, 1.0 - y
    else:
        w = broadcast_weights(weights_like(sample_weight, p), p.shape, "predictions").reshape(-1)
        pos = y * w
        neg = w - pos
    buckets[0].index_add_(0, idx, pos)
    buckets[1].index_add_(0, idx, neg)


def threshold_counts(
    y_true: Tensor, y_pred: Tensor, cut: float, class_id: int | None, sample_weight: Any, name: str
) -> Tensor:
    """Weighted [true positives, predicted positives, actual positives] of one batch, shape (3,).

    A prediction is positive when ``p > cut`` (strict); a target when it is non-zero (Keras casts
    targets to bool).
    """
    y_true, p = align_ranks(y_true, y_pred)
    if class_id is not None:
        y_true, p = y_true[..., class_id], p[..., class_id]
    y = _targets_like(y_true, p, name)
    predicted, actual = p > cut, y != 0
    hits = torch.stack((predicted & actual, predicted, actual))
    if sample_weight is None:
        return hits.flatten(1).sum(1, dtype=torch.float32)
    w = broadcast_weights(weights_like(sample_weight, p), p.shape, "predictions")
    return (hits * w).flatten(1).sum(1)
