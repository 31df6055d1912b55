"""Keras-style metrics that accumulate on the device (reference §11, rules ME1-ME4, names G5).

``update_state`` runs every training step and never reads a tensor value on the host: the state lives
in tensors created on the device of the first update, and a value reaches the host only when someone
reads ``result()`` (the Model does so once per log).

Example::

    acc = ew.metrics.get("accuracy")
    acc.update_state(y_true, y_pred)      # resolves binary / sparse / categorical from the shapes (ME1)
    float(acc.result())                   # the one host sync
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..distributed import is_distributed
from ..losses.functions import div_no_nan
from ..text import check_int, snake_case
from . import base as _impl
from . import functions as mf
from .base import Mean, MeanMetricWrapper, Metric, TorchmetricsMetric

__all__ = [
    "AUC",
    "Accuracy",
    "AutoAccuracy",
    "BinaryAccuracy",
    "BinaryCrossentropy",
    "CategoricalAccuracy",
    "CategoricalCrossentropy",
    "CosineSimilarity",
    "Hinge",
    "KLDivergence",
    "LogCoshError",
    "Mean",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanMetricWrapper",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Metric",
    "Poisson",
    "Precision",
    "Recall",
    "RootMeanSquaredError",
    "SparseCategoricalAccuracy",
    "SparseCategoricalCrossentropy",
    "SparseTopKCategoricalAccuracy",
    "SquaredHinge",
    "TopKCategoricalAccuracy",
    "TorchmetricsMetric",
    "get",
    "get_list",
]


# --- fixed formulas -------------------------------------------------------------------------------
class _FormulaMetric(MeanMetricWrapper):
    """The running mean of one per-sample formula of ``_metric_impl``; named like the class."""

    _fn: Callable[..., Tensor]
    _default_name: str | None = None

    def __init__(self, name: str | None = None) -> None:
        default = self._default_name or snake_case(type(self).__name__)
        super().__init__(type(self)._fn, name=name or default, direction=self.direction)


class Accuracy(_FormulaMetric):
    """Fraction of exact matches ``y_pred == y_true``. Example: ``ew.metrics.Accuracy()``."""

    _fn, direction = staticmethod(mf.accuracy), "max"


class CategoricalAccuracy(_FormulaMetric):
    """``argmax(p) == argmax(y)`` for one-hot ``y``. Example: ``ew.metrics.CategoricalAccuracy()``."""

    _fn, direction = staticmethod(mf.categorical_accuracy), "max"


class SparseCategoricalAccuracy(_FormulaMetric):
    """``argmax(p) == label`` for integer labels. Example: ``ew.metrics.SparseCategoricalAccuracy()``."""

    _fn, direction = staticmethod(mf.sparse_categorical_accuracy), "max"

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        if sample_weight is None and y_pred.dim() == 2 and y_true.dim() == 1 and not y_true.is_floating_point():
            # the common case in one fused expression (the training loop calls this every step)
            self.update((y_pred.argmax(-1) == y_true).sum(dtype=torch.float32), y_true.shape[0])  # argmax: no graph
            return
        super().update_state(y_true, y_pred, sample_weight)


class MeanAbsoluteError(_FormulaMetric):
    """Running mean of ``|y - p|``. Example: ``ew.metrics.MeanAbsoluteError()``."""

    _fn, direction = staticmethod(mf.mean_absolute_error), "min"


class MeanSquaredError(_FormulaMetric):
    """Running mean of ``(y - p)**2``. Example: ``ew.metrics.MeanSquaredError()``."""

    _fn, direction = staticmethod(mf.mean_squared_error), "min"


class RootMeanSquaredError(MeanSquaredError):
    """``sqrt`` of the running weighted MSE, not a mean of per-batch roots.

    Example: ``ew.metrics.RootMeanSquaredError()``
    """

    def result(self) -> Tensor:
        return super().result().sqrt()


class MeanAbsolutePercentageError(_FormulaMetric):
    """``100 * |y - p| / max(|y|, 1e-7)``. Example: ``ew.metrics.MeanAbsolutePercentageError()``."""

    _fn, direction = staticmethod(mf.mean_absolute_percentage_error), "min"


class MeanSquaredLogarithmicError(_FormulaMetric):
    """``(log1p(p) - log1p(y))**2``. Example: ``ew.metrics.MeanSquaredLogarithmicError()``."""

    _fn, direction = staticmethod(mf.mean_squared_logarithmic_error), "min"


class LogCoshError(_FormulaMetric):
    """Running mean of ``log(cosh(p - y))``, named ``logcosh``. Example: ``ew.metrics.LogCoshError()``."""

    _fn, direction, _default_name = staticmethod(mf.log_cosh), "min", "logcosh"


class Hinge(_FormulaMetric):
    """``max(1 - y*p, 0)``; 0/1 labels become -1/+1. Example: ``ew.metrics.Hinge()``."""

    _fn, direction = staticmethod(mf.hinge), "min"


class SquaredHinge(_FormulaMetric):
    """``max(1 - y*p, 0)**2``. Example: ``ew.metrics.SquaredHinge()``."""

    _fn, direction = staticmethod(mf.squared_hinge), "min"


class Poisson(_FormulaMetric):
    """``p - y*log(p + 1e-7)``. Example: ``ew.metrics.Poisson()``."""

    _fn, direction = staticmethod(mf.poisson), "min"


class KLDivergence(_FormulaMetric):
    """``sum(y * log(y / p))`` per sample. Example: ``ew.metrics.KLDivergence()``."""

    _fn, direction = staticmethod(mf.kl_divergence), "min"


# --- formulas with options ------------------------------------------------------------------------
class BinaryAccuracy(MeanMetricWrapper):
    """Fraction of samples with ``(p > threshold) == y``; strict ``>`` (ME1).

    With ``from_logits=True`` the output is a logit and ``z > logit(threshold)`` is used, identical to
    ``sigmoid(z) > threshold``. (Keras has no such switch and scores logits against 0.5.)

    Example: ``ew.metrics.BinaryAccuracy(from_logits=True)``
    """

    def __init__(
        self, name: str = "binary_accuracy", threshold: float = 0.5, from_logits: bool = False
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"threshold must be a number such as 0.5, got {threshold!r}.")
        self.threshold, self.from_logits = float(threshold), bool(from_logits)
        cut = mf.logit_threshold(self.threshold) if from_logits else self.threshold
        super().__init__(mf.binary_accuracy, name, "max", threshold=cut)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """True class (argmax of one-hot ``y``) among the ``k`` top scores; ties count as in.

    Example: ``ew.metrics.TopKCategoricalAccuracy(k=3)``
    """

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy") -> None:
        k = check_int(k, "k")
        super().__init__(mf.top_k_categorical_accuracy, name, "max", k=k)


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """Integer label among the ``k`` top scores. Example: ``ew.metrics.SparseTopKCategoricalAccuracy(k=3)``."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy") -> None:
        k = check_int(k, "k")
        super().__init__(mf.sparse_top_k_categorical_accuracy, name, "max", k=k)


