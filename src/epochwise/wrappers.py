"""scikit-learn estimators around an epochwise Model, with Keras 3's names (``keras.wrappers``).

``SKLearnClassifier`` and ``SKLearnRegressor`` take ``model``: a function ``build(X, y, **model_kwargs)``
returning a compiled :class:`epochwise.Model` (called afresh at every ``fit``), or a compiled Model
(copied at every ``fit``). They work with ``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and
``clone``; ``model_kwargs`` and ``fit_kwargs`` are reachable as nested parameters
(``fit_kwargs__batch_size``, ``model_kwargs__learning_rate``). ``fit_kwargs={"seed": 0}`` makes a fit
reproducible: the seed is set before ``build`` (initial weights) and passed to ``Model.fit`` (data
order, dropout). See ``docs/tuning.md``.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np
import torch

from .model import Model
from .text import did_you_mean

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError:  # the estimators raise a clear ImportError when built
    BaseEstimator = ClassifierMixin = RegressorMixin = object  # type: ignore[assignment,misc]
    _SKLEARN = False
else:
    _SKLEARN = True

__all__ = ["SKLearnClassifier", "SKLearnRegressor"]

_NESTED = ("model_kwargs", "fit_kwargs")
_FIT_ARGS = [p for p in inspect.signature(Model.fit).parameters if p not in ("self", "x", "y")]


def _validate_data(estimator: Any, X: Any, y: Any = "no_validation", reset: bool = True, **kwargs: Any) -> Any:
    """sklearn's ``validate_data`` (>= 1.6) or the estimator method it replaced."""
    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # scikit-learn < 1.6
        return estimator._validate_data(X, y, reset=reset, **kwargs)
    return validate_data(estimator, X, y, reset=reset, **kwargs)


