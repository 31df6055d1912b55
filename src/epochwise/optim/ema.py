"""Weight averaging (Keras's ``use_ema``): the argument checks and the tensors of a saved average."""

from __future__ import annotations

import numbers
from typing import Any

import torch

from .. import distributed
from ..text import is_int

EMA_ARGS = ("use_ema", "ema_momentum", "ema_overwrite_frequency")


def check_ema(owner: str, use_ema: Any, momentum: Any, frequency: Any) -> tuple[bool, float, int | None]:
    """Keras's EMA arguments: a bool, a momentum in [0, 1) and a positive int (or None) frequency."""
    if not isinstance(use_ema, bool):
        raise ValueError(f"{owner}: `use_ema` must be True or False, got {use_ema!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum < 1:
        raise ValueError(
            f"{owner}: `ema_momentum` must be a number in [0, 1) (the weight of the old average, e.g. 0.99), "
            f"got {momentum!r}"
        )
    if frequency is not None and not is_int(frequency):
        raise ValueError(
            f"{owner}: `ema_overwrite_frequency` must be a positive int (overwrite the weights with their "
            f"average every that many updates) or None (only at the end of fit), got {frequency!r}"
        )
    return use_ema, float(momentum), None if frequency is None else int(frequency)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A parameter-shaped tensor as a whole (an FSDP shard gathered: a collective on every rank)."""
    gather = getattr(tensor, "full_tensor", None)
    return (gather() if callable(gather) else tensor).detach()


def like_param(saved: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A saved full tensor on the parameter's device, sharded like it under FSDP."""
    if tuple(saved.shape) != tuple(param.shape):
        raise ValueError(f"the saved weight average has shape {tuple(saved.shape)}, the parameter {tuple(param.shape)}")
    value = saved.detach().to(device=param.device, dtype=param.dtype)
    if hasattr(param, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
    return value.clone()


def update_average(average: list[torch.Tensor], params: list[torch.Tensor], momentum: float) -> None:
    """Keras's ``average = momentum * average + (1 - momentum) * weights``, in place, on the local tensors
    (under FSDP each rank averages its own shard)."""
    local = [distributed.local_part(a) for a in average]
    torch._foreach_mul_(local, momentum)
    torch._foreach_add_(local, [distributed.local_part(p.detach()) for p in params], alpha=1.0 - momentum)


def ema_note(momentum: float, every: int | None) -> str:
    """The run plan's sentence on weight averaging."""
    during = (f"every {every} updates the weights are overwritten by the averages"
              if every else "training and validation use the raw weights")
    return (f"weights averaged (EMA, momentum {momentum:g}): {during}; at the end of fit the module gets "
            "the averages (evaluate, predict and save use them)")