class CosineSimilarity(MeanMetricWrapper):
    """Cosine similarity of ``y`` and ``p`` along ``axis``. Example: ``ew.metrics.CosineSimilarity()``."""

    def __init__(self, name: str = "cosine_similarity", axis: int = -1) -> None:
        super().__init__(mf.cosine_similarity, name, "max", axis=axis)


class BinaryCrossentropy(MeanMetricWrapper):
    """Binary crossentropy (LO6) of probabilities, or of logits with ``from_logits=True``.

    Example: ``ew.metrics.BinaryCrossentropy(from_logits=True)``
    """

    def __init__(
        self, name: str = "binary_crossentropy", from_logits: bool = False, label_smoothing: float = 0.0
    ) -> None:
        self.from_logits = bool(from_logits)
        fn = mf.binary_crossentropy
        super().__init__(fn, name, "min", from_logits=self.from_logits, label_smoothing=label_smoothing)


class CategoricalCrossentropy(MeanMetricWrapper):
    """Crossentropy with one-hot ``y`` (LO6). Example: ``ew.metrics.CategoricalCrossentropy(from_logits=True)``."""

    def __init__(
        self, name: str = "categorical_crossentropy", from_logits: bool = False, label_smoothing: float = 0.0
    ) -> None:
        self.from_logits = bool(from_logits)
        fn = mf.categorical_crossentropy
        super().__init__(fn, name, "min", from_logits=self.from_logits, label_smoothing=label_smoothing)


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    """Crossentropy with integer labels (LO6). Example: ``ew.metrics.SparseCategoricalCrossentropy()``."""

    def __init__(self, name: str = "sparse_categorical_crossentropy", from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)
        super().__init__(mf.sparse_categorical_crossentropy, name, "min", from_logits=self.from_logits)


