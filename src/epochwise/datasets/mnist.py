"""MNIST handwritten digits, as ``keras.datasets.mnist.load_data()`` returns them.

``(x_train, y_train), (x_test, y_test) = mnist.load_data()``: 60,000 training and 10,000 test images,
uint8 arrays of shape ``(n, 28, 28)`` with values 0-255, and uint8 labels 0-9 of shape ``(n,)``.

The four IDX files (11 MB in all) are downloaded once into ``~/.cache/epochwise/mnist`` (or
``$EPOCHWISE_DATA_DIR/mnist``) and checked against the SHA-256 values below, which are those of the
original files published by LeCun, Cortes and Burges (the same bytes on both mirrors).
"""

from __future__ import annotations

import os

import numpy as np

from ._idx import load_dataset

__all__ = ["load_data", "MIRRORS", "SHA256"]

# base URLs, tried in order (yann.lecun.com itself now refuses anonymous downloads)
MIRRORS = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
]
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def load_data(
    path: str | os.PathLike | None = None, *, download: bool = True, verbose: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_test, y_test)``: uint8 images ``(n, 28, 28)`` and uint8 labels ``(n,)``.

    ``path``: a Keras-layout ``.npz`` (arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``, e.g.
    Keras's own ``~/.keras/datasets/mnist.npz``) or a folder holding the four IDX files, compressed or
    not. Without it the files come from the cache, downloaded first if needed; ``download=False``
    raises FileNotFoundError instead of downloading. ``verbose`` prints each download to stderr.

    Example::

        (x_train, y_train), (x_test, y_test) = ew.datasets.mnist.load_data()
        x_train = x_train / 255.0
    """
    return load_dataset("mnist", path, mirrors=MIRRORS, checksums=SHA256, download=download, verbose=verbose)
