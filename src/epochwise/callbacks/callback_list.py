"""CallbackList: fans each hook out to the callbacks that override it, in list order (C2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .callback import Callback
from .history import History

__all__ = ["CallbackList"]

_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)
_LEGACY = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


def _overrides(callback: Callback, hook: str) -> bool:
    """True when ``callback`` does something in ``hook`` (a subclass method or an instance attribute)."""
    names = (hook, _LEGACY[hook]) if hook in _LEGACY else (hook,)
    for name in names:
        if name in vars(callback) or getattr(type(callback), name) is not getattr(Callback, name):
            return True
    return False


def _flatten(callbacks: Any) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, CallbackList):
        return list(callbacks.callbacks)
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, Iterable) or isinstance(callbacks, (str, bytes, dict)):
        raise TypeError(
            f"callbacks must be a list of epochwise.callbacks.Callback instances, got {type(callbacks).__name__}"
        )
    out: list[Callback] = []
    for item in callbacks:  # F6: nested lists are flattened
        if isinstance(item, (list, tuple)):
            out.extend(_flatten(item))
        elif isinstance(item, Callback):
            out.append(item)
        elif isinstance(item, type) and issubclass(item, Callback):
            raise TypeError(
                f"callbacks got the class {item.__name__}; pass an instance: {item.__name__}(...)"
            )
        else:
            raise TypeError(
                f"callbacks got {item!r}, which is not an epochwise.callbacks.Callback; "
                "subclass epochwise.callbacks.Callback or use LambdaCallback"
            )
    return out


class CallbackList:
    """The callbacks of one fit / evaluate / predict call, in the order of rule F6.

    The user's callbacks come first, then a :class:`History` (unless the user gave one), then a
    progress logger (unless the user gave one). Each hook calls only the callbacks that override it,
    so hooks nobody uses cost one attribute lookup. Batch-end hooks take a ``get_logs`` thunk: the logs
    (a host sync) are computed only when some callback listens; callbacks with ``lazy_batch_logs = True``
    (the progress bar) receive the thunk itself and call it only when they redraw.
    """

    def __init__(
        self,
        callbacks: Any = None,
        *,
        model: Any = None,
        params: dict[str, Any] | None = None,
        add_history: bool = False,
        progbar: Callback | None = None,
    ) -> None:
        self.callbacks = _flatten(callbacks)
        if add_history and not any(isinstance(c, History) for c in self.callbacks):
            self.callbacks.append(History())
        if progbar is not None and not any(type(c).__name__ == "ProgbarLogger" for c in self.callbacks):
            self.callbacks.append(progbar)
        history = self.history
        if history is not None:  # History.plot marks the best and the stopping epoch from it
            history.early_stopping = next((c for c in self.callbacks if type(c).__name__ == "EarlyStopping"), None)
        self.params = dict(params or {})
        for cb in self.callbacks:
            if model is not None:
                cb.set_model(model)
            cb.set_params(self.params)
        self._listeners: dict[str, list[Callback]] = {
            hook: [cb for cb in self.callbacks if _overrides(cb, hook)] for hook in _HOOKS
        }

    @property
    def history(self) -> History | None:
        return next((c for c in self.callbacks if isinstance(c, History)), None)

    def listens(self, hook: str) -> bool:
        return bool(self._listeners[hook])

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self._listeners[hook]:
            getattr(cb, hook)(*args)

    def _call_batch_end(self, hook: str, batch: int, get_logs: Callable[[], dict],
                        local_logs: Callable[[], dict] | None = None) -> None:
        logs = None
        for cb in self._listeners[hook]:
            if getattr(cb, "lazy_batch_logs", False):  # the progress bar: this rank's values, no collective
                getattr(cb, hook)(batch, local_logs or get_logs)
            else:
                if logs is None:
                    logs = get_logs()
                getattr(cb, hook)(batch, logs)

    # one method per hook, so user code and tests can call them like Keras's CallbackList
    def on_train_begin(self, logs: dict | None = None) -> None:
        self._call("on_train_begin", {} if logs is None else logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._call("on_train_end", {} if logs is None else logs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._call("on_epoch_begin", epoch, {} if logs is None else logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._call("on_epoch_end", epoch, {} if logs is None else logs)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call("on_train_batch_begin", batch, {} if logs is None else logs)

    def on_train_batch_end(self, batch: int, get_logs: Callable[[], dict] | dict | None = None,
                           local_logs: Callable[[], dict] | None = None) -> None:
        self._call_batch_end("on_train_batch_end", batch, _thunk(get_logs), local_logs)

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._call("on_test_begin", {} if logs is None else logs)

    def on_test_end(self, logs: dict | None = None) -> None:
        self._call("on_test_end", {} if logs is None else logs)

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call("on_test_batch_begin", batch, {} if logs is None else logs)

    def on_test_batch_end(self, batch: int, get_logs: Callable[[], dict] | dict | None = None) -> None:
        self._call_batch_end("on_test_batch_end", batch, _thunk(get_logs))

    def on_predict_begin(self, logs: dict | None = None) -> None:
        self._call("on_predict_begin", {} if logs is None else logs)

    def on_predict_end(self, logs: dict | None = None) -> None:
        self._call("on_predict_end", {} if logs is None else logs)

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call("on_predict_batch_begin", batch, {} if logs is None else logs)

    def on_predict_batch_end(self, batch: int, get_logs: Callable[[], dict] | dict | None = None) -> None:
        self._call_batch_end("on_predict_batch_end", batch, _thunk(get_logs))

    def summaries(self) -> list[str]:
        """One-line summaries from callbacks that acted in this run (see ``Callback.summary``)."""
        out = []
        for cb in self.callbacks:
            text = cb.summary() if hasattr(cb, "summary") else None
            if text:
                out.append(text)
        return out


def _thunk(logs: Callable[[], dict] | dict | None) -> Callable[[], dict]:
    if callable(logs):
        return logs
    value = {} if logs is None else logs
    return lambda: value