class AutoAccuracy(Metric):
    """``"accuracy"`` / ``"acc"``: the accuracy chosen from the first batch's shapes (ME1).

    A prediction whose last axis is 1 (or of rank 1) -> :class:`BinaryAccuracy`; else a label of lower
    rank, or a label axis of 1 against C > 1 scores -> :class:`SparseCategoricalAccuracy`; else
    :class:`CategoricalAccuracy`. Only shapes are read, so no host sync.

    Example: ``ew.metrics.AutoAccuracy(name="acc")``
    """

    direction = "max"

    def __init__(self, name: str = "accuracy", from_logits: bool = False) -> None:
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self.resolved: Metric | None = None

    def _resolve(self, y_true: Tensor, y_pred: Tensor) -> Metric:
        if y_pred.dim() <= 1 or y_pred.shape[-1] == 1:
            return BinaryAccuracy(name=self.name, from_logits=self.from_logits)
        if y_true.dim() < y_pred.dim() or (y_true.dim() > 0 and y_true.shape[-1] == 1):
            return SparseCategoricalAccuracy(name=self.name)
        return CategoricalAccuracy(name=self.name)

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        if self.resolved is None:
            self.resolved = self._resolve(y_true, y_pred)
        self.resolved.name = self.name  # follows renames (G5 suffixes, weighted_ prefix)
        self.resolved.update_state(y_true, y_pred, sample_weight)

    def result(self) -> Tensor:
        return torch.zeros((), dtype=torch.float32) if self.resolved is None else self.resolved.result()

    def reset_state(self) -> None:
        if self.resolved is not None:
            self.resolved.reset_state()

    def state_dict(self) -> dict[str, Any]:
        if self.resolved is None:
            return {}
        return {"kind": type(self.resolved).__name__, "state": self.resolved.state_dict()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        if not state:
            self.resolved = None
            return
        kinds = {"BinaryAccuracy": lambda: BinaryAccuracy(name=self.name, from_logits=self.from_logits),
                 "SparseCategoricalAccuracy": lambda: SparseCategoricalAccuracy(name=self.name),
                 "CategoricalAccuracy": lambda: CategoricalAccuracy(name=self.name)}
        self.resolved = kinds[state["kind"]]()
        self.resolved.load_state_dict(state["state"], device)

    def merge_state(self, metrics: Any) -> None:
        others = [metrics] if isinstance(metrics, Metric) else list(metrics)
        parts = [o.resolved if isinstance(o, AutoAccuracy) else o for o in others]
        parts = [p for p in parts if p is not None]
        if parts and self.resolved is None:
            self.resolved = copy.deepcopy(parts[0])
            self.resolved.reset_state()
        if parts:
            self.resolved.merge_state(parts)

    @contextlib.contextmanager
    def sync(self, device: torch.device | None = None) -> Iterator[None]:
        # a process that saw no batch has not resolved yet: every resolution is a Mean of the same state,
        # so a Mean at its defaults takes part in the collective and reads the combined value
        stand_in = self.resolved is None and is_distributed()
        if stand_in:
            self.resolved = Mean(self.name)
        try:
            with self.resolved.sync(device) if self.resolved is not None else contextlib.nullcontext():
                yield
        finally:
            if stand_in:
                self.resolved = None


# --- counts at thresholds -------------------------------------------------------------------------
class AUC(Metric):
    """Area under the ROC or PR curve, computed as Keras does.

    Each prediction adds its weight to one of ``num_thresholds`` evenly spaced buckets on the device;
    ``result()`` turns the counts into the curve and integrates it (``summation_method``
    "interpolation", "minoring" or "majoring"). Every output is one binary prediction (Keras'
    ``multi_label=False``); ``from_logits=True`` applies a sigmoid first.

    Example: ``ew.metrics.AUC(curve="PR", from_logits=True)``
    """

    direction = "max"

    def __init__(
        self,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        name: str = "auc",
        from_logits: bool = False,
    ) -> None:
        super().__init__(name)
        self.num_thresholds = check_int(num_thresholds, "num_thresholds", minimum=2)
        if not isinstance(curve, str) or curve.upper() not in ("ROC", "PR"):
            raise ValueError(f"curve must be 'ROC' or 'PR', got {curve!r}.")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(
                f"summation_method must be 'interpolation', 'minoring' or 'majoring', got {summation_method!r}."
            )
        self.curve = curve.upper()
        self.summation_method = summation_method
        self.from_logits = bool(from_logits)
        # weight of positive (row 0) and negative (row 1) targets per bucket
        self.add_state("buckets", torch.zeros(2, self.num_thresholds), "sum")

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        p = y_pred.detach().sigmoid() if self.from_logits else y_pred.detach()
        mf.auc_update(self.state_on("buckets", p.device), y_true, p, sample_weight, self.name)

    def result(self) -> Tensor:
        return mf.auc_area(self.buckets, self.curve, self.summation_method)


class _ThresholdMetric(Metric):
    """Running weighted [true positives, predicted positives, actual positives] at one threshold."""

    direction = "max"
    _denominator: int

    def __init__(self, thresholds: float, class_id: int | None, name: str, from_logits: bool) -> None:
        super().__init__(name)
        self.thresholds = mf.check_probability(thresholds, "thresholds")
        if class_id is not None:
            check_int(class_id, "class_id", minimum=0)
        self.class_id, self.from_logits = class_id, bool(from_logits)
        self._cut = mf.logit_threshold(self.thresholds) if from_logits else self.thresholds
        self.add_state("counts", torch.zeros(3), "sum")  # [true pos., predicted pos., actual pos.]

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        y_pred = y_pred.detach()
        counts = mf.threshold_counts(y_true, y_pred, self._cut, self.class_id, sample_weight, self.name)
        self.state_on("counts", y_pred.device).add_(counts)

    def result(self) -> Tensor:
        return div_no_nan(self.counts[0], self.counts[self._denominator])


class Precision(_ThresholdMetric):
    """Weighted ``tp / (tp + fp)`` over the epoch; ``p > thresholds`` is a positive prediction.

    Example: ``ew.metrics.Precision(thresholds=0.5, class_id=None, from_logits=False)``
    """

    _denominator = 1

    def __init__(
        self,
        thresholds: float = 0.5,
        class_id: int | None = None,
        name: str = "precision",
        from_logits: bool = False,
    ) -> None:
        super().__init__(thresholds, class_id, name, from_logits)


class Recall(_ThresholdMetric):
    """Weighted ``tp / (tp + fn)`` over the epoch; a non-zero target is a positive.

    Example: ``ew.metrics.Recall(thresholds=0.5)``
    """

    _denominator = 2

    def __init__(
        self,
        thresholds: float = 0.5,
        class_id: int | None = None,
        name: str = "recall",
        from_logits: bool = False,
    ) -> None:
        super().__init__(thresholds, class_id, name, from_logits)


# --- lookup ---------------------------------------------------------------------------------------
_NAMED: tuple[type[Metric], ...] = (
    BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy, MeanAbsoluteError, MeanSquaredError, RootMeanSquaredError,
    MeanAbsolutePercentageError, MeanSquaredLogarithmicError, LogCoshError, Hinge, SquaredHinge, Poisson,
    KLDivergence, CosineSimilarity, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
    AUC, Precision, Recall,
)  # fmt: skip
_BY_NAME: dict[str, type[Metric]] = {snake_case(c.__name__): c for c in _NAMED} | {
    "mae": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "rmse": RootMeanSquaredError,
    "mape": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError,
    "logcosh": LogCoshError,
    "log_cosh": LogCoshError,
    "kld": KLDivergence,
}
_LOGIT_AWARE = (AutoAccuracy, BinaryAccuracy, AUC, Precision, Recall, BinaryCrossentropy,
                CategoricalCrossentropy, SparseCategoricalCrossentropy)  # fmt: skip


def _build(cls: type[Metric], name: str | None, from_logits: bool) -> Metric:
    kwargs: dict[str, Any] = {} if name is None else {"name": name}
    if issubclass(cls, _LOGIT_AWARE):
        kwargs["from_logits"] = from_logits
    return cls(**kwargs)


def get(identifier: Any, *, from_logits: bool = False, name: str | None = None) -> Metric:
    """A metric from a Keras name, a :class:`Metric` (class or instance), a ``torchmetrics.Metric``,
    a ``torch.nn`` loss module, or a callable ``fn(y_true, y_pred)``.

    Names follow Keras (``"accuracy"``/``"acc"`` resolve per ME1, ``"mae"``, ``"rmse"``, ``"auc"``,
    ``"top_k_categorical_accuracy"``, class names in snake_case or CamelCase) and the metric is named by
    the string given (G5). ``from_logits`` reaches the metrics whose meaning depends on it (binary
    accuracy, AUC, precision, recall, crossentropies). An instance is returned as is (renamed when
    ``name`` is given).

    Example: ``ew.metrics.get("acc", from_logits=True)``
    """
    if isinstance(identifier, Metric):
        if name is not None:
            identifier.name = name
        return identifier
    if isinstance(identifier, str):
        key = identifier.strip()
        if key.lower() in ("accuracy", "acc"):
            return AutoAccuracy(name=name or identifier, from_logits=from_logits)
        cls = _BY_NAME.get(key) or _BY_NAME.get(snake_case(key))
        if cls is None:
            raise ValueError(_impl.unknown_name_message(identifier, ["accuracy", "acc", *_BY_NAME]))
        return _build(cls, name or identifier, from_logits)
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return _build(identifier, name, from_logits)
    tm = sys.modules.get("torchmetrics")
    if tm is not None and isinstance(identifier, tm.Metric):
        return TorchmetricsMetric(identifier, name=name)
    if isinstance(identifier, torch.nn.modules.loss._Loss):
        return _impl.torch_loss_metric(identifier, name)
    if callable(identifier) and not isinstance(identifier, type):
        return _impl.callable_metric(identifier, name)
    hint = (" (per-output metrics go to compile: metrics=[['accuracy'], ['mae']] or a dict by output name)"
            if isinstance(identifier, (list, tuple, dict)) else "")
    raise TypeError(
        f"Cannot use {identifier!r} (type {type(identifier).__name__}) as a metric{hint}: pass a metric name such "
        "as 'accuracy', an epochwise.metrics.Metric, a torchmetrics.Metric, or a callable fn(y_true, y_pred)."
    )


def get_list(identifiers: Any, *, from_logits: bool = False) -> list[Metric]:
    """The ``metrics=`` argument of ``compile`` as a list of metrics with unique names (G5).

    None gives ``[]``; a single entry is a list of one; each entry goes through :func:`get`. A repeated
    name gets ``_1``, ``_2``, ... (the metric's ``name`` is changed); an instance listed twice is copied.

    Example: ``ew.metrics.get_list(["mae", "mae"])``  # names mae, mae_1
    """
    if identifiers is None:
        return []
    if isinstance(identifiers, dict):
        raise ValueError(
            "get_list builds the metrics of one output; metrics per output (a dict by output name, or one list "
            "per output) are given to compile(metrics=...) of a model with several outputs."
        )
    items = list(identifiers) if isinstance(identifiers, (list, tuple)) else [identifiers]
    metrics: list[Metric] = []
    seen_names: set[str] = set()
    seen_ids: set[int] = set()
    for identifier in items:
        if identifier is None:
            continue
        metric = get(identifier, from_logits=from_logits)
        if id(metric) in seen_ids:
            metric = copy.deepcopy(metric)
        seen_ids.add(id(metric))
        if metric.name in seen_names:
            base, i = metric.name, 1
            while f"{base}_{i}" in seen_names:
                i += 1
            metric.name = f"{base}_{i}"
        seen_names.add(metric.name)
        metrics.append(metric)
    return metrics
