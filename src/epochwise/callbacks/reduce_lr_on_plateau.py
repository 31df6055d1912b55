"""ReduceLROnPlateau: lower the learning rate when the monitored value stops improving (RL1-RL6)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._monitor import MonitorCallback, check_float, check_int, check_lr_settable, check_verbose, did_you_mean

__all__ = ["ReduceLROnPlateau"]

_ARGS = ("monitor", "factor", "patience", "verbose", "mode", "min_delta", "cooldown", "min_lr")


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    The LR drops on the ``max(patience, 1)``-th consecutive epoch whose ``monitor`` value did not improve
    by more than ``min_delta`` (absolute), never below ``min_lr``, and takes effect from the next epoch.
    After a reduction, the next ``cooldown`` epochs are not counted (exactly ``cooldown`` of them; Keras
    skips one fewer). Each epoch's ``logs["learning_rate"]`` is the LR used during that epoch.

    Example::

        reduce = ew.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5)
        model.fit(x, y, epochs=50, validation_split=0.2, callbacks=[reduce])
    """

    skip_note = "the learning rate is left unchanged"

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if kwargs:  # RL1: Keras ignores unknown keywords; a misspelt argument deserves an error
            name = next(iter(kwargs))
            raise TypeError(
                f"ReduceLROnPlateau got an unexpected keyword argument {name!r}.{did_you_mean(name, _ARGS)}"
            )
        super().__init__(monitor, mode, min_delta)
        self.factor = check_float("ReduceLROnPlateau", "factor", factor)
        if not 0.0 < self.factor < 1.0:  # RL1
            raise ValueError(
                f"ReduceLROnPlateau(factor={factor!r}): factor must be between 0 and 1 (exclusive); the new "
                "learning rate is lr * factor, e.g. factor=0.5 halves it"
            )
        self.patience = check_int("ReduceLROnPlateau", "patience", patience)
        self.verbose = check_verbose("ReduceLROnPlateau", verbose)
        self.cooldown = check_int("ReduceLROnPlateau", "cooldown", cooldown)
        self.min_lr = check_float("ReduceLROnPlateau", "min_lr", min_lr)
        if self.min_lr < 0:
            raise ValueError(f"ReduceLROnPlateau(min_lr={min_lr!r}): min_lr must be >= 0")
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0
        self._reductions = 0
        self._last_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
            "direction": self.direction,
        }

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._take_resume():
            self.best, self.wait, self.cooldown_counter = None, 0, 0  # RL2
        self._reductions, self._last_lr = 0, None
        check_lr_settable(self.model, "ReduceLROnPlateau")  # RL6: fail before training, not at the first drop
        self.check_monitor()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        old_lr = float(optimizer.learning_rate)
        if logs is not None:
            logs["learning_rate"] = old_lr  # RL3: the LR of this epoch, before any change
        current = self.monitor_value(logs, f"epoch {epoch + 1}")
        if current is None:
            return
        was_cooling = self.in_cooldown()  # decided before the countdown, so exactly `cooldown` epochs skip
        if was_cooling:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.is_improvement(current, self.best):  # RL4.2
            self.best = current
            self.wait = 0
            return
        if was_cooling:
            return
        self.wait += 1  # RL4.3
        if self.wait >= self.patience and np.float32(old_lr) > np.float32(self.min_lr):  # RL4.4
            new_lr = max(old_lr * self.factor, self.min_lr)
            try:
                optimizer.learning_rate = new_lr
            except TypeError as exc:
                raise TypeError(f"ReduceLROnPlateau could not set the learning rate: {exc}") from exc
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")  # RL6
            self.cooldown_counter = self.cooldown
            self.wait = 0
            self._reductions += 1
            self._last_lr = new_lr

    def summary(self) -> str | None:
        if not self._reductions:
            return None
        times = "once" if self._reductions == 1 else f"{self._reductions} times"
        return f"learning rate reduced {times}, to {self._last_lr:g}"