class _SKLBase(BaseEstimator):
    """What the classifier and the regressor share: building, fitting, parameters, tags."""

    def __init__(
        self,
        model: Any,
        warm_start: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        fit_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not _SKLEARN:
            raise ImportError(f"{type(self).__name__} needs scikit-learn: pip install scikit-learn")
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    # --- parameters: model_kwargs__x and fit_kwargs__x reach into the dicts -----------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = super().get_params(deep=False)
        if deep:
            for name in _NESTED:
                if isinstance(params[name], dict):
                    params.update({f"{name}__{key}": value for key, value in params[name].items()})
        return params

    def set_params(self, **params: Any) -> _SKLBase:
        nested = {k: v for k, v in params.items() if k.partition("__")[0] in _NESTED and "__" in k}
        super().set_params(**{k: v for k, v in params.items() if k not in nested})
        for key, value in nested.items():
            name, _, inner = key.partition("__")
            updated = dict(getattr(self, name) or {})  # a new dict: the one given to __init__ stays as it was
            updated[inner] = value
            setattr(self, name, updated)
        return self

    # --- tags ---------------------------------------------------------------------------------
    def _seed(self) -> Any:
        return (self.fit_kwargs or {}).get("seed") if isinstance(self.fit_kwargs, dict) else None

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self._seed() is None  # fit_kwargs={"seed": ...} makes fit reproducible
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"non_deterministic": self._seed() is None, "poor_score": True}

    # --- fit ----------------------------------------------------------------------------------
    def _check_kwargs(self, name: str, value: Any) -> dict[str, Any]:
        owner = type(self).__name__
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"{owner}({name}={value!r}): {name} must be a dict of keyword arguments or None")
        return value

    def _fit_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        owner = type(self).__name__
        merged = {"verbose": 0, **self._check_kwargs("fit_kwargs", self.fit_kwargs), **kwargs}
        for key in merged:
            if key not in _FIT_ARGS:
                where = "fit_kwargs" if key in (self.fit_kwargs or {}) else "the fit() call"
                hint = " X and y are fit's own arguments." if key in ("x", "y", "X") else did_you_mean(key, _FIT_ARGS)
                raise TypeError(f"{owner}: {key!r} in {where} is not an argument of epochwise.Model.fit.{hint}")
        return merged

    def _build(self, X: np.ndarray, y: np.ndarray, seed: Any) -> Model:
        owner = type(self).__name__
        model_kwargs = self._check_kwargs("model_kwargs", self.model_kwargs)
        if isinstance(self.model, Model):
            if model_kwargs:
                raise ValueError(
                    f"{owner}: model_kwargs {sorted(model_kwargs)} are for a build function, but model is an "
                    "epochwise.Model; pass model=build where build(X, y, **model_kwargs) returns the Model"
                )
            model = copy.deepcopy(self.model)  # its weights as given, a fresh optimizer state
            if model.optimizer is not None and model.optimizer.built:
                model.optimizer.torch_optimizer.state.clear()
                model.optimizer.iterations = 0
        elif callable(self.model):
            try:
                inspect.signature(self.model).bind(X=X, y=y, **model_kwargs)
            except TypeError as err:
                raise TypeError(
                    f"{owner}: the build function {getattr(self.model, '__name__', self.model)!r} cannot be "
                    f"called as build(X=..., y=..., **model_kwargs) with model_kwargs {sorted(model_kwargs)}: "
                    f"{err}"
                ) from None
            if seed is None:
                model = self.model(X=X, y=y, **model_kwargs)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)  # the initial weights follow the seed
                    model = self.model(X=X, y=y, **model_kwargs)
            if not isinstance(model, Model):
                raise TypeError(
                    f"{owner}: the build function returned {type(model).__name__}; it must return a compiled "
                    "epochwise.Model (ew.Model(module) then model.compile(optimizer=..., loss=...))"
                )
        else:
            raise TypeError(
                f"{owner}(model={self.model!r}): model must be a function build(X, y, **model_kwargs) returning "
                "a compiled epochwise.Model, or a compiled epochwise.Model"
            )
        if not model.compiled or model.optimizer is None:
            raise ValueError(f"{owner}: the model must be compiled; call model.compile(optimizer=..., loss=...)")
        return model

    def fit(self, X: Any, y: Any, **kwargs: Any) -> _SKLBase:
        """Build (or, with ``warm_start``, reuse) the model and train it; ``kwargs`` go to ``Model.fit``
        and take precedence over ``fit_kwargs``."""
        warm = bool(self.warm_start) and hasattr(self, "model_")
        X, y_model = self._fit_data(X, y, warm)
        fit_args = self._fit_arguments(kwargs)
        if isinstance(fit_args.get("validation_data"), tuple) and len(fit_args["validation_data"]) in (2, 3):
            x_val, y_val, *weights = fit_args["validation_data"]  # labels as the model sees them
            x_val = _validate_data(self, x_val, reset=False, dtype=np.float32)
            fit_args["validation_data"] = (x_val, self._encode(np.asarray(y_val), "validation_data"), *weights)
        model = self.model_ if warm else self._build(X, y_model, fit_args.get("seed"))
        self._check_outputs(model, X, y_model)
        history = model.fit(X, y_model, **fit_args)
        self.model_ = model
        self.history_ = {key: list(values) for key, values in history.history.items()}
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _raw_predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=np.float32)
        out = self.model_.predict(X, verbose=0)
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{type(self).__name__} needs a module with one output tensor, got {type(out).__name__}")
        return out.reshape(len(X), -1)

    @property
    def epoch_(self) -> int:
        """The number of epochs the last fit ran."""
        return len(next(iter(getattr(self, "history_", {}).values()), []))


