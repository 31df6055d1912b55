"""The monitor rule shared by EarlyStopping, ModelCheckpoint and ReduceLROnPlateau (M1-M4).

Written once: which way the monitored value should move (``mode`` and the ``auto`` rule), whether a
value improves on a reference (``min_delta``, strict), and what happens when the monitored key is
misspelt (an error or warning at ``on_train_begin``) or missing at an epoch end (one warning per fit,
then the epoch is skipped). Also the small argument checks the callbacks share.
"""

from __future__ import annotations

import math
import warnings
from numbers import Real
from typing import Any

import numpy as np

from .. import text
from ..text import did_you_mean, format_value
from .callback import Callback

__all__ = [
    "MonitorCallback",
    "check_float",
    "check_int",
    "check_lr_settable",
    "check_verbose",
    "format_value",
]

_MODES = ("auto", "min", "max")


def check_int(owner: str, name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, else a ValueError naming the argument."""
    return text.check_int(value, name, minimum=minimum, owner=owner)


def check_verbose(owner: str, value: Any) -> int:
    """``verbose`` as an int >= 0 (``True``/``False`` count as 1/0)."""
    return check_int(owner, "verbose", int(value) if isinstance(value, bool) else value)


def check_float(owner: str, name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """``value`` as a finite float (or None when allowed), else a ValueError naming the argument."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        extra = " or None" if allow_none else ""
        raise ValueError(f"{owner}({name}={value!r}): {name} must be a finite number{extra}")
    return float(value)


def check_lr_settable(model: Any, owner: str) -> Any:
    """The model's optimizer, when a callback may set its learning rate (RL6, LS3); else ValueError."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"{owner} changes the optimizer's learning rate, but the model has no optimizer: "
            "call model.compile(optimizer=...) before fit"
        )
    schedule = getattr(optimizer, "schedule", None)
    if schedule is not None:
        raise ValueError(
            f"{owner} cannot change the learning rate of an optimizer built with a learning-rate schedule "
            f"({type(schedule).__name__}), which sets it at every step. Compile with a float learning_rate "
            f"to use {owner}, or drop {owner} and keep the schedule."
        )
    return optimizer


class MonitorCallback(Callback):
    """Base of the callbacks that watch one logged value (rules M1-M4).

    ``direction`` is ``"min"`` or ``"max"`` once resolved. Subclasses call :meth:`check_monitor` in
    ``on_train_begin``, :meth:`monitor_value` to read the value, and :meth:`is_improvement` to compare.
    """

    skip_note = "this epoch is skipped"  # what a missing monitor means for the subclass (warning text)

    def __init__(
        self, monitor: str, mode: str = "auto", min_delta: float = 0.0, baseline: float | None = None
    ):
        super().__init__()
        owner = type(self).__name__
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                f"{owner}(monitor={monitor!r}): monitor must be the name of a logged value, e.g. 'val_loss'"
            )
        if mode not in _MODES:  # M1: Keras warns and falls back to "auto"; a typo here deserves an error
            raise ValueError(
                f"{owner}(mode={mode!r}): mode must be 'auto', 'min' or 'max'.{did_you_mean(mode, _MODES)}"
            )
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(check_float(owner, "min_delta", min_delta))  # M4: stored as |min_delta|
        self.baseline = check_float(owner, "baseline", baseline, allow_none=True)
        self.direction: str | None = None if mode == "auto" else mode
        self._missing_warned = False
        self._resume_pending = False

    # --- state ------------------------------------------------------------------------------
    def state_detail(self) -> str:
        return self.monitor

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next ``on_train_begin`` keeps it instead of resetting."""
        super().load_state_dict(state)
        self._resume_pending = True

    def _take_resume(self) -> bool:
        """True (once) when loaded state must survive this ``on_train_begin``."""
        pending, self._resume_pending = self._resume_pending, False
        return pending

    # --- the rule ---------------------------------------------------------------------------
    def check_monitor(self, batch_level: bool = False) -> None:
        """At ``on_train_begin``: catch a misspelt monitor and resolve the direction before any step.

        When the model announces the keys fit will log (``model.expected_log_keys``) and ``monitor`` is
        not among them, ``mode="auto"`` raises ValueError and an explicit mode warns.
        """
        self._missing_warned = False
        keys = getattr(self.model, "expected_log_keys", None)
        if keys is not None and self.monitor != "learning_rate":  # learning_rate comes from LR callbacks
            if batch_level:  # batch logs are running training means (MC4): no val_*, no learning_rate
                keys = [k for k in keys if not k.startswith("val_") and k != "learning_rate"]
            if self.monitor not in keys:
                message = self._unknown_monitor_message(sorted(keys), batch_level)
                if self.mode == "auto":
                    raise ValueError(message)
                warnings.warn(message, UserWarning, stacklevel=3)
                self._missing_warned = True
        self.resolve_direction()

    def _unknown_monitor_message(self, keys: list[str], batch_level: bool) -> str:
        where = "each training batch" if batch_level else "each epoch"
        text = f"{type(self).__name__}(monitor={self.monitor!r}): fit logs {keys} at {where}, not {self.monitor!r}."
        base = self.monitor[4:] if self.monitor.startswith("val_") else None
        if base is not None and base in keys and not batch_level:
            text += (
                f" '{self.monitor}' exists only when fit validates: pass validation_data=... or "
                f"validation_split=... to fit, or monitor {base!r}."
            )
        else:
            text += did_you_mean(self.monitor, keys)
        return text + " Pass one of the logged names as monitor=."

    def resolve_direction(self) -> str:
        """``"min"`` or ``"max"`` from ``mode``, or for ``auto`` by rule M2; cached on the instance (M3)."""
        if self.direction is not None:
            return self.direction
        name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        if name == "loss":
            self.direction = "min"
        for metric in getattr(self.model, "compiled_metrics", None) or []:
            if getattr(metric, "name", None) == name and getattr(metric, "direction", None) in ("min", "max"):
                self.direction = metric.direction
        if self.direction is None:
            raise ValueError(
                f"{type(self).__name__}(monitor={self.monitor!r}, mode='auto'): cannot tell whether {name!r} "
                "should go down or up: it is not 'loss' and no compiled metric of that name declares a "
                "direction. Pass mode='min' (lower is better) or mode='max' (higher is better)."
            )
        return self.direction

    def is_improvement(self, current: float, reference: float | None) -> bool:
        """M4: strict improvement by more than ``min_delta``; anything beats a ``None`` reference.

        Compared as Keras does: ``current -/+ min_delta`` in Python floats, then both sides in float32
        (Keras's ``ops.less`` turns Python floats into the backend's float32), so a change equal to
        ``min_delta`` in decimal (1.0939 -> 1.0929 with 0.001) is judged the same way.
        """
        if reference is None:
            return True
        with np.errstate(over="ignore"):  # beyond float32's range: inf, as in Keras
            if self.resolve_direction() == "min":
                return bool(np.float32(current + self.min_delta) < np.float32(reference))
            return bool(np.float32(current - self.min_delta) > np.float32(reference))

    def monitor_value(self, logs: dict | None, where: str) -> float | None:
        """``logs[monitor]``, or None after warning (once per fit) that it is missing (ES3.2, RL3, MC6)."""
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            if not self._missing_warned:
                self._missing_warned = True
                warnings.warn(
                    f"{type(self).__name__}: monitor {self.monitor!r} is not available in the logs of {where}, "
                    f"so {self.skip_note}. Available keys: {sorted(logs)}. (Shown once per fit.)",
                    UserWarning,
                    stacklevel=3,
                )
            return None
        return float(value)
