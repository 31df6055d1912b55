"""The fit / evaluate / predict loops: the only place where callback hooks fire.

Read top to bottom, ``fit`` is rule L1 of the reference: train begin, then per epoch: reset metrics,
epoch begin, train mode, per batch (begin, step, end, stop check), epoch logs, eval mode, validation
through the same callback list, epoch end, stop check; then train end. The step itself does no host
sync: the loss and metrics stay on the device until something reads the logs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..callbacks.callback_list import CallbackList
from ..data import EpochIterator, first_leaf, map_structure
from ..distributed import core as distributed
from ..io import training_state as _resume
from .logs import Tracker
from .signals import interrupt_guard
from .step import StepRunner


def call_module(module: torch.nn.Module, x: Any) -> Any:
    """A tuple of inputs goes in as positional arguments, a dict as keyword arguments."""
    if isinstance(x, (tuple, list)):
        return module(*x)
    if isinstance(x, dict):
        return module(**x)
    return module(x)


def batch_size_of(x: Any) -> int:
    leaf = first_leaf(x)
    return int(leaf.shape[0]) if leaf is not None else 0


@dataclass
class FitPlan:
    """Everything fit's loop needs, prepared and validated by ``Model.fit``."""

    train: EpochIterator
    epochs: int
    initial_epoch: int
    steps: int | None
    val: EpochIterator | None = None
    validation_freq: Any = 1
    check_first: Callable[[Any, Any], None] | None = None
    run_plan: str | None = None
    verbose: int = 1
    batch_size: int | None = None
    resume_from: Any = None
    extra: dict = field(default_factory=dict)


@dataclass
class LoopState:
    """Where fit is, for BackupAndRestore and full-state checkpoints (see ``_resume.capture``)."""

    callbacks: CallbackList
    tracker: Tracker
    runner: StepRunner
    generator: torch.Generator | None
    epoch: int = 0
    next_batch: int = 0  # batches of ``epoch`` already done
    epoch_rng: dict | None = None  # every RNG as the epoch began, before its data order was drawn
    epoch_begin_lrs: list[float] | None = None  # the optimizer's LRs before on_epoch_begin
    epoch_logs: dict = field(default_factory=dict)  # the last finished epoch's logs
    epoch_end_logs: dict | None = None  # set while on_epoch_end runs
    interrupted: int | None = None  # the signal that asked the run to stop
    nonfinite: tuple[int, int] | None = None  # (epoch, batch) where the loss first became NaN or inf


def _validate_now(epoch: int, freq: Any) -> bool:
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0  # F16: 1-based epoch numbers
    return (epoch + 1) in freq