class SKLearnClassifier(ClassifierMixin, _SKLBase):
    """A scikit-learn classifier around an epochwise Model (Keras's ``keras.wrappers.SKLearnClassifier``).

    The labels (ints or strings) are encoded as class indices ``0 .. n_classes-1`` (``classes_`` holds
    the labels, sorted); the build function receives them as ``y``, so a module ending in
    ``nn.Linear(..., n_classes)`` with ``loss="sparse_categorical_crossentropy"`` fits. Two classes may
    also use one output with ``loss="binary_crossentropy"``. ``predict`` returns labels,
    ``predict_proba`` probabilities (softmax or sigmoid of logits), ``score`` the accuracy.

    Example::

        def build(X, y, hidden=32, learning_rate=1e-3):
            net = nn.Sequential(nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, len(np.unique(y))))
            model = ew.Model(net)
            model.compile(optimizer=ew.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
            return model

        clf = ew.wrappers.SKLearnClassifier(build, fit_kwargs={"epochs": 20, "seed": 0})
        clf.fit(X, y).score(X_test, y_test)
    """

    def _fit_data(self, X: Any, y: Any, warm: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = _validate_data(self, X, y, reset=not warm, dtype=np.float32)
        check_classification_targets(y)
        if warm:
            return X, self._encode(y, "y (warm_start=True)")
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"SKLearnClassifier: y holds one class ({classes.tolist()}); a classifier needs at least two"
            )
        self.classes_ = classes
        return X, encoded.reshape(-1).astype(np.int64)

    def _encode(self, y: np.ndarray, what: str) -> np.ndarray:
        """Labels as class indices, by ``classes_``; a label the fit did not see is an error."""
        y = y.reshape(-1)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(
                f"SKLearnClassifier: {what} holds labels {unknown.tolist()} that are not in the training labels "
                f"(classes_ {self.classes_.tolist()})"
                + ("; set warm_start=False to start again" if "warm_start" in what else "")
            )
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def _fit_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        merged = super()._fit_arguments(kwargs)
        weights = merged.get("class_weight")
        if isinstance(weights, dict):  # keyed by label, as in scikit-learn; the model sees indices
            index = self._encode(np.asarray(list(weights)), "class_weight")
            merged["class_weight"] = {int(i): w for i, w in zip(index, weights.values())}
        return merged

    def _check_outputs(self, model: Model, X: np.ndarray, y: np.ndarray) -> None:
        width = int(np.prod(np.shape(model.predict(X[:1], verbose=0))[1:]))
        n = len(self.classes_)
        if width != n and not (n == 2 and width == 1):
            raise ValueError(
                f"SKLearnClassifier: the module gives {width} outputs per sample but y has {n} classes; end it "
                f"with nn.Linear(..., {n}) (n_classes = len(np.unique(y)) in the build function)"
                + (", or with one output and loss='binary_crossentropy'" if n == 2 else "")
            )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per class in ``classes_`` order; rows sum to 1."""
        out = self._raw_predict(X).astype(np.float64)
        logits = _outputs_are_logits(self.model_)
        if out.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-out)) if logits else np.clip(out, 0.0, 1.0)
            return np.hstack([1.0 - p, p])
        if logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
        out = np.clip(out, 0.0, None)
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each sample."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True  # as in Keras: the score depends on the model and epochs
        return tags


class SKLearnRegressor(RegressorMixin, _SKLBase):
    """A scikit-learn regressor around an epochwise Model (Keras's ``keras.wrappers.SKLearnRegressor``).

    The build function receives ``y`` as float32 of shape ``(n, n_outputs)`` (a 1-D target becomes one
    column); ``predict`` returns float64 of the shape ``y`` had (1-D stays 1-D), ``score`` the R².

    Example::

        def build(X, y):
            model = ew.Model(nn.Sequential(nn.Linear(X.shape[1], 32), nn.ReLU(), nn.Linear(32, y.shape[1])))
            model.compile(optimizer="adam", loss="mse")
            return model

        reg = ew.wrappers.SKLearnRegressor(build, fit_kwargs={"epochs": 50})
        cross_val_score(reg, X, y, cv=3)
    """

    def _fit_data(self, X: Any, y: Any, warm: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = _validate_data(self, X, y, reset=not warm, dtype=np.float32, multi_output=True, y_numeric=True)
        if not warm:
            self._y_ndim = y.ndim
        return X, self._encode(y, "y")

    def _encode(self, y: np.ndarray, what: str) -> np.ndarray:
        """Targets as the model sees them: float32, one column per output."""
        return np.asarray(y, dtype=np.float32).reshape(len(y), -1)

    def _check_outputs(self, model: Model, X: np.ndarray, y: np.ndarray) -> None:
        width = int(np.prod(np.shape(model.predict(X[:1], verbose=0))[1:]))
        if width != y.shape[1]:
            raise ValueError(
                f"SKLearnRegressor: the module gives {width} outputs per sample but y has {y.shape[1]} "
                f"column(s); end it with nn.Linear(..., {y.shape[1]}) (y.shape[1] in the build function)"
            )

    def predict(self, X: Any) -> np.ndarray:
        """The predicted targets, float64, shaped as ``y`` was in fit."""
        out = self._raw_predict(X).astype(np.float64)
        return out.ravel() if self._y_ndim == 1 else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {**super()._more_tags(), "multioutput": True}


def _outputs_are_logits(model: Model) -> bool:
    """Whether the module's outputs are logits, as its compiled loss reads them."""
    loss = model.loss
    from_logits = getattr(loss, "from_logits", None)
    if from_logits is not None:
        return bool(from_logits)
    inner = getattr(loss, "loss", None)  # a torch loss module
    return isinstance(inner, (torch.nn.CrossEntropyLoss, torch.nn.BCEWithLogitsLoss))
