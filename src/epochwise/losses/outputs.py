"""Several outputs (Keras's ``CompileLoss``): one loss per output of a module that returns a tuple, a list
or a dict, weighted by ``loss_weights`` and summed into the loss that is trained and logged as ``loss``.

Outputs are named by their dict key, or ``output_0``, ``output_1``, ... by position for a tuple or list.
Each output with a loss has a running mean ``{output}_loss`` (the unweighted loss, as Keras logs it),
updated whenever the loss is computed; it is an ordinary ``Mean`` metric, so the running logs, the
reduction over processes and a resumed run treat it like any compiled metric.

>>> import torch
>>> losses = OutputLosses(["mse", "mae"], loss_weights=[1.0, 0.5])
>>> y = (torch.zeros(2, 1), torch.ones(2, 1))
>>> p = (torch.ones(2, 1), torch.ones(2, 1))
>>> float(losses(y, p))
1.0
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch

from ..text import did_you_mean
from . import classes as _classes
from .functions import Loss

__all__ = ["OutputLosses", "declared_outputs", "output_names", "is_structure", "select"]

_ARG = "compile(loss=...)"


def is_structure(obj: Any) -> bool:
    """A tuple, list or dict: one entry per output."""
    return isinstance(obj, (tuple, list, dict))


def output_names(structure: Any) -> tuple[bool | None, list[str]]:
    """``(positional, names)`` of an output or target structure: dict keys (matched by name: None), or
    ``output_i`` by position (True)."""
    if isinstance(structure, dict):
        return None, [str(k) for k in structure]
    return True, [f"output_{i}" for i in range(len(structure))]


def select(structure: Any, index: int, name: str) -> Any:
    """The part of a per-output structure that belongs to one output (by position, or by name in a dict);
    anything else (a single array, None) belongs to every output."""
    if isinstance(structure, dict):
        return structure.get(name)
    if isinstance(structure, (tuple, list)):
        return structure[index] if index < len(structure) else None
    return structure


def declared_outputs(loss: Any, loss_weights: Any, metrics: Any, weighted_metrics: Any
                     ) -> tuple[bool | None, list[str]] | None:
    """The outputs compile's arguments name when the loss is one for all: from ``loss_weights`` (a list or
    dict) or per-output metrics (a dict, or a list of lists); None when nothing says several outputs."""
    if loss_weights is not None and not is_structure(loss_weights):
        raise ValueError(
            f"compile(loss_weights={loss_weights!r}): loss_weights weighs the losses of several outputs; pass a "
            "list (one number per output) or a dict {output name: number}. For one output, scale the loss itself")
    if is_structure(loss):
        return None
    for spec in (loss_weights, metrics, weighted_metrics):
        if isinstance(spec, dict) or (isinstance(spec, (tuple, list)) and spec is loss_weights) or (
                isinstance(spec, (tuple, list)) and any(isinstance(item, (tuple, list)) for item in spec)):
            return output_names(spec)
    return None


def _describe(structure: Any) -> str:
    if isinstance(structure, dict):
        return f"a dict with keys {list(structure)}"
    if isinstance(structure, (tuple, list)):
        return f"a {type(structure).__name__} of {len(structure)}"
    return "one array"


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value == value or value < 0:
        raise ValueError(f"compile(loss_weights=...): {where} must be a number >= 0, got {value!r}")
    return float(value)


class OutputLosses:
    """The loss of a module with several outputs: ``Σ loss_weight[o] · loss[o](y[o], y_pred[o], sw[o])``.

    ``losses``: a list or tuple (one loss per output, in output order; None for an output without a loss),
    a dict ``{output name: loss}`` (outputs left out have no loss), or one loss for every output.
    ``loss_weights``: a list (in output order) or dict of numbers, 1.0 for each output left out.
    ``names`` fixes the output names when the losses alone do not (one loss for every output).

    Example: ``OutputLosses({"label": "sparse_categorical_crossentropy", "box": "mse"}, {"box": 0.5})``
    """

    def __init__(self, losses: Any, loss_weights: Any = None, names: list[str] | None = None,
                 positional: bool | None = None) -> None:
        if isinstance(losses, (tuple, list)):
            if not losses:
                raise ValueError(f"{_ARG}: the list of losses is empty; give one loss per output")
            positional, names = True, [f"output_{i}" for i in range(len(losses))]
            per_output = dict(zip(names, losses))
        elif isinstance(losses, dict):
            if not losses:
                raise ValueError(f"{_ARG}: the dict of losses is empty; map each output name to its loss")
            bad = [k for k in losses if not isinstance(k, str)]
            if bad:
                raise ValueError(f"{_ARG}: the dict's keys must be output names (strings), got {bad!r}")
            if names is not None:
                _check_keys(losses, names, "loss")
            else:
                names = list(losses)
            per_output = {n: losses.get(n) for n in names}
        else:
            if names is None:
                raise ValueError(f"{_ARG}: one loss for several outputs needs their names")
            per_output = {n: losses for n in names}
        self.names: list[str] = list(names)
        self.positional = positional  # True: a tuple / list of len(names); None: by name (a dict, or output_i)
        self.losses: dict[str, Loss | None] = {}
        for n, v in per_output.items():
            loss = None if v is None else _classes.get(v)
            if loss is not None and any(loss is other for other in self.losses.values()):
                loss = copy.deepcopy(loss)  # one loss object for several outputs: each decides its own settings
            self.losses[n] = loss
        if all(v is None for v in self.losses.values()):
            raise ValueError(f"{_ARG}: every output's loss is None; give at least one output a loss")
        self.weights = self._weights(loss_weights)
        trained = [n for n in self.names if self.losses[n] is not None]
        from ..metrics.base import Mean  # metrics import losses, so not at module level

        # G5: {output}_loss for each output when more than one output has a loss
        self.trackers: dict[str, Any] = (
            {n: Mean(f"{n}_loss", direction="min") for n in trained} if len(trained) > 1 else {})
        self.name = "loss"
        self.decided: set[str] = set()  # outputs whose from_logits compile decided from the module
        self.reason = ""
        self.notes: dict[str, str] = {}

    def decide_logits(self, from_logits: bool, reason: str) -> dict[str, bool]:
        """``from_logits=None`` losses take the module's decision (``infer_from_logits``); returns each
        output's from_logits (what its metrics are told)."""
        self.reason, decided = reason, {}
        for name, loss in self.losses.items():
            value = from_logits
            if loss is not None and getattr(loss, "from_logits", "absent") is None:
                loss.from_logits = from_logits
                self.decided.add(name)
            elif loss is not None and hasattr(loss, "from_logits"):
                value = bool(loss.from_logits)
            if loss is not None and hasattr(loss, "from_logits"):
                self.notes[name] = "from logits" if value else "probabilities"
            decided[name] = value
        return decided

    def _weights(self, loss_weights: Any) -> dict[str, float]:
        weights = dict.fromkeys(self.names, 1.0)
        if loss_weights is None:
            return weights
        if isinstance(loss_weights, (tuple, list)):
            if len(loss_weights) != len(self.names):
                raise ValueError(
                    f"compile(loss_weights=...): {len(loss_weights)} weight(s) for {len(self.names)} outputs "
                    f"{self.names}; give one weight per output, in output order, or a dict by output name")
            return {n: _weight(w, f"the weight of {n!r}") for n, w in zip(self.names, loss_weights)}
        if isinstance(loss_weights, dict):
            _check_keys(loss_weights, self.names, "loss_weights")
            weights.update({k: _weight(w, f"the weight of {k!r}") for k, w in loss_weights.items()})
            return weights
        raise ValueError(
            f"compile(loss_weights=...) must be a list (one number per output) or a dict {{output name: number}}, "
            f"got {type(loss_weights).__name__}")

    # --- the structure ---------------------------------------------------------------------------
    def check_structure(self, structure: Any, what: str, fix: str, *, outputs: bool = False,
                        complete: bool = True) -> None:
        """``structure`` (the module's output, or targets / sample weights) has one entry for each output
        this loss needs, by position or by name; ValueError naming ``what`` and ``fix`` otherwise. A module's
        dict output (``outputs``) may hold more outputs than have a loss; targets may not. Sample weights
        (not ``complete``) may leave outputs out of a dict: they weigh 1."""
        if structure is None:
            raise ValueError(f"{what} holds no targets, but the model has several outputs {self.names}; {fix}")
        if not is_structure(structure):
            raise ValueError(
                f"{what} is {_describe(structure)}, but the model has several outputs {self.names}; {fix}")
        if isinstance(structure, dict):
            positional, names = output_names(structure)
            missing = [n for n in self.names if n not in names and self._needs(n)] if complete else []
            extra = [] if outputs else [k for k in names if k not in self.names]
            if missing or extra:
                parts = ([f"lacks {missing}"] if missing else []) + ([f"has unknown key(s) {extra}"] if extra else [])
                hint = did_you_mean(extra[0], self.names) if extra else did_you_mean(missing[0], names)
                raise ValueError(f"{what} (a dict with keys {names}) {' and '.join(parts)}; the outputs are "
                                 f"{self.names}.{hint} {fix}")
            return
        expected = len(self.names) if self.positional else None
        if expected is None:  # named output_i by a dict spec: the positions they name must exist
            unknown = [n for n in self.names if not (n.startswith("output_") and n[7:].isdigit())]
            if unknown:
                raise ValueError(f"{what} is {_describe(structure)} (outputs output_0, output_1, ...), but the "
                                 f"outputs are named {self.names}; {fix}")
            expected = max(int(n[7:]) for n in self.names) + 1
            if len(structure) < expected:
                raise ValueError(f"{what} is {_describe(structure)}, but output {self.names[-1]!r} needs at "
                                 f"least {expected}; {fix}")
            return
        if len(structure) != expected:
            raise ValueError(f"{what} is {_describe(structure)}, but there are {expected} outputs "
                             f"{self.names}; {fix}")

    def _needs(self, name: str) -> bool:
        return self.losses[name] is not None

    def index(self, name: str) -> int:
        """The position of an output in a tuple or list (output_i is at i)."""
        if self.positional is None and name.startswith("output_") and name[7:].isdigit():
            return int(name[7:])
        return self.names.index(name)

    def part(self, structure: Any, name: str) -> Any:
        return select(structure, self.index(name), name)

    # --- the loss ---------------------------------------------------------------------------------
    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> torch.Tensor:
        """The weighted total; each output's unweighted loss goes into its ``{output}_loss`` mean."""
        total: torch.Tensor | None = None
        for name in self.names:
            loss = self.losses[name]
            if loss is None:
                continue
            pred = self.part(y_pred, name)
            value = loss(self.part(y_true, name), pred, self.part(sample_weight, name))
            tracker = self.trackers.get(name)
            if tracker is not None:
                n = int(pred.shape[0]) if isinstance(pred, torch.Tensor) and pred.ndim else 1
                tracker.update(value.detach().float() * n, n)
            weighted = value * self.weights[name] if self.weights[name] != 1.0 else value
            total = weighted if total is None else total + weighted
        assert total is not None  # __init__ requires one loss
        return total

    def check_first_batch(self, targets: list[tuple[str, Any]], y_pred: Any,
                          check_one: Callable[[Loss, str, Any, Any], None]) -> None:
        """The first batch: the module's output structure, then each output's targets (``check_one(loss,
        name, y_true, y_pred)``) for every target set."""
        self.check_structure(y_pred, "the module's output",
                             "return one output per loss (a tuple / list in loss order, or a dict by output "
                             "name), or compile with a loss for each output the module returns", outputs=True)
        for what, y_true in targets:
            self.check_structure(y_true, what, "pass one target per output: a list in output order, or a dict "
                                 f"{{output name: targets}} with keys {self.names}")
            for name in self.names:
                loss = self.losses[name]
                if loss is not None:
                    check_one(loss, f"{what} of output {name!r}", self.part(y_true, name), self.part(y_pred, name))

    def describe(self) -> str:
        """The run plan's words: ``loss = 1.0 x output_0 sparse_categorical_crossentropy + 0.5 x output_1 mse``."""
        terms = []
        for name in self.names:
            loss = self.losses[name]
            if loss is not None:
                note = f" ({self.notes[name]})" if self.notes.get(name) else ""
                terms.append(f"{self.weights[name]!r} x {name} {loss.name}{note}")
        return "loss = " + " + ".join(terms)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}: {self.losses[n]!r} x {self.weights[n]:g}" for n in self.names)
        return f"OutputLosses({{{body}}})"


def _check_keys(given: dict, names: list[str], argument: str) -> None:
    unknown = [k for k in given if k not in names]
    if unknown:
        raise ValueError(
            f"compile({argument}=...) names output(s) {unknown} that the model does not have; its outputs are "
            f"{names}.{did_you_mean(unknown[0], names)} Key {argument} by output name")
