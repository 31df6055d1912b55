"""Fashion-MNIST (Zalando's clothing images), as ``keras.datasets.fashion_mnist.load_data()`` returns it.

``(x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()``: 60,000 training and 10,000 test
images, uint8 ``(n, 28, 28)``, with uint8 labels 0-9 whose names are ``CLASS_NAMES[label]``.

The four IDX files (30 MB in all) are downloaded once into ``~/.cache/epochwise/fashion_mnist`` (or
``$EPOCHWISE_DATA_DIR/fashion_mnist``) and checked against the SHA-256 values below, those of the
files in Zalando Research's repository (whose published MD5 sums they agree with).
"""

from __future__ import annotations

import os

import numpy as np

from ._idx import load_dataset

__all__ = ["load_data", "CLASS_NAMES", "MIRRORS", "SHA256"]

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# base URLs, tried in order; the last is the project's own (plain http, the checksum guards the content)
MIRRORS = [
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
]
SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}


def load_data(
    path: str | os.PathLike | None = None, *, download: bool = True, verbose: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_test, y_test)``: uint8 images ``(n, 28, 28)`` and uint8 labels ``(n,)``.

    ``path``: a Keras-layout ``.npz`` (arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``) or a
    folder holding the four IDX files, compressed or not. Without it the files come from the cache,
    downloaded first if needed; ``download=False`` raises FileNotFoundError instead of downloading.

    Example::

        (x_train, y_train), _ = ew.datasets.fashion_mnist.load_data()
        print(ew.datasets.fashion_mnist.CLASS_NAMES[y_train[0]])  # Ankle boot
    """
    return load_dataset(
        "fashion_mnist", path, mirrors=MIRRORS, checksums=SHA256, download=download, verbose=verbose
    )
