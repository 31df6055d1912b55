"""TerminateOnNaN: stop training as soon as the training loss becomes NaN or infinite (TN1-TN3)."""

from __future__ import annotations

import math

from .callback import Callback

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Stop training when the running training loss is NaN or ±inf after a batch (TN1-TN3).

    The rest of the epoch is skipped, but that epoch's validation, ``on_epoch_end`` and ``on_train_end``
    still run (so ``EarlyStopping(restore_best_weights=True)`` can still restore). With
    ``raise_error=True`` a RuntimeError is raised at once instead. Metrics and validation are ignored.

    Example::

        model.fit(x, y, epochs=10, callbacks=[ew.callbacks.TerminateOnNaN()])
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = bool(raise_error)
        self._epoch = 0
        self._stopped: str | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._epoch, self._stopped = 0, None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")  # TN3: no loss, nothing to check
        if loss is None or math.isfinite(loss):
            return
        where = f"batch {batch + 1} of epoch {self._epoch + 1}"
        message = f"Invalid loss ({loss}) at {where} (both 1-based), terminating training"
        if self.raise_error:
            raise RuntimeError(message)
        print(f"\n{message}")  # TN2: printed whatever the verbosity, as Keras does
        self._stopped = f"stopped: loss became {loss} at {where}"
        self.model.stop_training = True

    def summary(self) -> str | None:
        return self._stopped
