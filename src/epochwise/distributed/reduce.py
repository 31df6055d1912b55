"""Exact reductions over the torchrun processes: the loss sums and counts, and declared metric state.

A metric's state is declared piece by piece with a reduction (``Metric.add_state``): ``"sum"``,
``"max"``, ``"min"`` or ``"cat"`` (concatenated along dim 0, in rank order). :func:`reduce_states`
gathers every rank's pieces and :func:`combine` merges them, the same function that merges metrics in
one process (``Metric.merge_state``), so the merged value is the value on all the data at once.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from .setup import collective_device, gather_objects, is_distributed, world_size

REDUCTIONS = ("sum", "max", "min", "cat")


def sum_numbers(values: list[torch.Tensor | float], device: torch.device) -> list[torch.Tensor]:
    """All-reduce (sum) a list of scalars and tensors in one collective, in float64."""
    dev = collective_device(device)
    flat = [torch.as_tensor(v, dtype=torch.float64).to(dev).reshape(-1) for v in values]
    sizes = [f.numel() for f in flat]
    packed = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.float64, device=dev)
    if is_distributed():
        dist.all_reduce(packed)
    out, start = [], 0
    for v, size in zip(values, sizes):
        shape = v.shape if isinstance(v, torch.Tensor) else ()
        out.append(packed[start:start + size].reshape(shape))
        start += size
    return out


def combine(pieces: list[Any], reduction: str, like: Any) -> Any:
    """One piece of state from several ranks (or metrics) merged by ``reduction``, in the form of ``like``.

    ``like`` (usually ``pieces[0]``) gives the result's kind and place: a Python number stays one of
    its type; a tensor keeps its dtype and device; a ``"cat"`` state that is a list becomes a list of one
    tensor (or stays empty), one that is a tensor stays a tensor.
    """
    if reduction == "cat":
        parts = [t for p in pieces if p is not None for t in (p if isinstance(p, list) else [p])]
        if isinstance(like, list):
            if not parts:
                return []
            device = like[0].device if like else parts[0].device
            return [torch.cat([t.to(device) for t in parts])]
        return torch.cat([t.to(like.device) for t in parts]).to(like.dtype)
    if not isinstance(like, torch.Tensor):
        numbers = [float(p) for p in pieces]
        merged = sum(numbers) if reduction == "sum" else max(numbers) if reduction == "max" else min(numbers)
        return type(like)(round(merged) if isinstance(like, int) else merged)
    stacked = torch.stack([torch.as_tensor(p).to(like.device) for p in pieces])
    if reduction == "sum":
        merged = stacked.sum(0)
    elif reduction == "max":
        merged = stacked.amax(0)
    else:
        merged = stacked.amin(0)
    return merged.to(like.dtype)


def reduce_states(values: list[Any], reductions: list[str], device: torch.device | None = None) -> list[Any]:
    """Each value merged over all ranks by its reduction (a collective; ``values`` as they are in one
    process). Every rank passes the same number of values, and a sum / max / min value the same shape
    on every rank (a metric's declared default fixes it).

    Sum / max / min values travel in one all-reduce per kind (as float64: exact for float32 and for
    counts below 2**53), which gives every rank the same bits; ``"cat"`` values travel as objects,
    since their lengths differ between ranks. (A tensor all-gather here made gloo abort one process's
    exit now and then, after an evaluation in which that process had no batch.)
    """
    if not is_distributed():
        return list(values)
    world = world_size()
    per_rank: list[list[Any]] = [[None] * world for _ in values]
    merged: dict[int, Any] = {}
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    for kind, op in ops.items():  # one all-reduce per kind that occurs (a Mean needs only "sum")
        group = [i for i, r in enumerate(reductions) if r == kind]
        if not group:
            continue
        dev = collective_device(device)
        flat = [torch.as_tensor(values[i]).detach().to(dev, torch.float64).reshape(-1) for i in group]
        packed = torch.cat(flat)
        dist.all_reduce(packed, op=op)
        start = 0
        for i, f in zip(group, flat):
            shape = values[i].shape if isinstance(values[i], torch.Tensor) else ()
            merged[i] = combine([packed[start:start + f.numel()].reshape(shape)], kind, values[i])
            start += f.numel()
    joined = [i for i, r in enumerate(reductions) if r == "cat"]
    if joined:
        mine = [_joined_on_cpu(values[i]) for i in joined]
        for r, theirs in enumerate(gather_objects(mine)):
            for i, piece in zip(joined, theirs):
                per_rank[i][r] = piece
    return [merged[i] if i in merged else combine(per_rank[i], reductions[i], values[i]) for i in range(len(values))]


def _joined_on_cpu(value: Any) -> torch.Tensor | None:
    parts = value if isinstance(value, list) else [value]
    parts = [t.detach().to("cpu") for t in parts]
    return torch.cat(parts) if parts else None
