"""CallbackList: fans each hook out to the callbacks that override it, in list order (C2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .callback import Callback
from .early_stopping import EarlyStopping
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
    "after_train_batch",
    "after_epoch",
    "on_interrupt",
    "on_exception",
)
_LEGACY = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


class BatchLogs(dict):
    """The logs of one batch: a dict whose values are computed when first needed.

    Computing them is a host sync (and under torchrun a collective), so callbacks with
    ``lazy_batch_logs = True`` get it unread: one that reads them only now and then (the progress bar,
    at most ten redraws a second; ``ModelCheckpoint(save_freq=N)``) costs no sync on the other batches,
    and what it reads then is this process's running values. Every other callback gets them computed
    by :meth:`fill`, exact over all processes and the same on every rank.
    """

    def __init__(self, compute: Callable[[], dict], local: Callable[[], dict] | None = None) -> None:
        super().__init__()
        self._compute: Callable[[], dict] | None = compute
        self._local = local or compute

    def fill(self) -> None:
        """Compute the values now, exactly (every rank calls this at the same batch)."""
        if self._compute is not None:
            compute, self._compute = self._compute, None
            dict.update(self, compute())

    def _read(self) -> None:
        if self._compute is not None:  # a lazy reader: this process's values, no collective
            self._compute = None
            dict.update(self, self._local())


def _filled(name: str) -> Callable:
    method = getattr(dict, name)

    def call(self: BatchLogs, *args: Any, **kwargs: Any) -> Any:
        self._read()
        return method(self, *args, **kwargs)

    call.__name__ = name
    return call


for _name in ("__getitem__", "__iter__", "__len__", "__contains__", "__repr__", "__eq__", "__setitem__",
              "__delitem__", "keys", "values", "items", "get", "copy", "pop", "setdefault", "update"):
    setattr(BatchLogs, _name, _filled(_name))
BatchLogs.__hash__ = None  # type: ignore[assignment]


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
    so hooks nobody uses cost one attribute lookup. Batch-end hooks get a :class:`BatchLogs`, computed
    only if a callback reads it. This class is the only way fit reaches a callback.
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
        if progbar is not None and not any(isinstance(c, type(progbar)) for c in self.callbacks):
            self.callbacks.append(progbar)
        history = self.history
        if history is not None:  # History.plot marks the best and the stopping epoch from it
            history.early_stopping = next((c for c in self.callbacks if isinstance(c, EarlyStopping)), None)
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

    def _call_batch_end(self, hook: str, batch: int, logs: Mapping | None) -> None:
        logs = {} if logs is None else logs
        for cb in self._listeners[hook]:
            if isinstance(logs, BatchLogs) and not cb.lazy_batch_logs:
                logs.fill()  # a plain dict from here on, for callbacks that did not ask for lazy logs
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

    def on_train_batch_end(self, batch: int, logs: Mapping | None = None) -> None:
        self._call_batch_end("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._call("on_test_begin", {} if logs is None else logs)

    def on_test_end(self, logs: dict | None = None) -> None:
        self._call("on_test_end", {} if logs is None else logs)

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call("on_test_batch_begin", batch, {} if logs is None else logs)

    def on_test_batch_end(self, batch: int, logs: Mapping | None = None) -> None:
        self._call_batch_end("on_test_batch_end", batch, logs)

    def on_predict_begin(self, logs: dict | None = None) -> None:
        self._call("on_predict_begin", {} if logs is None else logs)

    def on_predict_end(self, logs: dict | None = None) -> None:
        self._call("on_predict_end", {} if logs is None else logs)

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call("on_predict_batch_begin", batch, {} if logs is None else logs)

    def on_predict_batch_end(self, batch: int, logs: Mapping | None = None) -> None:
        self._call("on_predict_batch_end", batch, {} if logs is None else logs)

    def after_train_batch(self, batch: int) -> None:
        self._call("after_train_batch", batch)

    def after_epoch(self, epoch: int) -> None:
        self._call("after_epoch", epoch)

    def on_interrupt(self, signum: int) -> None:
        self._call("on_interrupt", signum)

    def on_exception(self, error: BaseException) -> None:
        """Every callback hears of it, even when one of them fails in turn (the first error is raised)."""
        for cb in self._listeners["on_exception"]:
            try:
                cb.on_exception(error)
            except Exception:  # noqa: S112 - the original error matters more
                continue

    def resume_state(self) -> tuple[dict, str] | None:
        """The last training state a callback offers to continue from (see ``Callback.resume_state``)."""
        found = None
        for cb in self.callbacks:
            offered = cb.resume_state()
            if offered is not None:
                found = offered
        return found

    def summaries(self) -> list[str]:
        """One-line summaries from callbacks that acted in this run (see ``Callback.summary``)."""
        return [text for text in (cb.summary() for cb in self.callbacks) if text]
