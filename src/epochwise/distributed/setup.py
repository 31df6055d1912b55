"""The process group: detection, rank and world size, rank-0 side effects, barrier and broadcast.

``model.fit`` detects the environment torchrun sets up (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``), initialises the process group (nccl on CUDA, gloo on CPU) unless the script already
did, and pins each process to its local GPU. Everything here is a no-op in a single process.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

STRATEGIES = ("ddp", "fsdp")


def env_requests_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ and "MASTER_ADDR" in os.environ


def is_distributed() -> bool:
    """True under torchrun with more than one process (a process group is initialised)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 prints and writes files; the others wait at a barrier."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (nothing outside torchrun)."""
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
    """At exit: wait for every rank (none may leave while another still needs it), then close the group.

    The exit barrier's work object is kept alive for good. Gloo's barrier holds the works still in
    flight when it was queued (the last all-gather, with tensors Python created), and a gloo worker
    thread drops its reference after the barrier completes: if that is the last reference, freeing
    those tensors takes the GIL, and once the interpreter is finalizing that ends the process with
    "terminate called without an active exception" (SIGABRT), under load about 1 exit in 8.
    """
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            work = dist.barrier(async_op=True)
            _keep_forever(work)
            work.wait()
        with contextlib.suppress(Exception):  # even when the barrier failed: a live group aborts the exit
            dist.destroy_process_group()


def _keep_forever(obj: Any) -> None:
    """One reference that is never released, not even when the interpreter finalizes."""
    try:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    except (ImportError, AttributeError):  # no CPython API: a module global (freed last, by this thread)
        _KEPT.append(obj)


_KEPT: list[Any] = []


def check_strategy(strategy: Any) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be 'ddp' or 'fsdp', got {strategy!r}")
    return str(strategy)


def collective_device(device: torch.device | None = None) -> torch.device:
    """Where a collective's tensors must live: ``device`` (or the current GPU) under nccl, else the CPU."""
    if not is_distributed() or dist.get_backend() != "nccl":
        return torch.device("cpu")
    if device is None or device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def broadcast_int(value: int) -> int:
    """Rank 0's value on every rank (the data-order seed, so shards never overlap)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return int(holder[0])


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def quiet_unless_main() -> Iterator[None]:
    """Only rank 0 prints: other ranks' stdout is dropped while fit / evaluate / predict run."""
    if is_main_process():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield
