"""DistributedDataParallel: the default strategy under torchrun."""

from __future__ import annotations

import torch


def wrap_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around the user's module (which stays ``model.module``); a module with
    nothing to train is left as it is."""
    from torch.nn.parallel import DistributedDataParallel

    if not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)
