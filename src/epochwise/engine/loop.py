"""The fit / evaluate / predict loops: the only place where callback hooks fire.

Read top to bottom, ``fit_loop`` is rule L1 (docs/behaviour.md): resume point, train begin, then per
epoch: reset the running logs, epoch begin, train mode, per batch (begin, step, end, after-batch, stop
check), epoch logs, eval mode, validation through the same callback list, epoch end, after-epoch, stop
check; then train end. The step does no host sync: the loss and metrics stay on the device until a
callback reads the logs.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import distributed
from ..callbacks.callback_list import BatchLogs, CallbackList
from ..data import EpochIterator, concat_outputs, first_leaf
from ..io import training_state
from .logs import Tracker
from .signals import interrupt_guard
from .step import StepRunner


@dataclass
class FitPlan:
    """What fit's loop runs, checked and prepared by ``engine.plan.prepare_fit``."""

    train: EpochIterator
    epochs: int
    initial_epoch: int
    val: EpochIterator | None = None
    validation_freq: Any = 1
    check_first: Any = None
    batch_size: int | None = None
    resume_from: Any = None


@dataclass
class LoopState:
    """Where a running fit is; owned by ``fit_loop``, read by ``io.training_state.capture``."""

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
    batches_run: int = 0  # training batches this fit ran (a resumed run counts from where it resumed)


_RUNNING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def running_state(model: Any) -> LoopState | None:
    """The state of the fit running on ``model``, or None outside fit."""
    return _RUNNING.get(model)


def fit_loop(model: Any, plan: FitPlan, callbacks: CallbackList) -> LoopState:
    module, optimizer = model.module, model.optimizer
    runner = StepRunner(model, training=True)
    st = LoopState(callbacks, Tracker(model), runner, plan.train.generator, epoch=plan.initial_epoch)
    tracker, check_first = st.tracker, plan.check_first
    tracker.track_nonfinite = True
    was_training = module.training
    model.stop_training = False
    optimizer.zero_grad()
    listen_batch = callbacks.listens("on_train_batch_begin"), callbacks.listens("on_train_batch_end")
    multi = distributed.is_distributed()
    _RUNNING[model] = st
    try:
        with interrupt_guard(st, model):
            resume = training_state.start(model, st, callbacks.resume_state(), plan.resume_from)
            first = plan.initial_epoch if resume is None else resume.epoch
            callbacks.on_train_begin({})
            last = first if resume is not None and resume.stop_training else plan.epochs
            for epoch in range(first, last):
                skip = resume.batch if resume is not None and epoch == first else 0
                tracker.reset()
                st.epoch, st.next_batch, st.epoch_end_logs = epoch, skip, None
                if skip:
                    training_state.set_lrs(optimizer, resume.epoch_begin_lrs)
                st.epoch_begin_lrs = [g["lr"] for g in optimizer.torch_optimizer.param_groups]
                callbacks.on_epoch_begin(epoch, {})
                module.train()
                for step, (x, y, sw) in _start_epoch(st, plan, resume if skip else None, model.device):
                    if listen_batch[0]:
                        callbacks.on_train_batch_begin(step, {})
                    loss, y_pred = runner.train_step(x, y, sw, check_first)
                    check_first = None
                    tracker.update(loss, y, y_pred, sw, batch_size_of(x))
                    st.next_batch = step + 1
                    st.batches_run += 1
                    if listen_batch[1]:
                        callbacks.on_train_batch_end(step, BatchLogs(tracker.logs, tracker.local_logs))
                    if multi:  # one rank's stop (a callback, a signal) stops every rank
                        _agree(st, model)
                    callbacks.after_train_batch(step)
                    if model.stop_training:  # L2
                        break
                if st.interrupted:  # a signal: no validation and no epoch end for a partial epoch
                    callbacks.on_interrupt(st.interrupted)
                    break
                runner.flush()
                epoch_logs = tracker.logs()
                _note_nonfinite(st, epoch, epoch_logs, stopped=model.stop_training)
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
                callbacks.after_epoch(epoch)
                if multi:
                    distributed.barrier()  # rank 0 wrote its files; the others wait for them
                st.epoch_end_logs = None
                if model.stop_training:
                    break
            if not st.interrupted and optimizer.use_ema:  # the averaged weights go in before train end (Keras)
                optimizer.finalize_variable_values()
                if runner.fsdp is not None and model._settings.gathered:  # full parameters gathered for validation
                    distributed.reshard_for_training(runner.fsdp)  # hold the raw weights: gathered again when read
            callbacks.on_train_end(dict(st.epoch_logs))
    except torch.OutOfMemoryError as err:
        callbacks.on_exception(err)
        raise torch.OutOfMemoryError(
            f"out of memory while training with batches of {plan.batch_size} samples; try a smaller batch_size"
            f" (ew.find_max_batch_size finds the largest that fits). {err}") from err
    except BaseException as err:
        callbacks.on_exception(err)  # L3: no on_train_end after an exception
        raise
    finally:
        module.train(was_training)  # our stance on L4: the module's own mode comes back
        _RUNNING.pop(model, None)
    return st


