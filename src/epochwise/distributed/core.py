"""torchrun / torch.distributed: detection, rank-0 side effects, exact reductions, sharding.

``model.fit`` detects the environment torchrun sets up (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``), initialises the process group (nccl on CUDA, gloo on CPU) unless the script already
did, pins each process to its local GPU and trains through ``DistributedDataParallel``, or with
``compile(strategy="fsdp")`` shards the module with FSDP2 (``fully_shard``). The user's script does not
change. Everything here is a no-op in a single process.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import io
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "rank", "world_size", "is_main_process", "setup", "barrier"]

STRATEGIES = ("ddp", "fsdp")


def env_requests_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ and "MASTER_ADDR" in os.environ


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 prints and writes files; the others wait at a barrier."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def setup(device: torch.device, device_was_auto: bool) -> torch.device:
    """Initialise the process group from torchrun's environment (once) and pick this process's device."""
    if not env_requests_distributed() and not is_distributed():
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda" and (device_was_auto or device.index is None):
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_shutdown)  # we opened it, we close it: an exit with live peers can abort
    return device


def _shutdown() -> None:
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
            dist.destroy_process_group()


def broadcast_int(value: int) -> int:
    """Rank 0's value on every rank (the data-order seed, so shards never overlap)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return int(holder[0])


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank says True: a stop decided by one rank stops all."""
    if not is_distributed():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_numbers(values: list[torch.Tensor | float], device: torch.device) -> list[torch.Tensor]:
    """All-reduce (sum) a list of scalars and tensors in one collective per shape group."""
    dev = _collective_device(device)
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


def gather_objects(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def _collective_device(device: torch.device) -> torch.device:
    backend = dist.get_backend() if is_distributed() else "gloo"
    return device if backend == "nccl" else torch.device("cpu")


@contextlib.contextmanager
def quiet_unless_main() -> Iterator[None]:
    """Only rank 0 prints: other ranks' stdout is dropped while fit / evaluate / predict run."""
    if is_main_process():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def shard_bounds(n: int, pad: bool) -> tuple[int, int, int]:
    """(start, stop, padded_per_rank) of this rank's contiguous shard of ``n`` items.

    With ``pad`` every rank gets ``ceil(n / world)`` items (the shortfall is filled by wrapping around,
    so every rank runs the same number of steps); without it the shards are disjoint and may be uneven.
    """
    w, r = world_size(), rank()
    per = math.ceil(n / w)
    start = r * per
    stop = min(start + per, n)
    return start, max(stop, start), per if pad else max(stop - start, 0)


def train_positions(n: int, batch_size: int) -> torch.Tensor:
    """This rank's positions in an epoch order of ``n`` items, for training.

    The order is padded (by wrapping around) to ``world * ceil(n / world)`` so every rank runs the same
    number of steps; then each global batch of ``world * batch_size`` consecutive positions is split into
    ``world`` equal chunks, and rank ``r`` takes chunk ``r``. So step ``k`` of all ranks together covers
    exactly the batch a single process would see at ``batch_size * world``: same global batch, same
    gradient (up to float rounding), whatever the number of processes.
    """
    w, r = world_size(), rank()
    per = math.ceil(n / w)
    total = per * w
    chunks = []
    for start in range(0, total, w * batch_size):
        size = min(batch_size, (total - start) // w)
        chunks.append(torch.arange(start + r * size, start + (r + 1) * size))
    return torch.cat(chunks) % n if chunks else torch.zeros(0, dtype=torch.long)


def wrap_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around the user's module (which stays ``model.module``)."""
    from torch.nn.parallel import DistributedDataParallel

    if not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def check_strategy(strategy: Any) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be 'ddp' or 'fsdp', got {strategy!r}")
    return str(strategy)


# --- FSDP (compile(strategy="fsdp") under torchrun) ---------------------------------------------------
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


class ShardSampler(torch.utils.data.Sampler):
    """A DataLoader sampler for rank ``r`` of ``w``: the epoch's permutation (same seed on every rank)
    cut into disjoint shards: for training as :func:`train_positions` (padded, so all ranks step
    together), for evaluation contiguous and unpadded, so no sample counts twice. ``set_epoch`` reseeds.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, pad: bool, batch_size: int = 1) -> None:
        self.n, self.shuffle, self.seed, self.pad, self.epoch = n, shuffle, seed, pad, 0
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            return torch.randperm(self.n, generator=g).tolist()
        return list(range(self.n))

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self.pad:
            return iter([order[i] for i in train_positions(self.n, self.batch_size).tolist()])
        start, stop, _ = shard_bounds(self.n, pad=False)
        return iter(order[start:stop])

    def __len__(self) -> int:
        start, stop, per = shard_bounds(self.n, self.pad)
        return per if self.pad else stop - start
