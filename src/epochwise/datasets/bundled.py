"""Small data sets that work offline (they ship with scikit-learn), and a ``train_test_split``.

- :func:`load_digits`: 1,797 handwritten digits, 8x8 images, 10 classes (the offline stand-in for MNIST);
- :func:`load_breast_cancer`: 569 tumours, 30 features, binary labels (1 = benign);
- :func:`load_diabetes`: 442 patients, 10 features, a regression target (disease progression).

Each returns ``(x, y)`` as NumPy arrays ready for ``fit``: float32 features, int64 class labels or a
float32 target. scikit-learn is an optional dependency: ``pip install 'epochwise[demo]'``.

Example::

    x, y = ew.datasets.load_digits()
    x_train, x_test, y_train, y_test = ew.datasets.train_test_split(x, y, test_size=0.2, seed=0, stratify=y)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["load_digits", "load_breast_cancer", "load_diabetes", "train_test_split"]


def _sklearn_datasets() -> Any:
    try:
        from sklearn import datasets
    except ImportError as err:
        raise ImportError(
            "the bundled data sets (digits, breast_cancer, diabetes) come with scikit-learn, which is not "
            "installed: pip install 'epochwise[demo]' (or pip install scikit-learn)"
        ) from err
    return datasets


def load_digits(*, flatten: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """1,797 handwritten digits: x float32 ``(n, 8, 8)`` (``(n, 64)`` with ``flatten``), values 0-16; y int64 0-9.

    Example: ``x, y = load_digits(); x = x / 16.0``
    """
    bunch = _sklearn_datasets().load_digits()
    x = (bunch.data if flatten else bunch.images).astype(np.float32)
    return x, bunch.target.astype(np.int64)


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """569 breast tumours: x float32 ``(n, 30)`` (unscaled measurements), y int64, 1 = benign, 0 = malignant.

    Example: ``x, y = load_breast_cancer(); x = (x - x.mean(0)) / x.std(0)``
    """
    bunch = _sklearn_datasets().load_breast_cancer()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """442 diabetes patients: x float32 ``(n, 10)`` (already centred and scaled), y float32 ``(n,)``, 25-346.

    Example: ``x, y = load_diabetes(); model.compile(optimizer="adam", loss="mse", metrics=["mae"])``
    """
    bunch = _sklearn_datasets().load_diabetes()
    return bunch.data.astype(np.float32), bunch.target.astype(np.float32)


def _length(a: Any, position: int) -> int:
    try:
        return len(a)
    except TypeError:
        raise TypeError(
            f"train_test_split: argument {position} ({type(a).__name__}) has no length; pass arrays, tensors, "
            "pandas objects or lists"
        ) from None


def _take(a: Any, idx: np.ndarray) -> Any:
    if hasattr(a, "iloc"):  # pandas
        return a.iloc[idx]
    if type(a).__module__.startswith("torch"):
        import torch

        return a[torch.as_tensor(idx, dtype=torch.long, device=a.device)]
    if isinstance(a, (list, tuple)):
        return [a[i] for i in idx]
    return np.asarray(a)[idx]


def _test_count(test_size: Any, n: int) -> int:
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise ValueError(f"test_size must be a fraction in (0, 1) or a sample count, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    elif 0 < test_size < 1:
        n_test = math.ceil(test_size * n)  # scikit-learn's rounding: the test side gets the ceiling
    else:
        raise ValueError(
            f"test_size={test_size!r}: a float must lie strictly between 0 and 1 (e.g. 0.2), an int counts samples"
        )
    if not 0 < n_test < n:
        raise ValueError(
            f"test_size={test_size!r} gives {n_test} test and {n - n_test} training samples out of {n}; "
            "both sides need at least one"
        )
    return n_test


def _stratified_test_indices(labels: np.ndarray, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """Each class gets its share of ``n_test`` (largest remainders break ties, so the total is exact)."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        rare = classes[counts < 2].tolist()
        raise ValueError(
            f"stratify: the classes {rare} have a single sample, which cannot be on both sides; "
            "merge rare classes or split without stratify"
        )
    share = counts * n_test / len(labels)
    take = np.floor(share).astype(int)
    remainder_order = np.lexsort((rng.random(len(classes)), -(share - take)))  # random among equal remainders
    take[remainder_order[: n_test - take.sum()]] += 1
    picked = [rng.permutation(np.flatnonzero(inverse == c))[: take[c]] for c in range(len(classes))]
    return np.concatenate(picked)


def train_test_split(
    *arrays: Any,
    test_size: float | int = 0.25,
    shuffle: bool = True,
    seed: int | None = None,
    stratify: Any = None,
) -> list[Any]:
    """Split arrays into train and test parts, in scikit-learn's order: ``a_train, a_test, b_train, b_test, ...``.

    ``test_size``: a fraction (the test side gets ``ceil(test_size * n)`` samples, as in scikit-learn)
    or a sample count. ``shuffle=False`` keeps the order and puts the last rows in the test part (like
    ``validation_split``); otherwise the rows are drawn at random with ``seed``. ``stratify``: labels
    whose class proportions both parts keep (the tutorial's advice to draw a representative validation
    set yourself). Works on NumPy arrays, torch tensors (indexed on their device), pandas objects and lists.

    Example::

        x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=5000, seed=1234)
    """
    if not arrays:
        raise ValueError(
            "train_test_split needs at least one array, e.g. train_test_split(x, y, test_size=0.2)"
        )
    lengths = [_length(a, i) for i, a in enumerate(arrays)]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"train_test_split: the arrays have different lengths {lengths}; every array needs one row per sample"
        )
    n = lengths[0]
    n_test = _test_count(test_size, n)
    rng = np.random.default_rng(seed)
    if stratify is not None:
        if not shuffle:
            raise ValueError("stratify needs shuffle=True: a stratified split draws rows at random")
        labels = np.asarray(stratify.cpu() if hasattr(stratify, "cpu") else stratify)
        if labels.ndim == 2 and labels.shape[1] > 1:
            labels = labels.argmax(axis=1)  # one-hot labels
        labels = labels.reshape(len(labels), -1)[:, 0] if labels.ndim > 1 else labels
        if len(labels) != n:
            raise ValueError(f"stratify has {len(labels)} labels for {n} samples; pass one label per sample")
        test_idx = rng.permutation(_stratified_test_indices(labels, n_test, rng))
        mask = np.ones(n, dtype=bool)
        mask[test_idx] = False
        train_idx = rng.permutation(np.flatnonzero(mask))
    elif shuffle:
        order = rng.permutation(n)
        train_idx, test_idx = order[: n - n_test], order[n - n_test :]
    else:
        train_idx, test_idx = np.arange(n - n_test), np.arange(n - n_test, n)
    return [part for a in arrays for part in (_take(a, train_idx), _take(a, test_idx))]
