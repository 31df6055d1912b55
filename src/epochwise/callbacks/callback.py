"""The callback base class: every Keras hook, each a no-op until a subclass overrides it."""

from __future__ import annotations

from typing import Any

__all__ = ["Callback"]


class Callback:
    """Base class for objects that the fit / evaluate / predict loops call at set moments.

    Hooks get ``(logs)``, ``(epoch, logs)`` or ``(batch, logs)``; ``epoch`` and ``batch`` are
    0-based (rule L6) and ``logs`` is always a dict of Python floats (G1, G2). ``self.model`` (the
    :class:`epochwise.Model`) and ``self.params`` (``{"verbose", "epochs", "steps"}``) are set
    before ``on_train_begin`` (C1).

    Example::

        class PrintLoss(ew.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                print(epoch + 1, logs["loss"])

    Hooks that a subclass does not override cost nothing: the loop does not compute batch logs
    unless some callback overrides a batch hook (see ``CallbackList``).

    Callbacks that carry state a resumed run needs override :meth:`state_dict` and
    :meth:`load_state_dict`; the values must be tensors, numbers, strings, None, or lists/dicts of
    them, so that ``torch.load(weights_only=True)`` can read them back.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    # --- state for resume -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state a resumed run needs; empty for stateless callbacks."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for key, value in state.items():
            setattr(self, key, value)

    def summary(self) -> str | None:
        """A short sentence for the end-of-fit summary when this callback acted, else None."""
        return None

    # --- fit --------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

    def on_train_end(self, logs: dict | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_begin(batch, logs)  # C1: the legacy hook is called from the default

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass

    # --- evaluate (and fit's validation) ------------------------------------------------------
    def on_test_begin(self, logs: dict | None = None) -> None:
        pass

    def on_test_end(self, logs: dict | None = None) -> None:
        pass

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass

    # --- predict ----------------------------------------------------------------------------
    def on_predict_begin(self, logs: dict | None = None) -> None:
        pass

    def on_predict_end(self, logs: dict | None = None) -> None:
        pass

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass
