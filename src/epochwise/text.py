"""The library's shared wording: how a value is printed, "did you mean", and Keras-style snake_case names."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Any

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``"TopKCategoricalAccuracy"`` -> ``"top_k_categorical_accuracy"``; snake_case is kept."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def plural(n: int, word: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``, ``"1,100 iterations"``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def format_value(value: float | None) -> str:
    """A logged value as the progress bar prints it (B3): ``%.4f``, or ``%.4e`` when |v| <= 1e-3."""
    if value is None:
        return "None"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def close_matches(name: object, choices: Iterable[str] | Mapping[str, str], n: int = 3, cutoff: float = 0.6,
                  *, ignore_case: bool = False) -> list[str]:
    """The choices closest to ``name`` (difflib), best first. With a mapping, the keys are matched and
    their values returned (each once): ``{"mse": "mean_squared_error"}`` suggests the canonical name."""
    if not isinstance(name, str):
        return []
    keys = list(choices)
    found = difflib.get_close_matches(name, keys, n=n, cutoff=cutoff)
    if ignore_case:
        found += [k for k in difflib.get_close_matches(name.lower(), keys, n=n, cutoff=cutoff) if k not in found]
    if isinstance(choices, Mapping):
        found = list(dict.fromkeys(choices[k] for k in found))
    return found


def did_you_mean(name: object, choices: Iterable[str] | Mapping[str, str], n: int = 3, cutoff: float = 0.6,
                 *, sep: str = " or ", ignore_case: bool = False, limit: int | None = None) -> str:
    """`` Did you mean 'x' or 'y'?`` for the close matches of ``name`` among ``choices``, else ``''``."""
    close = close_matches(name, choices, n, cutoff, ignore_case=ignore_case)[:limit]
    return f" Did you mean {sep.join(repr(c) for c in close)}?" if close else ""


def is_int(value: Any, minimum: int = 1) -> bool:
    """Whether ``value`` is an integer (NumPy's too, never a bool) of at least ``minimum``."""
    return not isinstance(value, bool) and isinstance(value, Integral) and value >= minimum


def check_int(value: Any, name: str, *, minimum: int = 1, owner: str | None = None,
              allow_none: bool = False) -> Any:
    """``value`` as an int >= ``minimum`` (NumPy integers too; None when allowed), else a ValueError
    that names the argument: ``batch_size must be a positive integer or None, got 0``, or with ``owner``
    ``EarlyStopping(patience=-1): patience must be an integer >= 0``."""
    if value is None and allow_none:
        return None
    if not is_int(value, minimum):
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        where = f"{owner}({name}={value!r}): " if owner else ""
        tail = "" if owner else f", got {value!r}"
        raise ValueError(f"{where}{name} must be {bound}{' or None' if allow_none else ''}{tail}")
    return int(value)
