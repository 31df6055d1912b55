"""Sample weights from class weights."""

from __future__ import annotations

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
    labels = y
    if labels.dim() > 1 and labels.shape[-1] > 1:
        labels = labels.argmax(-1)
    elif labels.dim() > 1 and labels.shape[-1] == 1:
        labels = labels.squeeze(-1)
    labels = torch.round(labels.float()).long() if labels.is_floating_point() else labels.long()
    size = max(max(table) + 1, int(labels.max()) + 1 if labels.numel() else 0)
    lookup = torch.ones(size)
    for k, v in table.items():
        if k >= 0:
            lookup[k] = v
    return lookup[labels.cpu()].reshape(labels.shape[:1] + labels.shape[1:]).float()
