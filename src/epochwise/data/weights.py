"""Sample weights from class weights, and the checks on weights."""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral
from typing import Any

import torch


# --- weights ------------------------------------------------------------------------------------
def check_weights(name: str, weights: torch.Tensor | None) -> None:
    """No negative sample weight: it would turn the loss into gradient ascent on those samples."""
    if weights is None or weights.numel() == 0:
        return
    negative = weights < 0
    if bool(negative.any()):
        count = int(negative.sum())
        raise ValueError(
            f"{name} holds {count} negative value(s) (the smallest is {float(weights.min()):g}); a negative "
            f"weight makes training climb the loss on those samples. Pass weights >= 0 (0 leaves a sample "
            f"out), e.g. np.clip(weights, 0, None)"
        )


def class_ids(y: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """The class index of each sample (argmax for one-hot y), and the number of classes when y is one-hot."""
    labels, width = y, None
    if labels.dim() > 1 and labels.shape[-1] > 1:
        labels, width = labels.argmax(-1), int(labels.shape[-1])
    elif labels.dim() > 1 and labels.shape[-1] == 1:
        labels = labels.squeeze(-1)
    labels = torch.round(labels.float()).long() if labels.is_floating_point() else labels.long()
    return labels.cpu(), width


def _classes_text(ys: Iterable[torch.Tensor]) -> tuple[int, str]:
    """How many classes the labels span (0 .. max), and a phrase saying so for the messages."""
    n, one_hot = 0, False
    for y in ys:
        labels, width = class_ids(y)
        if width is not None:
            n, one_hot = max(n, width), True
        elif labels.numel():
            n = max(n, int(labels.max()) + 1)
    kind = "one-hot columns" if one_hot else "integer labels"
    span = "no class" if n == 0 else ("class 0 only" if n == 1 else f"classes 0..{n - 1}")
    return n, f"y holds {span} ({kind})"


def _finite_number(v: Any) -> bool:
    """A finite number: Python, NumPy or a one-value tensor; never a bool or a string."""
    if isinstance(v, (bool, str, bytes)):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError, RuntimeError):
        return False


def class_weight_table(class_weight: dict, ys: Iterable[torch.Tensor]) -> dict[int, float]:
    """F10: the {class index: weight} dict checked against the classes of ``ys`` (all of y, both sides
    of a validation_split): integer keys of classes the data has, finite weights >= 0."""
    bad_keys = [k for k in class_weight if isinstance(k, bool) or not isinstance(k, Integral)]
    if bad_keys:
        raise ValueError(
            f"class_weight keys must be class indices (integers), got {', '.join(repr(k) for k in bad_keys)}; "
            f"map each class index to its weight, e.g. {{0: 1.0, 1: 5.0}}"
        )
    bad_values = {k: v for k, v in class_weight.items() if not _finite_number(v)}
    if bad_values:
        raise ValueError(f"class_weight values must be finite numbers, got {bad_values!r}")
    table = {int(k): float(v) for k, v in class_weight.items()}
    negative = {k: v for k, v in table.items() if v < 0}
    if negative:
        raise ValueError(
            f"class_weight gives {len(negative)} class(es) a negative weight ({negative}); a negative weight makes "
            "training climb the loss on that class. Use weights >= 0 (0 leaves a class out)"
        )
    n, holds = _classes_text(ys)
    unknown = sorted(k for k in table if k < 0 or k >= n)
    if unknown:
        shifted = " (class indices start at 0)" if min(table) >= 1 and max(table) == n else ""
        raise ValueError(
            f"class_weight has key(s) {unknown} that are not classes of the data: {holds}{shifted}. "
            "Key each weight by a class index the labels use; a class left out weighs 1"
        )
    return table


def class_weights_to_sample_weights(y: torch.Tensor, class_weight: dict,
                                    all_y: Iterable[torch.Tensor] | None = None) -> torch.Tensor:
    """F10: per-sample weights from a {class index: weight} dict (argmax for one-hot y), checked against
    the classes of ``all_y`` (default ``[y]``)."""
    table = class_weight_table(class_weight, [y] if all_y is None else all_y)
    labels, _ = class_ids(y)
    lookup = torch.ones(max(table, default=-1) + 1)
    for k, v in table.items():
        lookup[k] = v
    weights = torch.ones(labels.shape)  # a class not in the dict (or no class id at all) weighs 1
    known = (labels >= 0) & (labels < len(lookup))
    weights[known] = lookup[labels[known]]
    return weights


def is_classification_target(y: Any) -> bool:
    """Integer labels (n,) / (n, 1), or one-hot rows (n, C): targets whose values are classes."""
    if not isinstance(y, torch.Tensor) or y.dim() == 0 or y.dim() > 2:
        return False
    if y.dim() == 2 and y.shape[-1] > 1:
        return bool(((y == 0) | (y == 1)).all()) and bool((y.sum(-1) == 1).all())
    return not y.is_floating_point() or bool((y == torch.round(y)).all())
