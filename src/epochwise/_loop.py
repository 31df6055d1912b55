"""The fit / evaluate / predict loops: the only place where callback hooks fire.

Read top to bottom, ``fit`` is rule L1 of the reference: train begin, then per epoch: reset metrics,
epoch begin, train mode, per batch (begin, step, end, stop check), epoch logs, eval mode, validation
through the same callback list, epoch end, stop check; then train end. The step itself does no host
sync: the loss and metrics stay on the device until something reads the logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._data import EpochIterator, first_leaf, map_structure
from ._step import StepRunner
from .callbacks.callback_list import CallbackList


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


class Tracker:
    """Running means of the loss (LO5) and the compiled metrics (ME3), kept on the device."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.metrics = list(model.compiled_metrics)
        self.n_plain = len(model._metrics)
        self.total: torch.Tensor | None = None
        self.count = 0

    def reset(self) -> None:
        self.total, self.count = None, 0
        for m in self.metrics:
            m.reset_state()

    def update(self, loss: torch.Tensor, y: Any, y_pred: Any, sw: torch.Tensor | None, n: int) -> None:
        value = loss.detach().float() * n
        self.total = value if self.total is None else self.total + value
        self.count += n
        if y is None:
            return
        pred = y_pred.detach() if isinstance(y_pred, torch.Tensor) else y_pred
        for i, m in enumerate(self.metrics):
            m.update_state(y, pred, None if i < self.n_plain else sw)

    def logs(self) -> dict[str, float]:
        """Sorted float logs (G2): one host sync for all values."""
        if self.count == 0:
            return {}
        names = ["loss"] + [m.name for m in self.metrics]
        values = [self.total / self.count] + [m.result().detach().float().reshape(()) for m in self.metrics]
        device = values[0].device
        floats = torch.stack([v.to(device) for v in values]).tolist()
        return dict(sorted(zip(names, floats)))


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
    extra: dict = field(default_factory=dict)


def _validate_now(epoch: int, freq: Any) -> bool:
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0  # F16: 1-based epoch numbers
    return (epoch + 1) in freq


def fit_loop(model: Any, plan: FitPlan, callbacks: CallbackList) -> Any:
    module, optimizer, loss_fn = model.module, model.optimizer, model._loss
    runner = StepRunner(model)
    forward_module = runner.forward_module  # torch.compile's wrapper, or the module itself
    tracker = Tracker(model)
    was_training = module.training
    model.stop_training = False
    optimizer.zero_grad()
    callbacks.on_train_begin({})
    epoch_logs: dict[str, float] = {}
    listen_begin = callbacks.listens("on_train_batch_begin")
    listen_end = callbacks.listens("on_train_batch_end")
    check_first = plan.check_first
    try:
        for epoch in range(plan.initial_epoch, plan.epochs):
            tracker.reset()
            callbacks.on_epoch_begin(epoch, {})
            module.train()
            for step, (x, y, sw) in plan.train:
                if listen_begin:
                    callbacks.on_train_batch_begin(step, {})
                n = batch_size_of(x)
                with runner.autocast():
                    y_pred = call_module(forward_module, x)
                    if check_first is not None:  # before the first update: output and target shapes, labels
                        check_first(y, y_pred)
                        check_first = None
                    loss = loss_fn(y, y_pred, sw)
                runner.backward(loss)  # steps the optimizer every accumulate_steps batches
                tracker.update(loss, y, y_pred, sw, n)
                if listen_end:
                    callbacks.on_train_batch_end(step, _memo(tracker.logs))
                if model.stop_training:  # L2
                    break
            runner.flush()
            epoch_logs = tracker.logs()
            module.eval()
            if plan.val is not None and _validate_now(epoch, plan.validation_freq):
                val_logs = evaluate_loop(model, plan.val, callbacks)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            if optimizer.schedule is not None:
                epoch_logs["learning_rate"] = float(optimizer.torch_optimizer.param_groups[0]["lr"])
            epoch_logs = dict(sorted(epoch_logs.items()))
            callbacks.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
        callbacks.on_train_end(dict(epoch_logs))
    finally:
        module.train(was_training)  # our stance on L4: the module's own mode comes back
    return callbacks.history


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
                if listen_end:
                    callbacks.on_test_batch_end(step, _memo(tracker.logs))
        logs = tracker.logs()
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
