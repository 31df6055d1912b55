"""Losses by Keras name (rules LO1-LO8 of docs/behaviour.md): `compile(loss="mse")`, `loss=ew.losses.Huber(delta=2.0)`,
a callable `loss(y_true, y_pred)` in Keras order, or a torch loss such as `nn.CrossEntropyLoss()`.

Crossentropies default to `from_logits=None`, meaning "decided from the module": the Model calls
`infer_from_logits(module)` and sets `loss.from_logits` (Keras defaults to False). A loss called
directly with `from_logits=None` treats its input as probabilities, as Keras does.

>>> import torch, epochwise.losses as L
>>> L.get("mse")(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]]))
tensor(0.5000)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from ..text import did_you_mean, snake_case
from . import functions as lf
from .functions import Loss, align_ranks, as_tensors, infer_from_logits, reduce_weighted

__all__ = [
    "Loss",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "AutoCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "Huber",
    "LogCosh",
    "KLDivergence",
    "Poisson",
    "CosineSimilarity",
    "Hinge",
    "SquaredHinge",
    "CategoricalHinge",
    "TorchLoss",
    "LossFunctionWrapper",
    "get",
    "infer_from_logits",
    "looks_like_probabilities",
]


def _check_from_logits(from_logits: bool | None) -> bool | None:
    if from_logits not in (None, True, False):
        raise TypeError(
            f"from_logits must be True, False or None (decided from the module), got {from_logits!r}."
        )
    return from_logits


class _Crossentropy(Loss):
    """Settings shared by BinaryCrossentropy and CategoricalCrossentropy (LO6)."""

    def __init__(
        self,
        from_logits: bool | None = None,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ) -> None:
        super().__init__(reduction, name)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}.")
        self.from_logits = _check_from_logits(from_logits)
        self.label_smoothing = label_smoothing
        self.axis = axis

    def get_config(self):
        extra = {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis}
        return {**super().get_config(), **extra}


class BinaryCrossentropy(_Crossentropy):
    """Binary crossentropy averaged over `axis` (LO6); targets are 0/1 or soft labels in [0, 1].

    >>> BinaryCrossentropy(from_logits=True)(torch.tensor([1.0, 0.0]), torch.tensor([2.0, -2.0]))
    tensor(0.1269)
    """

    _elementwise = True

    def call(self, y_true, y_pred):
        if y_true.shape != y_pred.shape:
            raise ValueError(
                f"binary_crossentropy needs targets and predictions of one shape, got targets "
                f"{tuple(y_true.shape)} and predictions {tuple(y_pred.shape)}: make the module output one "
                "value per target, or use 'sparse_categorical_crossentropy' for class ids."
            )
        return lf.binary_crossentropy(y_true, y_pred, bool(self.from_logits), self.label_smoothing, self.axis)

    def _check_targets(self, y_true, y_pred):
        lf.check_same_shape(self.name, y_true, y_pred)
        lf.check_binary_targets(y_true)


class CategoricalCrossentropy(_Crossentropy):
    """Crossentropy against one-hot (or soft) targets of the prediction's shape (LO6).

    >>> CategoricalCrossentropy()(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.2, 0.8]]))
    tensor(0.2231)
    """

    def call(self, y_true, y_pred):
        if y_true.shape != y_pred.shape:
            raise ValueError(
                f"categorical_crossentropy needs one-hot targets of the prediction's shape, got targets "
                f"{tuple(y_true.shape)} and predictions {tuple(y_pred.shape)}: for integer labels use "
                "'sparse_categorical_crossentropy', or one-hot encode them."
            )
        if y_pred.shape[self.axis] == 1:
            msg = "categorical_crossentropy over a class axis of size 1 is always 0; use binary_crossentropy."
            warnings.warn(msg, SyntaxWarning, stacklevel=4)
        return lf.categorical_crossentropy(
            y_true, y_pred, bool(self.from_logits), self.label_smoothing, self.axis
        )

    def _check_targets(self, y_true, y_pred):
        lf.check_categorical_targets(y_true, y_pred, self.axis)


class SparseCategoricalCrossentropy(Loss):
    """Crossentropy against integer class ids; labels equal to `ignore_class` are masked (LO3, LO6).

    >>> SparseCategoricalCrossentropy()(torch.tensor([1]), torch.tensor([[0.2, 0.8]]))
    tensor(0.2231)
    """

    def __init__(
        self,
        from_logits: bool | None = None,
        ignore_class: int | None = None,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ) -> None:
        super().__init__(reduction, name)
        if ignore_class is not None and not isinstance(ignore_class, int):
            raise TypeError(f"ignore_class must be an int class id or None, got {ignore_class!r}.")
        self.from_logits = _check_from_logits(from_logits)
        self.ignore_class = ignore_class
        self.axis = axis

    def __call__(self, y_true, y_pred, sample_weight=None):
        if (  # the common case, logits (n, C) and integer labels (n,): torch's fused kernel, same value
            sample_weight is None and self.from_logits and self.ignore_class is None and self.axis == -1
            and self.reduction in ("sum_over_batch_size", "mean") and isinstance(y_pred, torch.Tensor)
            and isinstance(y_true, torch.Tensor) and y_pred.dim() == 2 and y_true.dim() == 1
            and not y_true.is_floating_point() and y_true.shape[0] == y_pred.shape[0]
        ):
            return nn.functional.cross_entropy(y_pred.float(), y_true.long())
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        labels = lf.sparse_labels(y_true, y_pred)
        expected = y_pred.movedim(self.axis, -1).shape[:-1]
        if labels.shape != expected:
            raise ValueError(
                f"sparse_categorical_crossentropy needs integer labels of shape {tuple(expected)} for predictions "
                f"of shape {tuple(y_pred.shape)}, got {tuple(y_true.shape)}: for one-hot targets use "
                "'categorical_crossentropy', or pass y.argmax(-1)."
            )
        return lf.sparse_categorical_crossentropy(
            labels, y_pred, bool(self.from_logits), self.ignore_class, self.axis
        )

    def _values_and_mask(self, y_true, y_pred):
        values = self.call(y_true, y_pred)
        if self.ignore_class is None:
            return values, None
        return values, lf.sparse_labels(y_true, y_pred) != self.ignore_class

    def _check_targets(self, y_true, y_pred):
        lf.check_sparse_targets(y_true, y_pred, self.axis, self.ignore_class)

    def get_config(self):
        extra = {"from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}
        return {**super().get_config(), **extra}


class AutoCrossentropy(Loss):
    """`"crossentropy"`/`"ce"`: binary, sparse or categorical, chosen from the first shapes (LO6, ME1).

    An output with last dimension 1 (or rank 1) gives binary; else integer-like targets (lower rank,
    or last dimension 1) give sparse; else categorical. The choice is kept in `resolved`.
    """

    def __init__(
        self,
        from_logits: bool | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "crossentropy",
    ) -> None:
        super().__init__(reduction, name)
        self.from_logits = _check_from_logits(from_logits)
        self.resolved: Loss | None = None

    def resolve(self, y_true, y_pred) -> Loss:
        """Pick the variant on the first call (later calls keep it) and pass the settings on."""
        if self.resolved is None:
            y_true, y_pred = as_tensors(y_true, y_pred)
            if y_pred.ndim <= 1 or y_pred.shape[-1] == 1:
                self.resolved = BinaryCrossentropy()
            elif y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
                self.resolved = SparseCategoricalCrossentropy()
            else:
                self.resolved = CategoricalCrossentropy()
        self.resolved.from_logits = self.from_logits
        self.resolved.reduction = self.reduction
        return self.resolved

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self.resolve(y_true, y_pred)(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return self.resolve(y_true, y_pred).call(y_true, y_pred)

    def validate(self, y_true, y_pred):
        self.resolve(y_true, y_pred).validate(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class _FormulaLoss(Loss):
    """A loss given by one formula of `_loss_functions` (LO7)."""

    _fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    _elementwise = True

    def call(self, y_true, y_pred):
        return type(self)._fn(y_true, y_pred)


class MeanSquaredError(_FormulaLoss):
    """mean (y − p)² over the last axis ("mse"). `MeanSquaredError()([[0, 1]], [[1, 1]])` → 0.5."""

    _fn = staticmethod(lf.mean_squared_error)


class MeanAbsoluteError(_FormulaLoss):
    """mean |y − p| over the last axis ("mae"). `MeanAbsoluteError()([[0, 1]], [[.6, 3]])` → 1.3."""

    _fn = staticmethod(lf.mean_absolute_error)


class MeanAbsolutePercentageError(_FormulaLoss):
    """100·mean(|y − p| / max(|y|, ε)) ("mape"). `MeanAbsolutePercentageError()([[2.]], [[1.]])` → 50."""

    _fn = staticmethod(lf.mean_absolute_percentage_error)


class MeanSquaredLogarithmicError(_FormulaLoss):
    """mean (log(p + 1) − log(y + 1))² with inputs clipped at ε ("msle")."""

    _fn = staticmethod(lf.mean_squared_logarithmic_error)


class LogCosh(_FormulaLoss):
    """mean log cosh(p − y) ("logcosh"): quadratic near 0, linear far away."""

    _fn = staticmethod(lf.log_cosh)


class Poisson(_FormulaLoss):
    """mean(p − y·log(p + ε)), for count targets and positive predictions."""

    _fn = staticmethod(lf.poisson)


class Hinge(_FormulaLoss):
    """mean max(1 − y·p, 0); 0/1 labels are mapped to −1/+1. `Hinge()([[1.]], [[.3]])` → 0.7."""

    _fn = staticmethod(lf.hinge)


class SquaredHinge(_FormulaLoss):
    """mean max(1 − y·p, 0)²; 0/1 labels are mapped to −1/+1."""

    _fn = staticmethod(lf.squared_hinge)


class KLDivergence(_FormulaLoss):
    """Σ y·log(y/p) over the last axis, y and p clipped to [ε, 1] ("kld")."""

    _fn = staticmethod(lf.kl_divergence)
    _elementwise = False


class CategoricalHinge(_FormulaLoss):
    """max(max((1 − y)·p) − Σ y·p + 1, 0) over the class axis, for one-hot targets."""

    _fn = staticmethod(lf.categorical_hinge)
    _elementwise = False


class Huber(Loss):
    """mean of ½e² where |e| ≤ delta, else delta·|e| − ½delta² (LO7). `Huber()([[0, 1]], [[.6, 3]])` → 0.84."""

    _elementwise = True

    def __init__(
        self, delta: float = 1.0, reduction: str | None = "sum_over_batch_size", name: str | None = None
    ):
        super().__init__(reduction, name)
        if not delta > 0:
            raise ValueError(f"Huber delta must be > 0, got {delta!r}.")
        self.delta = float(delta)

    def call(self, y_true, y_pred):
        return lf.huber(y_true, y_pred, self.delta)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class CosineSimilarity(Loss):
    """−cos(y, p) along `axis` (LO7), −1 when aligned. `CosineSimilarity()([[1., 0]], [[2., 0]])` → −1."""

    def __init__(
        self, axis: int = -1, reduction: str | None = "sum_over_batch_size", name: str | None = None
    ):
        super().__init__(reduction, name)
        self.axis = axis

    def call(self, y_true, y_pred):
        return lf.cosine_similarity(y_true, y_pred, self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class _WrappedLoss(Loss):
    """A user's loss function or torch loss: LO1 rank alignment, integer targets kept as they are."""

    def _prepare(self, y_true, y_pred):
        if isinstance(y_pred, (tuple, list, dict)) or isinstance(y_true, (tuple, dict)):
            return y_true, y_pred  # several outputs or targets: the user's function takes the structures as they are
        y_true, y_pred = as_tensors(y_true, y_pred)
        if y_pred.is_floating_point() and y_true.is_floating_point():
            y_true = y_true.to(y_pred.dtype)
        return align_ranks(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = self.call(*self._prepare(y_true, y_pred))
        if not isinstance(values, torch.Tensor):
            raise TypeError(
                f"Loss {self.name!r} returned {type(values).__name__}; it must return a torch.Tensor."
            )
        if values.ndim == 0 and sample_weight is not None:
            raise ValueError(self._no_weights_message())
        return reduce_weighted(values, sample_weight, None, self.reduction)

    def _no_weights_message(self) -> str:
        return (
            f"Loss {self.name!r} returned one value for the whole batch, so sample_weight/class_weight cannot be "
            "applied: return one value per sample, or use a named loss such as 'mse'."
        )

    def validate(self, y_true, y_pred):
        """Try the loss on the first batch's targets and turn a failure into a clear ValueError."""
        y_true, y_pred = as_tensors(y_true, y_pred)
        lf.check_batched(self.name, y_true, y_pred)
        try:
            with torch.no_grad():
                self(y_true[: y_pred.shape[0]], y_pred)
        except Exception as error:  # any failure of user code: re-raise with the shapes and the fix
            raise ValueError(
                f"Loss {self.name!r} failed on a module output of shape {tuple(y_pred.shape)} ({y_pred.dtype}) and "
                f"targets of shape {tuple(y_true.shape)} ({y_true.dtype}): {error}. {self._fix_hint()}"
            ) from error

    def _fix_hint(self) -> str:
        return "Check that the function takes (y_true, y_pred) in Keras order and returns per-sample values."


class LossFunctionWrapper(_WrappedLoss):
    """A function `fn(y_true, y_pred)` (Keras order) returning per-sample values or a scalar.

    Per-sample values are weighted and reduced like a built-in loss (LO2); a scalar is used as is.

    >>> LossFunctionWrapper(lambda y, p: (y - p).abs().mean(-1))([[0.0, 1.0]], [[1.0, 1.0]])
    tensor(0.5000)
    """

    def __init__(self, fn: Callable, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        fn_name = getattr(fn, "__name__", type(fn).__name__)
        super().__init__(reduction, name or ("lambda" if fn_name == "<lambda>" else fn_name))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "fn": getattr(self.fn, "__qualname__", repr(self.fn))}


class TorchLoss(_WrappedLoss):
    """A torch loss module or `torch.nn.functional` loss, called `loss(y_pred, y_true)` (torch order).

    Its result is used as is. Sample weights need per-sample values, so they work only with
    `reduction="none"` modules; e.g. `TorchLoss(nn.CrossEntropyLoss(reduction="none"))`.
    """

    def __init__(self, loss: nn.Module | Callable, name: str | None = None) -> None:
        label = loss.__name__ if not isinstance(loss, nn.Module) else snake_case(type(loss).__name__)
        super().__init__("sum_over_batch_size", name or label)
        self.loss = loss

    def call(self, y_true, y_pred):
        return self.loss(y_pred, y_true)

    def _no_weights_message(self) -> str:
        return (
            f"The torch loss {self.name!r} reduces the batch itself, so sample_weight/class_weight cannot be "
            "applied. Use a named loss (e.g. 'sparse_categorical_crossentropy'), or build the torch loss "
            "with reduction='none' so epochwise can weight its per-sample values."
        )

    def _fix_hint(self) -> str:
        return (
            "Torch losses take (input, target): e.g. nn.CrossEntropyLoss wants raw logits (n, classes) and "
            "integer class ids (n,); nn.BCEWithLogitsLoss and nn.MSELoss want float targets of the output's shape."
        )

    def get_config(self):
        return {**super().get_config(), "loss": repr(self.loss)}


_ALIASES: dict[type[Loss], tuple[str, ...]] = {
    BinaryCrossentropy: ("binary_crossentropy", "bce"),
    CategoricalCrossentropy: ("categorical_crossentropy",),
    SparseCategoricalCrossentropy: ("sparse_categorical_crossentropy",),
    AutoCrossentropy: ("crossentropy", "ce"),
    MeanSquaredError: ("mean_squared_error", "mse"),
    MeanAbsoluteError: ("mean_absolute_error", "mae"),
    MeanAbsolutePercentageError: ("mean_absolute_percentage_error", "mape"),
    MeanSquaredLogarithmicError: ("mean_squared_logarithmic_error", "msle"),
    Huber: ("huber", "huber_loss"),
    LogCosh: ("log_cosh", "logcosh"),
    KLDivergence: ("kl_divergence", "kld", "kullback_leibler_divergence"),
    Poisson: ("poisson",),
    CosineSimilarity: ("cosine_similarity",),
    Hinge: ("hinge",),
    SquaredHinge: ("squared_hinge",),
    CategoricalHinge: ("categorical_hinge",),
}
_NAMES: dict[str, type[Loss]] = {
    name: cls for cls, names in _ALIASES.items() for name in (*names, cls.__name__)
}


def get(identifier) -> Loss:
    """Resolve what `compile(loss=...)` accepts into a Loss.

    A Keras name or alias ("mse", "sparse_categorical_crossentropy", "ce", "MeanSquaredError"); a
    Loss instance (returned as is); a torch loss module or `torch.nn.functional` loss (TorchLoss); any
    other callable `fn(y_true, y_pred)` (LossFunctionWrapper).

    >>> get("mae").name
    'mean_absolute_error'
    """
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier) or _NAMES.get(identifier.lower())
        if cls is None:
            lowered = {n.lower(): _ALIASES[c][0] for n, c in _NAMES.items()}  # suggest snake_case names
            suggestion = did_you_mean(identifier.lower(), lowered, n=6, limit=3)
            known = ", ".join(sorted(n for n in _NAMES if n.islower()))
            raise ValueError(
                f"Unknown loss {identifier!r}.{suggestion} Known names: {known}. For your own loss pass a "
                "function loss(y_true, y_pred) returning per-sample values, or a torch loss module such as "
                "torch.nn.MSELoss()."
            )
        if identifier.lower() in ("crossentropy", "ce"):
            return AutoCrossentropy(name=identifier.lower())
        return cls()
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type):
        raise TypeError(
            f"loss={identifier.__name__} is a class; pass an instance, e.g. loss={identifier.__name__}()."
        )
    if isinstance(identifier, nn.Module) or getattr(identifier, "__module__", None) == "torch.nn.functional":
        return TorchLoss(identifier)
    if callable(identifier):
        return LossFunctionWrapper(identifier)
    several = (" (one loss per output of a module with several outputs goes to compile(loss=[...]) or "
               "compile(loss={name: ...}))") if isinstance(identifier, (list, tuple, dict)) else ""
    raise TypeError(
        f"loss must be a loss name such as 'mse', an epochwise.losses.Loss, a torch loss module or a callable "
        f"loss(y_true, y_pred); got {type(identifier).__name__}{several}."
    )


def looks_like_probabilities(y_pred: torch.Tensor, loss: Loss) -> bool:
    """True when outputs given to a crossentropy as logits look like probabilities (for a warning).

    All values must lie in [0, 1], and for categorical/sparse crossentropy each row must sum to 1
    within 1e-3. Always False for other losses. Synchronises once; call it on one batch only.
    """
    if isinstance(loss, AutoCrossentropy):
        loss = loss.resolved or (
            BinaryCrossentropy() if y_pred.ndim <= 1 or y_pred.shape[-1] == 1 else CategoricalCrossentropy()
        )
    if not isinstance(loss, (BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy)):
        return False
    p = y_pred.detach().float()
    if p.numel() == 0 or not bool(((p >= 0) & (p <= 1)).all()):
        return False
    if isinstance(loss, BinaryCrossentropy) or p.ndim == 0:
        return True
    return bool(((p.sum(dim=loss.axis) - 1).abs() <= 1e-3).all())
