"""The machinery behind :mod:`epochwise.metrics`: ``Metric`` (state declared with ``add_state``),
``Mean``, ``MeanMetricWrapper``, ``TorchmetricsMetric`` and the name lookup, re-exported by
``epochwise.metrics``; the per-sample functions are in ``metrics/functions.py``."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..distributed import REDUCTIONS, collective_device, combine, is_distributed, reduce_states
from ..losses.functions import align_ranks
from ..text import did_you_mean, snake_case
from .functions import accumulate_mean


# --- base classes (re-exported by epochwise.metrics) ------------------------------------------
class Metric:
    """Base class: a named, stateful value with a declared direction (``"max"``, ``"min"`` or None).

    Subclasses declare each piece of their state in ``__init__`` with :meth:`add_state` and implement
    :meth:`update_state` and :meth:`result` (a 0-dim float32 tensor, no host sync). Declared state gets
    the rest for free: :meth:`reset_state` puts the defaults back, :meth:`state_dict` is what a resumed
    run restores, :meth:`merge_state` adds other metrics' state, and under torchrun :meth:`sync` combines
    every process's state by its reduction, so the logged value is the value on all the data at once.
    Settings (thresholds, ``k``, ...) are plain attributes: never reduced, never part of the state.
    ``direction`` is what callbacks with ``mode="auto"`` use (rule M2).

    Example::

        class MaxError(ew.metrics.Metric):
            def __init__(self, name="max_error"):
                super().__init__(name, direction="min")
                self.add_state("worst", torch.zeros(()), "max")    # the max over processes

            def update_state(self, y_true, y_pred, sample_weight=None):
                error = (y_true - y_pred.detach()).abs().max()
                self.worst = torch.maximum(self.worst.to(error.device), error)

            def result(self):
                return self.worst

    A subclass that keeps its state in plain attributes (with its own ``reset_state``) still works in
    one process, but is neither resumed mid-epoch nor usable under torchrun.
    """

    direction: str | None = None

    def __init__(self, name: str, direction: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a metric name must be a non-empty string, got {name!r}.")
        if direction not in (None, "max", "min"):
            raise ValueError(f"direction must be 'max', 'min' or None, got {direction!r}.")
        self.name = name
        if direction is not None:
            self.direction = direction
        vars(self).setdefault("_declared", {})

    # --- declared state ---
    def add_state(self, name: str, default: Tensor | float | list, reduction: str = "sum") -> None:
        """Declare the state attribute ``name``, starting at ``default``, combined by ``reduction``.

        ``default`` is a tensor (its shape is the state's; it moves to the device of the data at the
        first :meth:`state_on`), a Python number (kept on the host: counts known without a sync), or
        ``[]`` for a list of tensors. ``reduction`` says how states of several processes (or metrics)
        combine: ``"sum"``, ``"max"``, ``"min"`` (element-wise), or ``"cat"`` (concatenated along dim 0,
        for a list or a tensor state).

        Example: ``self.add_state("counts", torch.zeros(3), "sum")``
        """
        if not isinstance(name, str) or not name.isidentifier() or name in ("name", "direction"):
            raise ValueError(
                f"add_state: name must be an attribute name (not 'name' or 'direction'), got {name!r}."
            )
        if hasattr(type(self), name):
            raise ValueError(f"add_state: {name!r} is taken by {type(self).__name__}; pick another name.")
        default = _checked_default(name, default, reduction)
        vars(self).setdefault("_declared", {})[name] = (default, reduction)
        setattr(self, name, _fresh(default))

    @property
    def declared_states(self) -> dict[str, str]:
        """``{state name: reduction}`` of the states declared with :meth:`add_state`."""
        return {name: reduction for name, (_, reduction) in vars(self).get("_declared", {}).items()}

    def state_on(self, name: str, device: torch.device) -> Tensor:
        """The tensor state ``name`` on ``device``, moved there (and stored) if it is elsewhere.

        Made outside inference mode, so that a state first built during ``evaluate`` (which runs under
        ``torch.inference_mode``) can still be updated in place by training afterwards.
        """
        value = getattr(self, name)
        if value.device != device or (value.is_inference() and not torch.is_inference_mode_enabled()):
            with torch.inference_mode(False):
                value = value.to(device, copy=True)
            setattr(self, name, value)
        return value

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update_state().")

    def result(self) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement result().")

    def reset_state(self) -> None:
        """Every declared state back to its default; a tensor state stays on its device."""
        declared = vars(self).get("_declared", {})
        if not declared:
            raise NotImplementedError(
                f"{type(self).__name__} declares no state: declare it in __init__ with self.add_state(name, "
                "default, reduction), or implement reset_state()."
            )
        for name, (default, _) in declared.items():
            current = getattr(self, name)
            device = current.device if isinstance(current, Tensor) else None
            setattr(self, name, _fresh(default, device))

    def state_dict(self) -> dict[str, Any]:
        """The declared state (tensors copied to the CPU, numbers as they are), for an exact resume."""
        cpu = torch.device("cpu")
        return {name: _to(getattr(self, name), cpu) for name in vars(self).get("_declared", {})}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        """Restore :meth:`state_dict`'s output, its tensors onto ``device`` (the CPU if None)."""
        declared = vars(self).get("_declared", {})
        if set(state) != set(declared):
            raise ValueError(
                f"metric {self.name!r}: the saved state has {sorted(state)}, but {type(self).__name__} "
                f"declares {sorted(declared)}; it was saved by a different metric or version."
            )
        for name in declared:
            setattr(self, name, _to(state[name], device or torch.device("cpu")))

    def merge_state(self, metrics: Any) -> None:
        """Combine the state of other metrics of the same class into this one, each piece by its
        reduction (as Keras' ``merge_state``): metrics updated on parts of the data give the metric
        updated on all of it.

        Example: ``m.merge_state([m_part2, m_part3])``
        """
        others = [metrics] if isinstance(metrics, Metric) else list(metrics)
        for other in others:
            if type(other) is not type(self) or other.declared_states != self.declared_states:
                raise ValueError(
                    f"merge_state: {type(self).__name__} {self.name!r} merges only metrics of its own class "
                    f"and state, got {type(other).__name__} {getattr(other, 'name', other)!r}."
                )
        if not self.declared_states and others:
            raise ValueError(_undeclared_message(self))
        for name, reduction in self.declared_states.items():
            mine = getattr(self, name)
            setattr(self, name, combine([mine, *(getattr(o, name) for o in others)], reduction, mine))

    @contextlib.contextmanager
    def sync(self, device: torch.device | None = None) -> Iterator[None]:
        """Within the block, the declared state is the combination over all torchrun processes (a
        collective: every process enters it); the local state comes back after. Nothing in one process.

        Example: ``with metric.sync(): value = float(metric.result())``
        """
        if not is_distributed():
            yield
            return
        names = list(self.declared_states)
        if not names:
            raise ValueError(_undeclared_message(self))
        local = {name: getattr(self, name) for name in names}
        merged = reduce_states(list(local.values()), list(self.declared_states.values()), device)
        try:
            for name, value in zip(names, merged):
                setattr(self, name, value)
            yield
        finally:
            for name, value in local.items():
                setattr(self, name, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _checked_default(name: str, default: Any, reduction: Any) -> Any:
    """``add_state``'s default, checked against its reduction (a tensor is copied)."""
    where = f"add_state({name!r})"
    if reduction not in REDUCTIONS:
        kinds = ", ".join(map(repr, REDUCTIONS))
        raise ValueError(f"{where}: reduction must be one of {kinds}, got {reduction!r}.")
    if isinstance(default, list):
        if default or reduction != "cat":
            raise ValueError(f"{where}: a list state starts empty ([]) and takes reduction='cat'.")
        return default
    if isinstance(default, Tensor):
        if reduction == "cat" and default.dim() == 0:
            raise ValueError(f"{where}: a 'cat' tensor state needs a dim 0 to grow along: torch.zeros(0, 3).")
        with torch.inference_mode(False):
            return default.detach().clone()
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if reduction == "cat":
            raise ValueError(f"{where}: a number cannot be concatenated; use 'sum', 'max' or 'min'.")
        return default
    raise TypeError(f"{where}: default must be a tensor, a Python number or [], not {type(default).__name__}")


def _fresh(default: Any, device: torch.device | None = None) -> Any:
    """A new copy of a declared default (on ``device``), outside inference mode."""
    if isinstance(default, list):
        return []
    if isinstance(default, Tensor):
        with torch.inference_mode(False):
            return default.to(device or default.device, copy=True)
    return default


def _to(value: Any, device: torch.device) -> Any:
    """A copy of a state value with its tensors on ``device``, outside inference mode."""
    with torch.inference_mode(False):
        if isinstance(value, list):
            return [v.detach().to(device, copy=True) for v in value]
        if isinstance(value, Tensor):
            return value.detach().to(device, copy=True)
    return value


def _undeclared_message(metric: Metric) -> str:
    return (
        f"metric {metric.name!r} ({type(metric).__name__}) keeps its state in plain attributes, which cannot "
        "be combined across processes: declare each piece in __init__ with self.add_state(name, default, "
        "reduction), as in help(epochwise.metrics.Metric)."
    )


def require_declared_state(metrics: list[Metric]) -> None:
    """Under torchrun, fail before training when a compiled metric could not be combined across processes."""
    for m in metrics:
        if type(m).sync is Metric.sync and not m.declared_states:
            raise ValueError(f"compile(metrics=...): {_undeclared_message(m)}")


class Mean(Metric):
    """Running (weighted) mean: ``total / count``, 0 before any update (ME3).

    Example::

        tracker = ew.metrics.Mean("loss")
        tracker.update(loss.detach() * n, n)       # cheap: a sum of values and how many samples
        tracker.update_state(per_sample_values, sample_weight=w)
    """

    def __init__(self, name: str = "mean", direction: str | None = None) -> None:
        super().__init__(name, direction)
        self.add_state("totals", torch.zeros(2), "sum")  # [total, weighted count], on the data's device
        self.add_state("count", 0.0, "sum")  # unweighted counts are known on the host without a sync

    def update(self, value_sum: Tensor | float, count: int | float | Tensor) -> None:
        """Add a precomputed sum of values and the number (or total weight) of samples it covers."""
        is_tensor = isinstance(value_sum, Tensor)
        totals = self.state_on("totals", value_sum.device if is_tensor else torch.device("cpu"))
        totals[0].add_(value_sum.detach() if is_tensor and value_sum.requires_grad else value_sum)
        if isinstance(count, Tensor):
            totals[1].add_(count.detach())
        else:
            self.count += count

    def update_state(self, values: Tensor, sample_weight: Tensor | None = None) -> None:  # type: ignore[override]
        """Add per-sample ``values`` (other axes are averaged); a 0-dim value counts as one sample."""
        if not isinstance(values, Tensor):
            values = torch.as_tensor(values, dtype=torch.float32)
        values = values.detach()
        self._accumulate(values.reshape(1) if values.dim() == 0 else values, sample_weight)

    def _accumulate(self, values: Tensor, sample_weight: Any) -> None:
        totals = self.state_on("totals", values.device)
        self.count += accumulate_mean(totals, values, sample_weight)

    def result(self) -> Tensor:
        total, count = self.totals[0], self.totals[1] + self.count
        return torch.where(count == 0, torch.zeros_like(total), total / count)


class MeanMetricWrapper(Mean):
    """Running weighted mean of ``fn(y_true, y_pred, **fn_kwargs)`` (ME3).

    ``fn`` returns per-sample values (extra axes are averaged). A 0-dim result is taken as the batch
    mean and counted once per sample, so a ``reduction="mean"`` loss still gives the epoch mean.

    Example::

        def max_error(y_true, y_pred):
            return (y_true - y_pred).abs().amax(-1)
        m = ew.metrics.MeanMetricWrapper(max_error, direction="min")
    """

    def __init__(
        self,
        fn: Callable[..., Tensor],
        name: str | None = None,
        direction: str | None = None,
        **fn_kwargs: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(
                f"MeanMetricWrapper needs a callable fn(y_true, y_pred), got {type(fn).__name__}."
            )
        super().__init__(name or getattr(fn, "__name__", None) or snake_case(type(fn).__name__), direction)
        self.fn = fn
        self.fn_kwargs = fn_kwargs

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:  # type: ignore[override]
        y_pred = y_pred.detach()
        values = self.fn(y_true, y_pred, **self.fn_kwargs)
        if not isinstance(values, Tensor):
            values = torch.as_tensor(values, dtype=torch.float32, device=y_pred.device)
        values = values.detach()
        if values.dim() == 0:
            values = values.expand(y_pred.shape[0] if y_pred.dim() else 1)
        self._accumulate(values, sample_weight)


# --- adapters ------------------------------------------------------------------------------------
class TorchmetricsMetric(Metric):
    """A ``torchmetrics.Metric`` behind the Keras interface: ``update(preds, target)`` per step (note
    the order), ``compute()`` only when read. It moves to the device of the first update and takes its
    direction from ``higher_is_better``. It takes no sample weights.

    Example: ``ew.metrics.TorchmetricsMetric(torchmetrics.classification.MulticlassAccuracy(num_classes=3))``
    """

    def __init__(self, metric: Any, name: str | None = None) -> None:
        tm = sys.modules.get("torchmetrics")
        if tm is None or not isinstance(metric, tm.Metric):
            raise TypeError(
                f"TorchmetricsMetric wraps a torchmetrics.Metric instance, got {type(metric).__name__}."
            )
        better = getattr(metric, "higher_is_better", None)
        super().__init__(name or snake_case(type(metric).__name__), {True: "max", False: "min"}.get(better))
        self.metric = metric
        self._device: torch.device | None = None
        self._updated = False
        self._syncing = False

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        if sample_weight is not None:
            raise ValueError(
                f"the torchmetrics metric {self.name!r} takes no sample weights: list it in metrics=, "
                "not in weighted_metrics=."
            )
        y_pred = y_pred.detach()
        if self._device != y_pred.device:
            self.metric.to(y_pred.device)
            self._device = y_pred.device
        preds, target = align_ranks(y_pred, y_true)
        self.metric.update(preds, target)
        self._updated = True

    def result(self) -> Tensor:
        if not self._updated and not self._syncing:
            return torch.zeros((), dtype=torch.float32, device=self._device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before.*update", category=UserWarning)
            value = torch.as_tensor(self.metric.compute()).detach()
        if value.numel() != 1:
            raise ValueError(
                f"the torchmetrics metric {self.name!r} computes a tensor of shape {tuple(value.shape)}, but "
                "a logged metric is one number: configure it to reduce (e.g. average='macro')."
            )
        return value.reshape(()).float()

    def reset_state(self) -> None:
        self.metric.reset()
        self._updated = False

    @contextlib.contextmanager
    def sync(self, device: torch.device | None = None) -> Iterator[None]:
        """torchmetrics combines the processes itself, in ``compute()``: within the block every process
        computes (also one that saw no batch), so all of them take part in that collective."""
        if not is_distributed():
            yield
            return
        if self._device is None:  # never updated here: its state must sit where the collective runs
            self._device = collective_device(device)
            self.metric.to(self._device)
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def merge_state(self, metrics: Any) -> None:
        others = [metrics] if isinstance(metrics, Metric) else list(metrics)
        for other in others:
            self.metric.merge_state(other.metric)  # torchmetrics >= 1.3
            self._updated = self._updated or other._updated

    def state_dict(self) -> dict[str, Any]:
        states = {}
        for key, value in self.metric.metric_state.items():
            if isinstance(value, list):
                states[key] = [v.detach().to("cpu").clone() for v in value]
            else:
                states[key] = value.detach().to("cpu").clone()
        return {"_updated": self._updated, "metric_state": states}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        target = device or torch.device("cpu")
        self.metric.to(target)
        self._device = target
        for key, value in state["metric_state"].items():
            setattr(self.metric, key, [v.to(target) for v in value] if isinstance(value, list) else value.to(target))
        self._updated = bool(state["_updated"])
        self.metric._update_count = int(self._updated)  # so compute() does not warn about a missing update


def torch_loss_metric(loss: torch.nn.Module, name: str | None) -> MeanMetricWrapper:
    """A ``torch.nn`` loss module as a metric, called as ``loss(y_pred, y_true)`` (torch's order)."""

    def fn(y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred = align_ranks(y_true, y_pred)
        return loss(y_pred, y_true)

    return MeanMetricWrapper(fn, name=name or snake_case(type(loss).__name__), direction="min")


def callable_metric(fn: Callable[..., Any], name: str | None) -> MeanMetricWrapper:
    """Any ``fn(y_true, y_pred)``; an ``epochwise.losses.Loss`` is a min metric named by its ``name``."""
    losses = sys.modules.get("epochwise.losses")
    is_loss = losses is not None and isinstance(fn, getattr(losses, "Loss", ()))
    declared = getattr(fn, "direction", None)
    direction = "min" if is_loss else declared if declared in ("max", "min") else None
    own_name = getattr(fn, "name", None)
    return MeanMetricWrapper(
        fn, name=name or (own_name if isinstance(own_name, str) else None), direction=direction
    )


# --- name lookup ---------------------------------------------------------------------------------
def unknown_name_message(identifier: str, known: list[str]) -> str:
    hint = did_you_mean(identifier, known, n=5, cutoff=0.5, sep=", ", ignore_case=True)
    return (
        f"Unknown metric {identifier!r}.{hint} A metric can be a name ({', '.join(repr(k) for k in known)}), "
        "an epochwise.metrics.Metric, a torchmetrics.Metric, or a callable fn(y_true, y_pred) returning "
        "per-sample values."
    )
