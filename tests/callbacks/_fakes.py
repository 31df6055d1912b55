"""A stand-in model for the monitor's decision tables: only what mode resolution reads.

Everything else in tests/callbacks runs the real ``Model.fit`` (see ``_scripted.py``); this fake serves
the cases a real fit cannot reach, such as a model that announces no log keys.
"""

from __future__ import annotations

from types import SimpleNamespace


class FakeModel:
    def __init__(
        self, expected_log_keys: list[str] | None = None, metrics: dict[str, str | None] | None = None
    ):
        self.compiled_metrics = [SimpleNamespace(name=n, direction=d) for n, d in (metrics or {}).items()]
        self.expected_log_keys = expected_log_keys
