"""Ctrl-C and SIGTERM during fit: finish the batch, end the run cleanly, then stop."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupt_guard(state: Any, model: Any) -> Iterator[None]:
    """While fit runs, the first SIGINT / SIGTERM only asks the loop to stop after the current batch.

    The handler records the signal and sets ``model.stop_training``; the original handlers come back at
    once, so a second Ctrl-C stops immediately. Outside the main thread signals cannot be caught, and
    nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handle(signum: int, frame: Any) -> None:
        state.interrupted = signum
        model.stop_training = True
        restore()

    for sig in SIGNALS:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        restore()


def reraise(signum: int) -> None:
    """After fit returned cleanly from a signal: Ctrl-C raises KeyboardInterrupt, SIGTERM exits with 143."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt("fit was interrupted (SIGINT); the run ended cleanly after the current batch")
    raise SystemExit(128 + signum)
