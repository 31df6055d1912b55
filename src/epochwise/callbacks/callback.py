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
    them, so that ``torch.load(weights_only=True)`` can read them back. The state is saved under
    :attr:`state_key`, so a reordered callback list, or a subclass of a built-in callback, gets its own
    state back.

    Besides Keras's hooks, fit calls five more that any callback may override (the built-in ones use
    nothing else): :meth:`after_train_batch` and :meth:`after_epoch` (every callback has seen the batch
    or epoch end: the moment to save the run), :meth:`on_interrupt` (Ctrl-C or SIGTERM ended the run),
    :meth:`on_exception` (fit is raising: close what you hold), :meth:`resume_state` (a saved training
    state to continue from); and :meth:`summary` adds a sentence to the end-of-fit summary.
    """

    #: Batch-end hooks get logs whose values are computed (a host sync) only when first read; leave
    #: False to get them computed, set True when the hook reads them only now and then.
    lazy_batch_logs: bool = False

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    @property
    def state_key(self) -> str:
        """The name this callback's state is saved under in a training state (see :meth:`state_dict`).

        The name of the nearest epochwise callback class it derives from (so a subclass of a built-in
        resumes the built-in's state), else its own class name, plus :meth:`state_detail`. Assign
        ``cb.state_key = "..."`` to choose one.
        """
        chosen = vars(self).get("_state_key")
        if chosen:
            return chosen
        base = next((c for c in type(self).__mro__ if c.__module__.startswith("epochwise.callbacks.")), type(self))
        if base is Callback:
            base = type(self)
        detail = self.state_detail()
        return f"{base.__name__}({detail})" if detail else base.__name__

    @state_key.setter
    def state_key(self, value: str) -> None:
        self._state_key = str(value)

    def state_detail(self) -> str:
        """What tells two callbacks of one class apart in a saved state (e.g. the monitor); empty here."""
        return ""

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

    # --- fit's own moments ----------------------------------------------------------------------
    def resume_state(self) -> tuple[dict, str] | None:
        """A training state to continue from, and where it came from (for messages); asked once, before
        ``on_train_begin``. BackupAndRestore returns its backup here."""
        return None

    def after_train_batch(self, batch: int) -> None:
        """After every callback's ``on_train_batch_end``: the run's state is complete for this batch."""

    def after_epoch(self, epoch: int) -> None:
        """After every callback's ``on_epoch_end``: the run's state is complete for this epoch."""

    def on_interrupt(self, signum: int) -> None:
        """Ctrl-C (SIGINT) or SIGTERM asked fit to stop; called after the current batch, before
        ``on_train_end``, while the module still holds the weights it trained to."""

    def on_exception(self, error: BaseException) -> None:
        """fit is raising ``error`` (``on_train_end`` will not be called): close files, release resources."""

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
