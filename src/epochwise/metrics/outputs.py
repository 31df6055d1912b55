"""Metrics of a model with several outputs, Keras 3's way: ``metrics=[["accuracy"], ["mae"]]`` (one list
per output, in output order), ``metrics={"label": ["accuracy"]}`` (by output name), or a flat list with
exactly one metric per output (``metrics=["accuracy", "mae"]``: accuracy for the first output, mae for
the second). A flat list of another length is an error, as in Keras: nest it per output.

Every metric is an ordinary :class:`Metric`, copied for each output and named ``{output}_{name}``
(``{output}_weighted_{name}`` for a weighted metric listed in both lists), so the running logs and their
reduction over processes treat it like any other.
"""

from __future__ import annotations

import copy
from typing import Any

from ..text import did_you_mean
from .base import Metric

__all__ = ["per_output_metrics", "is_per_output"]


def is_per_output(spec: Any) -> bool:
    """A metrics argument that speaks of several outputs: a dict, or a list holding lists."""
    if isinstance(spec, dict):
        return True
    return isinstance(spec, (list, tuple)) and any(isinstance(item, (list, tuple)) for item in spec)


def _split(spec: Any, names: list[str], argument: str) -> dict[str, Any]:
    """``{output name: that output's metrics}`` from a dict, a nested list or a flat one-per-output list."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in names]
        if unknown:
            raise ValueError(
                f"compile({argument}=...) names output(s) {unknown} that the model does not have; its outputs "
                f"are {names}.{did_you_mean(unknown[0], names)} Key {argument} by output name")
        return dict(spec)
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if len(items) != len(names):
        example = [["accuracy"]] + [["mae"]] * (len(names) - 1)
        raise ValueError(
            f"compile({argument}={spec!r}) for a model with {len(names)} outputs {names}: give one entry per "
            f"output, in output order (a list of metrics each, e.g. {argument}={example!r}), or a dict by output "
            f"name (e.g. {argument}={{{names[0]!r}: ['accuracy']}}). As in Keras, a flat list is read as one "
            "metric per output, so its length must equal the number of outputs")
    return dict(zip(names, items))


def per_output_metrics(metrics: Any, weighted_metrics: Any, names: list[str], from_logits: dict[str, bool],
                       get_list: Any) -> tuple[list[tuple[str, Metric]], list[tuple[str, Metric]]]:
    """The plain and the weighted metrics as ``(output name, metric)`` pairs, in output order, each metric
    its own copy named ``{output}_{name}``. ``get_list`` builds one output's list (``metrics.get_list``)."""
    plain_spec, weighted_spec = _split(metrics, names, "metrics"), _split(weighted_metrics, names, "weighted_metrics")

    def build(spec: Any, name: str) -> list[Metric]:
        # copies: a metric instance the user gave keeps its own name and state, and each output has its own
        return [copy.deepcopy(m) for m in get_list(spec, from_logits=from_logits.get(name, False))]

    plain: list[tuple[str, Metric]] = []
    weighted: list[tuple[str, Metric]] = []
    for name in names:
        mine = build(plain_spec.get(name), name)
        theirs = build(weighted_spec.get(name), name)
        taken = {m.name for m in mine}
        for m in mine:
            m.name = f"{name}_{m.name}"
            plain.append((name, m))
        for m in theirs:  # G5: in both lists -> weighted_<name>, after the output's prefix (as Keras)
            m.name = f"{name}_weighted_{m.name}" if m.name in taken else f"{name}_{m.name}"
            weighted.append((name, m))
    return plain, weighted
