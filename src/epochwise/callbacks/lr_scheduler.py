"""LearningRateScheduler: set the learning rate at the start of every epoch (LS1-LS5)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..optim.schedules import LearningRateSchedule
from ._monitor import check_lr_settable, check_verbose
from .callback import Callback

__all__ = ["LearningRateScheduler"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_USAGE = "schedule must be a function (epoch) -> lr or (epoch, lr) -> lr, or an epochwise.schedules schedule"


def _is_lr_schedule(schedule: Any) -> bool:
    return isinstance(schedule, LearningRateSchedule)


def _adapt(schedule: Any) -> Callable[[int, float], Any]:
    """Call ``schedule`` with the arguments its signature takes (LS2), decided once, up front."""
    if _is_lr_schedule(schedule):  # a step schedule driven per epoch: step = epoch
        return lambda epoch, lr: float(schedule(epoch))
    if isinstance(schedule, type):
        raise TypeError(
            f"LearningRateScheduler(schedule={schedule.__name__}): pass an instance, not the class"
        )
    if not callable(schedule):
        raise TypeError(f"LearningRateScheduler(schedule={schedule!r}): {_USAGE}")
    try:
        params = list(inspect.signature(schedule).parameters.values())
    except (TypeError, ValueError):  # no signature (some builtins): use Keras's two-argument call
        return schedule
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return schedule
    positional = [p for p in params if p.kind in _POSITIONAL]
    required_keywords = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if not positional or required_keywords or sum(p.default is p.empty for p in positional) > 2:
        raise TypeError(
            f"LearningRateScheduler: {_USAGE}; got a callable with signature {inspect.signature(schedule)}"
        )
    if len(positional) == 1:
        return lambda epoch, lr: schedule(epoch)
    return schedule


def _check_lr(value: Any, epoch: int) -> float:
    """LS3: a Python or NumPy float, finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, (float, np.floating)):
        raise ValueError(
            f"LearningRateScheduler: the schedule returned {value!r} ({type(value).__name__}) for epoch {epoch}; "
            "it must return a float: end it with `return float(...)` (or `.item()` for a tensor)"
        )
    lr = float(value)
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(
            f"LearningRateScheduler: the schedule returned {lr} for epoch {epoch}; a learning rate must be finite and >= 0"
        )
    return lr


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at each epoch start to ``schedule(epoch, lr)`` (LS1-LS5).

    ``epoch`` is the absolute 0-based epoch and ``lr`` the current learning rate; a one-argument
    ``schedule(epoch)`` works too, as does an ``epochwise.schedules`` schedule (evaluated at
    step = epoch). The value must be a float. Each epoch's ``logs["learning_rate"]`` is the LR used.

    Example::

        import math

        def scheduler(epoch, lr):
            return lr if epoch < 10 else lr * math.exp(-0.1)

        model.fit(x, y, epochs=20, callbacks=[ew.callbacks.LearningRateScheduler(scheduler)])
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        self.schedule = schedule
        self._call = _adapt(schedule)
        self.verbose = check_verbose("LearningRateScheduler", verbose)
        self._lr: float | None = None
        self._first_lr: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        check_lr_settable(self.model, "LearningRateScheduler")  # LS3: fail before training
        self._lr = self._first_lr = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        current = float(optimizer.learning_rate)
        if self._first_lr is None:
            self._first_lr = current
        lr = _check_lr(self._call(epoch, current), epoch)  # LS2: before the epoch's first batch
        optimizer.learning_rate = lr
        self._lr = lr
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")  # LS4

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:  # LS5: the LR in effect during this epoch
            logs["learning_rate"] = (
                self._lr if self._lr is not None else float(self.model.optimizer.learning_rate)
            )

    def summary(self) -> str | None:
        if self._lr is None or self._lr == self._first_lr:
            return None
        return f"learning rate scheduled from {self._first_lr:g} to {self._lr:g}"
