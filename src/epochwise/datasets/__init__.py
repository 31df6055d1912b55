"""Data sets with Keras's ``load_data()`` layout, and small bundled ones that work offline.

- ``mnist.load_data()`` and ``fashion_mnist.load_data()``: ``(x_train, y_train), (x_test, y_test)``,
  downloaded once (SHA-256 verified) into ``~/.cache/epochwise`` or ``$EPOCHWISE_DATA_DIR``, or read
  from a Keras ``.npz`` / a folder of IDX files with ``load_data(path=...)``;
- ``load_digits()``, ``load_breast_cancer()``, ``load_diabetes()``: ``(x, y)`` from scikit-learn's
  bundled copies (``pip install 'epochwise[demo]'``);
- ``train_test_split(x, y, test_size=0.2, seed=0, stratify=y)``.

Example::

    import epochwise.datasets as ds
    (x_train, y_train), (x_test, y_test) = ds.mnist.load_data()
    x, y = ds.load_digits()
"""

from . import fashion_mnist, mnist
from ._download import DownloadError, cache_dir
from ._idx import read_idx
from .bundled import load_breast_cancer, load_diabetes, load_digits, train_test_split

__all__ = [
    "DownloadError",
    "cache_dir",
    "fashion_mnist",
    "load_breast_cancer",
    "load_diabetes",
    "load_digits",
    "mnist",
    "read_idx",
    "train_test_split",
]
