"""FSDP2 (``compile(strategy="fsdp")`` under torchrun): sharding the module, gathering it for evaluation,
gradient sync, full state dicts of the module and the optimizer, and rebuilding an optimizer over shards."""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from typing import Any

import torch

from .setup import is_main_process, world_size


def is_sharded(module: torch.nn.Module) -> bool:
    """True once :func:`shard_module` (or the user's own ``fully_shard``) made ``module`` an FSDP module."""
    fsdp = sys.modules.get("torch.distributed.fsdp")  # never imported: nothing is sharded (and no import cost)
    return fsdp is not None and isinstance(module, getattr(fsdp, "FSDPModule", ()))


def _fsdp() -> Any:
    try:
        import torch.distributed.fsdp as fsdp
    except ImportError:  # pragma: no cover - a torch built without distributed
        return None
    return fsdp if hasattr(fsdp, "fully_shard") else None


def _blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The outermost modules held in an ``nn.ModuleList`` or ``nn.Sequential`` that have parameters."""
    found: list[torch.nn.Module] = []
    for child in module.children():
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)) and any(True for _ in child.parameters()):
            found.append(child)
        else:
            found += _blocks(child)
    return found


def shard_module(module: torch.nn.Module, device: torch.device) -> dict[int, torch.nn.Parameter]:
    """FSDP2 in place: each block (see :func:`_blocks`) its own unit, then the whole module; returns
    ``{id(old parameter): new parameter}`` so an optimizer built before can be rebuilt over the shards.

    Submodules the user already sharded with ``fully_shard`` keep their units; only the rest is added.
    """
    fsdp = _fsdp()
    if fsdp is None or not hasattr(fsdp.FSDPModule, "reset_iter_state"):
        raise RuntimeError(f"strategy='fsdp' needs the FSDP2 of a recent torch (tested with 2.13), this is "
                           f"torch {torch.__version__}; upgrade torch or use strategy='ddp'")
    from torch.distributed.device_mesh import init_device_mesh

    before = {name: id(p) for name, p in module.named_parameters()}
    mesh = init_device_mesh(device.type, (world_size(),))
    if not any(isinstance(m, fsdp.FSDPModule) for m in module.modules()):
        for block in _blocks(module):
            fsdp.fully_shard(block, mesh=mesh)
    fsdp.fully_shard(module, mesh=mesh)
    # FSDP settles which module is the root at its first forward; settle it now, so that a rank which has
    # not run a forward yet (no evaluation batch of its own) can still be reset by reshard_for_training
    module._get_fsdp_state()._lazy_init()
    return {before[name]: p for name, p in module.named_parameters() if name in before}


def _fsdp_modules(module: torch.nn.Module) -> list[Any]:
    fsdp = _fsdp()
    return [m for m in module.modules() if isinstance(m, fsdp.FSDPModule)]


def gather_for_eval(module: torch.nn.Module) -> None:
    """Every rank holds the full parameters until the next training step, so evaluate and predict run
    no collective per batch: their shards may hold different numbers of batches."""
    module.set_reshard_after_forward(False)
    for m in _fsdp_modules(module):
        m.unshard()


def reshard_for_training(module: torch.nn.Module) -> None:
    """Undo :func:`gather_for_eval`: FSDP's defaults (blocks reshard after forward, the root does not),
    every unit resharded, and the record of the evaluation forwards (whose number differs between ranks,
    and which would steer the backward's prefetching apart) dropped."""
    module.set_reshard_after_forward(True)
    module.set_reshard_after_forward(False, recurse=False)
    module.reset_iter_state()


@contextlib.contextmanager
def gradient_sync(module: torch.nn.Module, sync: bool) -> Iterator[None]:
    """FSDP's counterpart of DDP's ``no_sync``: with ``sync=False`` the backward keeps its gradients local."""
    module.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def reduce_held_gradients(module: torch.nn.Module) -> None:
    """Reduce-scatter the gradients that backward passes without sync held back, now (into the sharded
    ``p.grad``, averaged over ranks), as FSDP's end-of-backward callback does: for an accumulation group
    cut short (end of epoch, a stop) and before a backup. FSDP2 has no public call for this."""
    module.set_requires_gradient_sync(True)
    module._get_fsdp_state()._root_post_backward_final_callback()


def module_state(module: torch.nn.Module, *, everywhere: bool = False) -> dict[str, torch.Tensor]:
    """``module.state_dict()``; under FSDP the full (unsharded) one, gathered from every rank (a collective),
    on the CPU of rank 0 only unless ``everywhere``: the same keys and shapes as in one process."""
    if not is_sharded(module):
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere)
    return get_model_state_dict(module, options=options)


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full state_dict (every rank passes the same one) into the module, sharded or not."""
    if not is_sharded(module):
        module.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(module, dict(state), options=StateDictOptions(full_state_dict=True))


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every sharded state gathered to its full tensor (a collective),
    kept on rank 0's CPU: the same index keys and shapes as in one process."""
    from torch.distributed.tensor import DTensor

    state = optimizer.state_dict()
    full: dict[Any, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        values = {}
        for key, value in entry.items():
            if isinstance(value, DTensor):
                value = value.full_tensor().to("cpu")
            values[key] = value
        if is_main_process():
            full[index] = values
    return {"state": full, "param_groups": state["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full optimizer state_dict (every rank passes the same one): each rank keeps its shard."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    sharded = {}
    for index, entry in state["state"].items():
        p = params[int(index)]
        sharded[index] = {
            key: distribute_tensor(value.to(p.device), p.device_mesh, p.placements, src_data_rank=None)
            if isinstance(p, DTensor) and isinstance(value, torch.Tensor) and key != "step" and value.shape == p.shape
            else value
            for key, value in entry.items()
        }
    optimizer.load_state_dict({**state, "state": sharded})


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a sharded (DTensor) tensor; a plain tensor as it is."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


def like_param(local: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Undo :func:`local_part`: this rank's shard as a gradient for the sharded ``param``."""
    if not hasattr(param, "device_mesh"):
        return local
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(local, param.device_mesh, param.placements, shape=param.shape, stride=param.stride())


def rebuild_optimizer(
    optimizer: torch.optim.Optimizer, new_params: dict[int, torch.nn.Parameter]
) -> torch.optim.Optimizer | None:
    """The same torch optimizer class and param-group settings over the sharded parameters, with fresh
    state; None when it holds none of the module's parameters."""
    groups = []
    for group in optimizer.param_groups:
        params = [new_params[id(p)] for p in group["params"] if id(p) in new_params]
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    if not any(g["params"] for g in groups):
        return None
    accepted = inspect.signature(type(optimizer)).parameters  # defaults may hold more than the constructor takes
    kwargs = {k: v for k, v in optimizer.defaults.items() if k in accepted}
    return type(optimizer)([g for g in groups if g["params"]], **kwargs)

