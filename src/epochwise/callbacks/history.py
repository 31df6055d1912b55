"""History: the per-epoch record of every logged value, returned by ``fit``."""

from __future__ import annotations

from typing import Any

from .callback import Callback

__all__ = ["History"]


class History(Callback):
    """Records the epoch-end logs of a run (H1-H6).

    ``history.history`` maps each key to one value per epoch that logged it, ``history.epoch`` lists the
    0-based epoch indices that ran and ``history.params`` holds ``{"verbose", "epochs", "steps"}``.

    Example::

        history = model.fit(x, y, epochs=5, validation_split=0.2)
        history.history["val_loss"]    # five floats
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epoch = []  # H3: reset per fit; .history keeps accumulating on a reused instance (H6)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}, "epoch": list(self.epoch)}

    def __repr__(self) -> str:
        keys = ", ".join(self.history)
        return f"History(epochs={len(self.epoch)}, keys=[{keys}])"
