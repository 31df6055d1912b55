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
        self._resumed = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._resumed:  # a resumed run continues the History it had (our stance on BR7)
            self._resumed = False
            return
        self.epoch = []  # H3: reset per fit; .history keeps accumulating on a reused instance (H6)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def plot(self, path: Any = None, **kwargs: Any) -> Any:
        """Learning curves of this run as a matplotlib Figure, saved to ``path`` (``.png``/``.svg``) if given.

        Delegates to :func:`epochwise.plotting.plot_history` (keyword arguments too); the best and
        early-stopping epochs come from ``self.early_stopping`` when that attribute holds the run's
        EarlyStopping. Example: ``model.fit(...).plot("curves.png")``.
        """
        from ..insight.plots import plot_history  # lazy: matplotlib stays optional

        kwargs.setdefault("early_stopping", getattr(self, "early_stopping", None))
        return plot_history(self, path, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}, "epoch": list(self.epoch)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.epoch = list(state["epoch"])
        self._resumed = True

    def __repr__(self) -> str:
        keys = ", ".join(self.history)
        return f"History(epochs={len(self.epoch)}, keys=[{keys}])"
