"""What the explorer, the largest-batch search and the range test share: one optimizer update through
fit's own step (``StepRunner``), an exact snapshot and restore of everything an update changes,
out-of-memory detection, and memory measurement (a run's peak; the bytes one update allocates). The
search methods of ``find_max_batch_size`` are described in ``docs/batch-size.md``.
"""

from __future__ import annotations

import copy
import gc
import itertools
import os
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .. import data as _data
from .. import distributed, text
from ..engine.step import StepRunner

__all__ = ["find_max_batch_size", "is_out_of_memory", "available_ram"]

_OOM_ERROR = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


# --- shared helpers --------------------------------------------------------------------------------
def is_out_of_memory(err: BaseException) -> bool:
    """torch's OutOfMemoryError, MemoryError, or a RuntimeError that says the allocator gave up."""
    if isinstance(err, (_OOM_ERROR, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _free_memory(device: torch.device) -> None:
    """After an out-of-memory error on a GPU: collect cycles and hand cached blocks back to the driver."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_model(model: Any, who: str) -> None:
    if not (hasattr(model, "module") and hasattr(model, "optimizer") and getattr(model, "compiled", False)):
        raise TypeError(
            f"{who} needs a compiled epochwise Model: model = ew.Model(net); model.compile(optimizer=..., loss=...); "
            f"got {type(model).__name__}"
        )


def _arrays(x: Any, y: Any, who: str) -> _data.ArrayData:
    if not _data.is_array_input(x) or y is None:
        raise TypeError(
            f"{who} takes in-memory arrays x and y (NumPy arrays or tensors), got {type(x).__name__}"
        )
    return _data.ArrayData(x, y)


def _positive(value: Any, name: str, who: str) -> int:
    return text.check_int(value, name, owner=who)


def _any_rank(flag: bool, device: torch.device) -> bool:
    """Under torchrun: True on every rank when any rank says True, so all ranks take the same path."""
    if not distributed.is_distributed():
        return flag
    return bool(distributed.sum_numbers([float(flag)], device)[0] > 0)


def _to_cpu(obj: Any) -> Any:
    """A copy with every tensor copied to the CPU (so a snapshot takes no GPU memory)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


@dataclass
class _Snapshot:
    """Everything a probe or range test changes: weights, gradients, optimizer, RNG, train/eval mode, and
    the step runner's grad scaler (fp16).

    Tensors are copied to the CPU, so the snapshot does not take device memory from the search.
    """

    module: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    optimizer: dict[str, Any]
    optimizer_attrs: dict[str, Any]
    rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None
    training: bool
    scaler: dict[str, Any] | None

    @classmethod
    def take(cls, model: Any, runner: StepRunner) -> _Snapshot:
        module, opt = model.module, model.optimizer
        return cls(
            module=_to_cpu(module.state_dict()),
            grads={n: None if p.grad is None else _to_cpu(p.grad) for n, p in module.named_parameters()},
            optimizer=_to_cpu(opt.torch_optimizer.state_dict()),
            optimizer_attrs=dict(vars(opt)),
            rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
            training=module.training,
            scaler=None if runner.scaler is None else _to_cpu(runner.scaler.state_dict()),
        )

    def restore(self, model: Any, runner: StepRunner) -> None:
        module, opt = model.module, model.optimizer
        module.load_state_dict(self.module)
        for name, p in module.named_parameters():
            p.grad = None if self.grads[name] is None else self.grads[name].to(p.device, copy=True)
        vars(opt).clear()
        vars(opt).update(self.optimizer_attrs)  # iterations, learning rate or schedule, flags
        opt.torch_optimizer.load_state_dict(_to_cpu(self.optimizer))  # torch moves state to the params' device
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        module.train(self.training)
        runner.pending = 0  # a group cut short (an out-of-memory error) is dropped with its gradients
        if self.scaler is not None and runner.scaler is not None:
            runner.scaler.load_state_dict(self.scaler)


def _update(runner: StepRunner, batches: Iterator[tuple[Any, Any, Any]]) -> torch.Tensor:
    """One optimizer update through fit's step: ``accumulate_steps`` batches from ``batches`` through
    ``runner.train_step`` (autocast, the DDP wrapper, torch.compile; clipping is in the optimizer step).
    Returns the mean loss of those batches, on the device."""
    total: torch.Tensor | None = None
    for _ in range(runner.accumulate):
        loss, _ = runner.train_step(*next(batches))
        total = loss.detach() if total is None else total + loss.detach()
    assert total is not None
    return total / runner.accumulate if runner.accumulate > 1 else total


def _batch(data: _data.ArrayData, size: int, device: torch.device) -> tuple[Any, Any, Any]:
    """``size`` rows (repeating the data when ``size`` exceeds it), on ``device``."""
    part = data.take(torch.arange(size) % data.n).to(device)
    return part.x, part.y, part.sample_weight


# --- memory ------------------------------------------------------------------------------------------
def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            match = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _rss() -> int | None:
    value = _proc_status("VmRSS")
    if value is not None:
        return value
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def available_ram() -> int:
    """Bytes of RAM available to new allocations (psutil, else /proc/meminfo, else sysconf)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            match = re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


class _PeakMemory:
    """Peak memory of one run: CUDA's allocator peak on a GPU, the process's RSS high-water mark on CPU.

    On Linux the kernel's high-water mark (VmHWM) is reset at the start (``/proc/self/clear_refs``), so
    the peak belongs to this run; elsewhere RSS is sampled at every training batch end.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda" if device.type == "cuda" else "rss"
        self.exact_hwm = False
        self.sampled = 0

    def start(self) -> None:
        if self.kind == "cuda":
            _sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self.exact_hwm = _proc_status("VmHWM") is not None
        except OSError:
            self.exact_hwm = False
        self.sampled = _rss() or 0

    @property
    def needs_sampling(self) -> bool:
        return self.kind == "rss" and not self.exact_hwm

    def sample(self) -> None:
        self.sampled = max(self.sampled, _rss() or 0)

    def peak(self) -> int | None:
        if self.kind == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.exact_hwm:
            return _proc_status("VmHWM")
        self.sample()
        return self.sampled or None


# --- the largest batch ---------------------------------------------------------------------------
class _AllocationCounter:
    """Counts the bytes of every tensor storage that torch operators create while active, and their peak.

    A ``TorchDispatchMode`` sees each operator's outputs; a new storage (not one of the inputs', so
    views and in-place results are not counted twice) is added, and subtracted when it is freed.
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                inputs = {
                    t.untyped_storage().data_ptr()
                    for t in tree_flatten((args, kwargs))[0]
                    if isinstance(t, torch.Tensor)
                }
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor):
                        counter._add(t.untyped_storage(), inputs)
                return out

        self.mode = Mode()
        self.live = self.peak = 0
        self._refs: dict[int, Any] = {}

    def _add(self, storage: Any, inputs: set[int]) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in inputs or key in self._refs:
            return
        self._refs[key] = weakref.ref(storage, lambda _ref, k=key, n=size: self._free(k, n))
        self.live += size
        self.peak = max(self.peak, self.live)

    def _free(self, key: int, size: int) -> None:
        self._refs.pop(key, None)
        self.live -= size

    def __enter__(self) -> _AllocationCounter:
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mode.__exit__(*exc)


def _resident_bytes(model: Any) -> int:
    tensors = list(model.module.parameters()) + list(model.module.buffers())
    for state in model.optimizer.torch_optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def _largest_fitting(fits: Callable[[int], bool], limit: int) -> tuple[int, list[tuple[int, bool]]]:
    """Double from 1 until ``fits`` fails or ``limit`` is reached, then bisect: (largest fitting, trials)."""
    trials: list[tuple[int, bool]] = []
    lo, hi, size = 0, None, 1
    while True:
        ok = fits(size)
        trials.append((size, ok))
        if not ok:
            hi = size
            break
        lo = size
        if size >= limit:
            break
        size = min(size * 2, limit)
    while hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        ok = fits(mid)
        trials.append((mid, ok))
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo, trials


def _within_budget(measure: Callable[[int], int], room: int, limit: int) -> tuple[int, list[tuple[int, int]]]:
    """Largest size with ``measure(size) <= room``: doubling, guarded by the local slope, then chords.

    The step peak is convex piecewise linear in the batch size (the largest of the forward, backward and
    optimizer phases), so the chord between a fitting and a failing size lies above it: the size where
    the chord meets ``room`` fits, and a few chords reach the exact answer.
    """
    points: list[tuple[int, int]] = []
    size, lo, hi = 1, 0, None
    while True:
        used = measure(size)
        points.append((size, used))
        if used > room:
            hi = size
            break
        lo = size
        if size >= limit:
            return limit, points
        nxt = min(size * 2, limit)
        if len(points) >= 2:  # the guard: do not run a size the local slope says is over budget
            (s0, u0), (s1, u1) = points[-2], points[-1]
            slope = (u1 - u0) / (s1 - s0)
            if slope > 0 and u1 + slope * (nxt - s1) > room:
                nxt = max(s1 + 1, min(nxt, s1 + int((room - u1) / slope)))
        size = nxt
    used_lo = dict(points).get(lo, 0)
    used_hi = dict(points)[hi]
    for _ in range(12):
        if hi - lo <= 1:
            break
        chord = lo + int((room - used_lo) * (hi - lo) / max(used_hi - used_lo, 1))
        size = min(max(chord, lo + 1), hi - 1)
        used = measure(size)
        points.append((size, used))
        if used <= room:
            lo, used_lo = size, used
        else:
            hi, used_hi = size, used
    return lo, points


def find_max_batch_size(
    model: Any,
    x: Any,
    y: Any,
    *,
    max_batch_size: int | None = None,
    memory_budget_bytes: int | None = None,
    method: str = "auto",
    verbose: int = 1,
) -> int:
    """The largest batch size for one training step (forward, backward, optimizer step) of ``model``.

    ``method="oom"`` (the default on CUDA): double the batch from 1 until it runs out of memory, then
    bisect; each out-of-memory error is caught and the memory freed. ``method="budget"`` (the default
    elsewhere): the largest batch whose step allocates at most ``memory_budget_bytes`` (default 25% of
    the available RAM) together with the weights, buffers and optimizer state; the bytes each step
    allocates are counted exactly by intercepting torch's operators (see ``docs/batch-size.md``). The
    search stops at ``max_batch_size`` (default: the number of samples; larger batches repeat them).
    The model's weights, gradients, optimizer state and RNG state are restored afterwards. Each probe
    is one optimizer update through fit's own step: ``accumulate_steps`` batches of the given size, under
    the model's precision, with its gradient clipping, DDP wrapper and ``torch.compile``.

    Example::

        batch_size = ew.find_max_batch_size(model, x_train, y_train)
    """
    who = "find_max_batch_size"
    _check_model(model, who)
    data = _arrays(x, y, who)
    limit = _positive(max_batch_size, "max_batch_size", who) if max_batch_size is not None else data.n
    if method not in ("auto", "oom", "budget"):
        raise ValueError(f"{who}(method={method!r}): use 'auto', 'oom' (GPU) or 'budget'")
    device = model.device
    if method == "auto":
        method = "oom" if device.type == "cuda" else "budget"
    if method == "oom" and device.type != "cuda" and max_batch_size is None:
        raise ValueError(
            f"{who}(method='oom') on {device} needs max_batch_size: running a CPU out of memory ends the "
            "process instead of raising. Use method='budget' (the default there) or pass max_batch_size."
        )
    runner = StepRunner(model, training=True)  # fit's step: precision, accumulation, DDP, torch.compile
    snapshot = _Snapshot.take(model, runner)
    model.module.train()
    try:
        if method == "oom":

            def fits(size: int) -> bool:
                nonlocal runner
                failed = False
                try:
                    _update(runner, itertools.repeat(_batch(data, size, device)))
                    _sync(device)
                except Exception as err:
                    if not is_out_of_memory(err):
                        raise
                    failed = True
                if failed:  # outside the except block, so the traceback's tensors can be freed
                    model.optimizer.zero_grad()
                    runner = StepRunner(model, training=True)  # no half-done group or scaler stage left
                    _free_memory(device)
                return not _any_rank(failed, device)  # under torchrun: one search on every rank

            best, trials = _largest_fitting(fits, limit)
            if best == 0:
                raise RuntimeError(f"{who}: even a batch of 1 runs out of memory on {device}")
            if verbose:
                tried = ", ".join(f"{s}{'' if ok else ' (out of memory)'}" for s, ok in trials)
                print(
                    f"{who}: tried {tried}; the largest batch that fits on {device} is {best:,}", flush=True
                )
            return best

        if memory_budget_bytes is not None:
            budget = memory_budget_bytes
        else:  # under torchrun rank 0's measure, so every rank runs the same search
            budget = distributed.broadcast_int(available_ram() // 4)
        _positive(budget, "memory_budget_bytes", who)
        _update(runner, itertools.repeat(_batch(data, 1, device)))  # allocates the optimizer state
        resident = _resident_bytes(model)

        def measure(size: int) -> int:
            batch = _batch(data, size, device)
            with _AllocationCounter() as counter:
                _update(runner, itertools.repeat(batch))
            return counter.peak + sum(t.numel() * t.element_size() for t in _data.leaves(batch))

        best, points = _within_budget(measure, budget - resident, limit)
        if best == 0:
            raise ValueError(
                f"{who}: memory_budget_bytes={budget:,} is too small: the weights and optimizer state take "
                f"{resident:,} bytes and a step at batch 1 {points[0][1]:,} more; raise the budget"
            )
        if verbose:
            per = ""
            if len(points) >= 2:
                (s0, u0), (s1, u1) = sorted(points)[-2:]
                per = f", about {(u1 - u0) / max(s1 - s0, 1):,.0f} bytes per sample"
            capped = " (the limit, max_batch_size)" if best == limit else ""
            print(
                f"{who}: budget {budget / 2**20:,.1f} MiB; weights + optimizer state {resident / 2**20:,.2f} MiB"
                f"{per}; the largest batch within budget is {best:,}{capped}",
                flush=True,
            )
        return best
    finally:
        snapshot.restore(model, runner)
        _free_memory(device)
