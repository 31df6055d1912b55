"""The overfitting rule: a pure function over a history dict (``docs/learning-curves.md``).

The rule, with ``L`` the training loss and ``V`` the validation loss of the epochs that logged both
(epochs with a missing or non-finite value are left out), ``b`` the first epoch at which ``V`` is
lowest and ``n`` the last epoch:

1. validation has not improved for at least ``patience`` epochs: ``n - b >= patience`` (default 3);
2. validation loss rose: ``V[n] > V[b] * (1 + min_rise)`` (default: ended at least 1% above its minimum);
3. training loss fell over the same epochs: ``L[n] < L[b]``.

When all three hold, the run has been overfitting since epoch ``b`` (1-based, as the progress bar
counts): after it, the model kept fitting the training data better and the validation data worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..text import is_int

__all__ = ["Overfitting", "find_overfitting", "overfitting_note"]


@dataclass(frozen=True)
class Overfitting:
    """What :func:`find_overfitting` found; epochs are 1-based."""

    since_epoch: int
    last_epoch: int
    epochs_rising: int
    val_loss_best: float
    val_loss_last: float
    loss_at_best: float
    loss_last: float

    @property
    def message(self) -> str:
        return (
            f"val_loss has not improved on {self.val_loss_best:.4f} (epoch {self.since_epoch}) for "
            f"{self.epochs_rising} epoch{'' if self.epochs_rising == 1 else 's'} (now {self.val_loss_last:.4f}) "
            f"while training loss fell ({self.loss_at_best:.4f} -> {self.loss_last:.4f}): overfitting since "
            f"epoch {self.since_epoch}"
        )

    def __str__(self) -> str:
        return self.message


def _as_dict(history: Any) -> tuple[dict[str, list[float]], list[int] | None]:
    if hasattr(history, "history") and isinstance(history.history, dict):  # a History callback
        return history.history, list(getattr(history, "epoch", None) or []) or None
    if not isinstance(history, dict):
        raise TypeError(
            f"expected a History or a dict of per-epoch lists such as history.history, got {type(history).__name__}"
        )
    return history, None


def find_overfitting(
    history: Any,
    *,
    epochs: list[int] | None = None,
    patience: int = 3,
    min_rise: float = 0.01,
) -> Overfitting | None:
    """Apply the overfitting rule (module docstring) to ``history["loss"]`` and ``history["val_loss"]``.

    ``history`` is ``History.history`` (or the History itself); ``epochs`` are the 0-based epoch
    indices of its entries (``History.epoch``), default ``0, 1, 2, ...``. Returns None when the rule
    does not hold, when either key is missing, or when the two lists differ in length (with
    ``validation_freq > 1`` History cannot say which epochs validated, rule H2).

    Example::

        found = find_overfitting(model.fit(x, y, epochs=50, validation_split=0.2).history)
        if found: print(found.since_epoch, found.message)
    """
    values, found_epochs = _as_dict(history)
    if not is_int(patience):
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
    if isinstance(min_rise, bool) or not isinstance(min_rise, (int, float)) or not min_rise >= 0:
        raise ValueError(f"min_rise must be a fraction >= 0 (0.01 = 1%), got {min_rise!r}")
    loss, val = values.get("loss"), values.get("val_loss")
    if not loss or not val or len(loss) != len(val):
        return None
    epochs = epochs if epochs is not None else found_epochs
    if epochs is None or len(epochs) != len(loss):
        epochs = list(range(len(loss)))
    points = [
        (e + 1, float(t), float(v))
        for e, t, v in zip(epochs, loss, val)
        if t is not None and v is not None and math.isfinite(t) and math.isfinite(v)
    ]
    if len(points) <= patience:
        return None
    best = min(range(len(points)), key=lambda i: (points[i][2], i))  # the first lowest V
    since, loss_best, val_best = points[best]
    last, loss_last, val_last = points[-1]
    rising = len(points) - 1 - best
    if rising < patience:  # rule 1
        return None
    if not val_last > val_best + abs(val_best) * min_rise:  # rule 2
        return None
    if not loss_last < loss_best:  # rule 3
        return None
    return Overfitting(since, last, rising, val_best, val_last, loss_best, loss_last)


def overfitting_note(history: dict[str, list[float]], epochs: list[int] | None = None) -> str | None:
    """The end-of-fit sentence, or None: ``"val_loss has not improved on 0.2034 (epoch 23) for 6 epochs
    (now 0.2191) while training loss fell (...): overfitting since epoch 23"`` (the rule is in the module docstring)."""
    found = find_overfitting(history, epochs=epochs)
    return found.message if found else None