def _validate_now(epoch: int, freq: Any) -> bool:
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0  # F16: 1-based epoch numbers
    return (epoch + 1) in freq


def _start_epoch(st: LoopState, plan: FitPlan, resume: Any, device: Any) -> Any:
    """The epoch's batches; a resumed epoch redraws the same data order and skips what was done."""
    sampler = getattr(getattr(plan.train.batches, "source", None), "sampler", None)
    if hasattr(sampler, "set_epoch"):  # DistributedSampler / ShardSampler: a new order each epoch
        sampler.set_epoch(st.epoch)
    if resume is None:
        st.epoch_rng = training_state.rng_state(st.generator)
        return plan.train.epoch(0)
    training_state.set_rng_state(resume.epoch_rng, st.generator)
    st.epoch_rng = resume.epoch_rng
    batches = plan.train.epoch(resume.batch)
    training_state.set_rng_state(resume.rng, st.generator)  # dropout and everything else continue as they were
    if resume.tracker is not None:
        st.tracker.load_state_dict(resume.tracker, device)
    return batches


def _agree(st: LoopState, model: Any) -> None:
    flags = distributed.sum_numbers([float(bool(model.stop_training)), float(st.interrupted or 0)], model.device)
    model.stop_training = bool(flags[0] > 0)
    if flags[1] > 0 and not st.interrupted:
        st.interrupted = int(flags[1]) if int(flags[1]) in (2, 15) else 2


def _note_nonfinite(st: LoopState, epoch: int, logs: dict, stopped: bool) -> None:
    """The end-of-fit note on a NaN loss, unless a callback stopped the run at that batch and said so."""
    if st.nonfinite is None and not stopped and not math.isfinite(logs.get("loss", 0.0)):
        batch = st.tracker.first_nonfinite_batch()
        st.nonfinite = (epoch, batch if batch is not None else 0)


def batch_size_of(x: Any) -> int:
    leaf = first_leaf(x)
    return int(leaf.shape[0]) if leaf is not None else 0


def evaluate_loop(model: Any, batches: EpochIterator, callbacks: CallbackList, check_first: Any = None) -> dict:
    """One pass in eval mode under inference_mode (E2, L1.3.7); running logs to the test hooks."""
    module = model.module
    runner = StepRunner(model)
    tracker = Tracker(model)  # the same metric objects as training: epoch logs were read already (ME4)
    tracker.reset()
    was_training = module.training
    module.eval()
    callbacks.on_test_begin({})
    listen_begin, listen_end = callbacks.listens("on_test_batch_begin"), callbacks.listens("on_test_batch_end")
    try:
        with torch.inference_mode():
            for step, (x, y, sw) in batches:
                if listen_begin:
                    callbacks.on_test_batch_begin(step, {})
                loss, y_pred = runner.test_step(x, y, sw, check_first)
                check_first = None
                tracker.update(loss, y, y_pred, sw, batch_size_of(x))
                if listen_end:  # this rank's running values (shards may differ in length)
                    callbacks.on_test_batch_end(step, BatchLogs(tracker.local_logs))
        logs = tracker.logs()
        if not logs:  # under torchrun: no rank had a batch (one process raises before this)
            raise ValueError(f"{batches.what} yielded no batches on any process")
    finally:
        module.train(was_training)
    callbacks.on_test_end(dict(logs))
    return logs


def predict_loop(model: Any, batches: EpochIterator, callbacks: CallbackList, check_first: Any = None) -> Any:
    """P2, P4: outputs of every batch, concatenated into NumPy arrays with the output's structure."""
    module = model.module
    runner = StepRunner(model)
    was_training = module.training
    module.eval()
    outputs: list[Any] = []
    callbacks.on_predict_begin({})
    listen_begin, listen_end = callbacks.listens("on_predict_batch_begin"), callbacks.listens("on_predict_batch_end")
    try:
        with torch.inference_mode():
            for step, (x, _y, _sw) in batches:
                if listen_begin:
                    callbacks.on_predict_batch_begin(step, {})
                y_pred = runner.predict_step(x)
                if check_first is not None:
                    check_first(None, y_pred)
                    check_first = None
                outputs.append(y_pred)
                if listen_end:
                    callbacks.on_predict_batch_end(step, {"outputs": y_pred})
    finally:
        module.train(was_training)
    callbacks.on_predict_end({})
    if distributed.is_distributed():  # each rank predicted a contiguous shard: every rank gets all, in order
        outputs = [p for p in distributed.gather_objects(concat_outputs(outputs) if outputs else None) if p is not None]
    if not outputs:
        raise ValueError("predict got no batches: the input is empty")
    return concat_outputs(outputs)
