"""Sample weights from class weights."""

from __future__ import annotations

import math

import torch


# --- weights ------------------------------------------------------------------------------------
def class_weights_to_sample_weights(y: torch.Tensor, class_weight: dict) -> torch.Tensor:
    """F10: per-sample weights from a {class index: weight} dict (argmax for one-hot y)."""
    try:
        table = {int(k): float(v) for k, v in class_weight.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"class_weight keys must be class indices (int) and values numbers, got {class_weight!r}"
        ) from err
    if not all(math.isfinite(v) for v in table.values()):
        raise ValueError(f"class_weight values must be finite numbers, got {class_weight!r}")
    labels = y
    if labels.dim() > 1 and labels.shape[-1] > 1:
        labels = labels.argmax(-1)
    elif labels.dim() > 1 and labels.shape[-1] == 1:
        labels = labels.squeeze(-1)
    labels = torch.round(labels.float()).long() if labels.is_floating_point() else labels.long()
    labels = labels.cpu()
    lookup = torch.ones(max(table, default=-1) + 1)
    for k, v in table.items():
        if k >= 0:
            lookup[k] = v
    weights = torch.ones(labels.shape)  # a class not in the dict (or no class id at all) weighs 1
    known = (labels >= 0) & (labels < len(lookup))
    weights[known] = lookup[labels[known]]
    return weights
