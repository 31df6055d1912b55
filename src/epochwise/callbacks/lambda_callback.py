"""LambdaCallback: build a callback from plain functions (LC1-LC2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._monitor import did_you_mean
from .callback import Callback

__all__ = ["LambdaCallback"]

_BATCH_HOOKS = (
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
    "on_batch_begin",
    "on_batch_end",
)
_OTHER_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_test_begin",
    "on_test_end",
    "on_predict_begin",
    "on_predict_end",
)


def _keyword_logs(fn: Callable[..., Any]) -> Callable[..., Any]:
    def hook(batch: int, logs: dict | None = None) -> Any:
        return fn(batch, logs=logs)  # LC2: batch hooks pass logs by keyword, as Keras does

    return hook


class LambdaCallback(Callback):
    """A callback whose hooks are the functions given (LC1-LC2).

    Epoch hooks are called as ``fn(epoch, logs)``, begin/end hooks as ``fn(logs)``, and batch hooks as
    ``fn(batch, logs=logs)`` (so name the second parameter ``logs``). Any other hook can be given by
    keyword, e.g. ``on_test_end=...``; an unknown hook name is an error.

    Example::

        log = ew.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: print(epoch + 1, logs["loss"]),
            on_train_batch_end=lambda batch, logs: None,
        )
        model.fit(x, y, epochs=3, callbacks=[log])
    """

    def __init__(
        self,
        on_epoch_begin: Callable[[int, dict], Any] | None = None,
        on_epoch_end: Callable[[int, dict], Any] | None = None,
        on_train_begin: Callable[[dict], Any] | None = None,
        on_train_end: Callable[[dict], Any] | None = None,
        on_train_batch_begin: Callable[..., Any] | None = None,
        on_train_batch_end: Callable[..., Any] | None = None,
        **kwargs: Callable[..., Any],
    ) -> None:
        super().__init__()
        hooks = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
        }
        for name, fn in kwargs.items():
            if name not in _BATCH_HOOKS and name not in _OTHER_HOOKS:  # Keras stores any keyword silently
                raise TypeError(
                    f"LambdaCallback got {name}=, which is not a callback hook."
                    f"{did_you_mean(name, _BATCH_HOOKS + _OTHER_HOOKS)}"
                )
            hooks[name] = fn
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback({name}={fn!r}): {name} must be a function or None")
            setattr(self, name, _keyword_logs(fn) if name in _BATCH_HOOKS else fn)  # LC2: per instance