def fit_loop(model: Any, plan: FitPlan, callbacks: CallbackList) -> tuple[Any, LoopState]:
    module, loss_fn, optimizer = model.module, model._loss, model.optimizer
    runner = StepRunner(model, training=True)
    forward_module = runner.forward_module  # DDP's and torch.compile's wrappers, or the module itself
    tracker = Tracker(model)
    tracker.track_nonfinite = not any(type(cb).__name__ == "TerminateOnNaN" for cb in callbacks.callbacks)
    st = LoopState(callbacks, tracker, runner, plan.train.generator, epoch=plan.initial_epoch)
    model._loop_state = st
    was_training = module.training
    model.stop_training = False
    optimizer.zero_grad()
    listen_begin = callbacks.listens("on_train_batch_begin")
    listen_end = callbacks.listens("on_train_batch_end")
    after_batch = [cb._after_train_batch_end for cb in callbacks.callbacks if hasattr(cb, "_after_train_batch_end")]
    after_epoch = [cb._after_epoch_end for cb in callbacks.callbacks if hasattr(cb, "_after_epoch_end")]
    check_first = plan.check_first
    multi = distributed.is_distributed()
    try:
        with interrupt_guard(st, model):
            resume = _resume.start(model, plan, callbacks, runner)  # BackupAndRestore or resume_from
            first = plan.initial_epoch if resume is None else resume.epoch
            callbacks.on_train_begin({})
            for epoch in range(first, plan.epochs if resume is None or not resume.stop_training else first):
                skip = resume.batch if resume is not None and epoch == first else 0
                tracker.reset()
                st.epoch, st.next_batch, st.epoch_end_logs = epoch, skip, None
                if skip:
                    _resume.set_lrs(optimizer, resume.epoch_begin_lrs)
                st.epoch_begin_lrs = [g["lr"] for g in optimizer.torch_optimizer.param_groups]
                callbacks.on_epoch_begin(epoch, {})
                module.train()
                batches = _start_epoch(st, plan, resume if skip else None, tracker, model.device)
                for step, (x, y, sw) in batches:
                    if listen_begin:
                        callbacks.on_train_batch_begin(step, {})
                    n = batch_size_of(x)
                    with runner.sync_context():
                        with runner.autocast():
                            y_pred = call_module(forward_module, x)
                            if check_first is not None:  # before the first update: shapes, labels
                                check_first(y, y_pred)
                                check_first = None
                            loss = loss_fn(y, y_pred, sw)
                        runner.backward(loss)  # steps the optimizer every accumulate_steps batches
                    tracker.update(loss, y, y_pred, sw, n)
                    st.next_batch = step + 1
                    if listen_end:
                        callbacks.on_train_batch_end(step, _memo(tracker.logs), tracker.local_logs)
                    if multi:  # one rank's stop (a callback, a signal) stops every rank
                        _agree(st, model)
                    for hook in after_batch:
                        hook(step)
                    if after_batch and multi:
                        distributed.barrier()  # rank 0 wrote the backup
                    if model.stop_training:  # L2
                        break
                if st.interrupted:  # a signal: no validation and no epoch end for a partial epoch
                    for cb in callbacks.callbacks:  # the backup holds the live weights, before on_train_end
                        if hasattr(cb, "_after_interrupt"):
                            cb._after_interrupt()
                    break
                runner.flush()
                epoch_logs = tracker.logs()
                _note_nonfinite(st, epoch, epoch_logs)
                module.eval()
                if plan.val is not None and _validate_now(epoch, plan.validation_freq):
                    val_logs = evaluate_loop(model, plan.val, callbacks)
                    epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
                if optimizer.schedule is not None:
                    epoch_logs["learning_rate"] = float(optimizer.torch_optimizer.param_groups[0]["lr"])
                epoch_logs = dict(sorted(epoch_logs.items()))
                st.epoch, st.next_batch, st.epoch_rng = epoch + 1, 0, None
                st.epoch_logs = st.epoch_end_logs = epoch_logs
                callbacks.on_epoch_end(epoch, epoch_logs)
                if multi:
                    _agree(st, model)
                for hook in after_epoch:
                    hook(epoch)
                if multi:
                    distributed.barrier()  # rank 0 wrote its files; the others wait for them
                st.epoch_end_logs = None
                if model.stop_training:
                    break
            callbacks.on_train_end(dict(st.epoch_logs))
    except torch.OutOfMemoryError as err:
        _close_files(callbacks)
        raise torch.OutOfMemoryError(
            f"out of memory while training with batches of {plan.batch_size} samples; try a smaller batch_size"
            f" (ew.find_max_batch_size finds the largest that fits). {err}") from err
    except BaseException:
        _close_files(callbacks)
        raise
    finally:
        module.train(was_training)  # our stance on L4: the module's own mode comes back
        model._loop_state = None
    return callbacks.history, st


def _start_epoch(st: LoopState, plan: FitPlan, resume: Any, tracker: Tracker, device: Any) -> Any:
    """The epoch's batches; a resumed epoch redraws the same data order and skips what was done."""
    sampler = getattr(getattr(plan.train.batches, "source", None), "sampler", None)
    if hasattr(sampler, "set_epoch"):  # DistributedSampler / ShardSampler: a new order each epoch
        sampler.set_epoch(st.epoch)
    if resume is None:
        st.epoch_rng = _resume.rng_state(st.generator)
        return plan.train.epoch(0)
    _resume.set_rng_state(resume.epoch_rng, st.generator)
    st.epoch_rng = resume.epoch_rng
    batches = plan.train.epoch(resume.batch)
    _resume.set_rng_state(resume.rng, st.generator)  # dropout and everything else continue as they were
    if resume.tracker is not None:
        tracker.load_state_dict(resume.tracker, device)
    return batches


def _agree(st: LoopState, model: Any) -> None:
    flags = distributed.sum_numbers([float(bool(model.stop_training)), float(st.interrupted or 0)], model.device)
    model.stop_training = bool(flags[0] > 0)
    if flags[1] > 0 and not st.interrupted:
        st.interrupted = int(flags[1]) if int(flags[1]) in (2, 15) else 2

