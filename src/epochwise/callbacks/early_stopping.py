"""EarlyStopping: stop training when the monitored value stops improving (ES1-ES8)."""

from __future__ import annotations

from typing import Any

from ._monitor import MonitorCallback, check_int, check_verbose, format_value

__all__ = ["EarlyStopping"]


class EarlyStopping(MonitorCallback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras rules ES1-ES8).

    Training stops on the ``max(patience, 1)``-th consecutive epoch without an improvement of more
    than ``min_delta`` (so ``patience=0`` acts like ``patience=1``, as in Keras). With ``baseline`` the
    count only restarts on an epoch that also beats the baseline. With ``restore_best_weights`` the
    weights of the best epoch are put back when training ends, whether or not this callback stopped it.
    Epochs before ``start_from_epoch`` (0-based) are ignored. After fit, ``stopped_epoch`` (0 if it
    never stopped), ``best``, ``best_epoch`` (0-based) and ``wait`` are readable.

    Example::

        stop = ew.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
        model.fit(x, y, epochs=100, validation_split=0.2, callbacks=[stop])
        print(stop.stopped_epoch, stop.best_epoch, stop.best)
    """

    skip_note = "this epoch is not counted"

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta, baseline)
        self.patience = check_int("EarlyStopping", "patience", patience)
        self.verbose = check_verbose("EarlyStopping", verbose)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_int("EarlyStopping", "start_from_epoch", start_from_epoch)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_weights: dict[str, Any] | None = None
        self.best_epoch = 0
        self._last_epoch: int | None = None
        self._restored = False

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "direction": self.direction,
        }

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._take_resume():
            self._reset()  # ES2, C3: a reused instance starts fresh
        self._last_epoch, self._restored = None, False
        self.check_monitor()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._last_epoch = epoch
        current = self.monitor_value(logs, f"epoch {epoch + 1}")  # ES3.2: missing -> not counted
        if current is None or epoch < self.start_from_epoch:  # ES3.3
            return
        if self.restore_best_weights and self.best_weights is None:  # ES3.4
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1  # ES3.5
        if self.is_improvement(current, self.best):  # ES3.6: an improving epoch never stops training
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self.is_improvement(current, self.baseline):  # ES5
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:  # ES3.7
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        stopped = self.stopped_epoch > 0
        if stopped and self.verbose > 0:
            print(f"\nEpoch {self.stopped_epoch + 1}: early stopping ({self._reason()}).")  # ES7
        if self.restore_best_weights and self.best_weights is not None:  # ES6: whenever a snapshot exists
            if self.verbose > 0:
                print(
                    f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1} "
                    f"({self.monitor} {format_value(self.best)}); the model now holds them."
                )
            self.model.set_weights(self.best_weights)
            self._restored = True
        elif stopped and self.verbose > 0:
            print(
                f"The model keeps the weights of epoch {self.stopped_epoch + 1}; the best was epoch "
                f"{self.best_epoch + 1} ({self.monitor} {format_value(self.best)}). Pass "
                "restore_best_weights=True to get those back."
            )

    def _reason(self) -> str:
        if self.baseline is not None and (
            self.best is None or not self.is_improvement(self.best, self.baseline)
        ):
            return f"{self.monitor} did not beat the baseline {self.baseline:g} for {self.wait} epochs"
        return f"{self.monitor} did not improve by > {self.min_delta:g} for {self.wait} epochs"

    def summary(self) -> str | None:
        parts = []
        if self.stopped_epoch > 0:
            epochs = self.params.get("epochs")
            of = f" of {epochs}" if epochs is not None else ""
            parts.append(f"stopped at epoch {self.stopped_epoch + 1}{of} ({self._reason()})")
        if self._restored:
            parts.append(
                f"weights restored from epoch {self.best_epoch + 1} ({self.monitor} {format_value(self.best)})"
            )
        return "; ".join(parts) or None