def _note_nonfinite(st: LoopState, epoch: int, logs: dict) -> None:
    if st.nonfinite is None and st.tracker.track_nonfinite and not math.isfinite(logs.get("loss", 0.0)):
        batch = st.tracker.first_nonfinite_batch()
        st.nonfinite = (epoch, batch if batch is not None else 0)


def _close_files(callbacks: CallbackList) -> None:
    """After an exception (L3: no on_train_end), callbacks still close what they hold open."""
    for cb in callbacks.callbacks:
        close = getattr(cb, "_close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


def evaluate_loop(model: Any, batches: EpochIterator, callbacks: CallbackList) -> dict:
    """One pass in eval mode under inference_mode (E2, L1.3.7); running logs to the test hooks."""
    module, loss_fn = model.module, model._loss
    runner = StepRunner(model)
    tracker = Tracker(model)  # the same metric objects as training: epoch logs were read already (ME4)
    tracker.reset()
    was_training = module.training
    module.eval()
    callbacks.on_test_begin({})
    listen_begin = callbacks.listens("on_test_batch_begin")
    listen_end = callbacks.listens("on_test_batch_end")
    try:
        with torch.inference_mode():
            for step, (x, y, sw) in batches:
                if listen_begin:
                    callbacks.on_test_batch_begin(step, {})
                with runner.autocast():
                    y_pred = call_module(runner.forward_module, x)
                    loss = loss_fn(y, y_pred, sw)
                tracker.update(loss, y, y_pred, sw, batch_size_of(x))
                if listen_end:  # this rank's running values (shards may differ in length)
                    callbacks.on_test_batch_end(step, tracker.local_logs)
        logs = tracker.logs()
        if not logs:  # under torchrun: no rank had a batch (one process raises before this)
            raise ValueError(f"{batches.what} yielded no batches on any process")
    finally:
        module.train(was_training)
    callbacks.on_test_end(dict(logs))
    return logs


def predict_loop(model: Any, batches: EpochIterator, callbacks: CallbackList) -> Any:
    """P2, P4: outputs of every batch, concatenated into NumPy arrays with the output's structure."""
    module = model.module
    runner = StepRunner(model)
    was_training = module.training
    module.eval()
    outputs: list[Any] = []
    callbacks.on_predict_begin({})
    listen_begin = callbacks.listens("on_predict_batch_begin")
    listen_end = callbacks.listens("on_predict_batch_end")
    try:
        with torch.inference_mode():
            for step, (x, _y, _sw) in batches:
                if listen_begin:
                    callbacks.on_predict_batch_begin(step, {})
                with runner.autocast():
                    y_pred = call_module(runner.forward_module, x)
                outputs.append(y_pred)
                if listen_end:
                    callbacks.on_predict_batch_end(step, {"outputs": y_pred})
    finally:
        module.train(was_training)
    callbacks.on_predict_end({})
    if distributed.is_distributed():  # each rank predicted a contiguous shard: every rank gets all, in order
        parts = [p for p in distributed.gather_objects(_concat(outputs) if outputs else None) if p is not None]
        if not parts:
            raise ValueError("predict got no batches: the input is empty")
        return _concat(parts)
    if not outputs:
        raise ValueError("predict got no batches: the input is empty")
    return _concat(outputs)


def _concat(outputs: list[Any]) -> Any:
    head = outputs[0]
    if isinstance(head, dict):
        return {k: _concat([o[k] for o in outputs]) for k in head}
    if isinstance(head, (tuple, list)):
        return type(head)(_concat([o[i] for o in outputs]) for i in range(len(head)))
    if isinstance(head, torch.Tensor):
        return (
            torch.cat([o.float() if o.dtype in (torch.bfloat16, torch.float16) else o for o in outputs])
            .cpu()
            .numpy()
        )
    return np.concatenate([np.asarray(o) for o in outputs])


def _memo(fn: Callable[[], dict]) -> Callable[[], dict]:
    """The logs of one batch, computed at most once however many callbacks read them (G7)."""
    cache: list[dict] = []

    def get() -> dict:
        if not cache:
            cache.append(fn())
        return cache[0]

    return get


__all__ = ["call_module", "fit_loop", "evaluate_loop", "predict_loop", "FitPlan", "Tracker", "map_structure"]
