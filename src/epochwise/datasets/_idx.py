"""IDX files (the MNIST format) and the ``load_data`` shared by ``mnist`` and ``fashion_mnist``.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order, big-endian. The ``.gz`` files the
mirrors serve are the same bytes, gzip-compressed. ``load_dataset`` returns Keras's layout:
``(x_train, y_train), (x_test, y_test)`` with uint8 images ``(n, 28, 28)`` and uint8 labels ``(n,)``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._download import cache_dir, fetch

__all__ = ["FILES", "read_idx", "load_dataset"]

# the four files of an MNIST-style data set, in Keras's order: x_train, y_train, x_test, y_test
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file, gzip-compressed or not (decided by the content, not the name).

    Raises ValueError for a file that is not IDX or is shorter or longer than its header says.
    Example: ``read_idx("t10k-labels-idx1-ubyte.gz").shape`` is ``(10000,)``.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(
                f"{os.fspath(path)!r} is a damaged gzip file ({err}); delete it and load again"
            ) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise ValueError(
            f"{os.fspath(path)!r} is not an IDX file (it should start with two zero bytes, a type code "
            f"and the number of dimensions; it starts with {raw[:4].hex()})"
        )
    dtype, ndim = np.dtype(_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4")) if len(raw) >= header else None
    expected = None if shape is None else header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected is None or len(raw) != expected:
        raise ValueError(
            f"{os.fspath(path)!r} holds {len(raw):,} bytes but its header describes "
            f"{'more' if expected is None else f'{expected:,}'}: the file is truncated or damaged; "
            "delete it and load again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_in_folder(folder: Path) -> list[Path]:
    """The four files in ``folder``: ``name.gz``, ``name`` or Kaggle's ``train-images.idx3-ubyte`` spelling."""
    found, missing = [], []
    for name in FILES:
        stem = name[: -len(".gz")]
        dotted = stem.replace("-idx", ".idx")
        candidates = [folder / n for n in (name, stem, dotted, dotted + ".gz")]
        hit = next((c for c in candidates if c.is_file()), None)
        (found if hit is not None else missing).append(hit if hit is not None else name)
    if missing:
        raise FileNotFoundError(
            f"{folder} is missing {', '.join(map(str, missing))}. It needs the four files "
            f"{', '.join(FILES)} (gzip-compressed or not)."
        )
    return found


def _from_npz(path: Path) -> tuple[np.ndarray, ...]:
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in _NPZ_KEYS if k not in data.files]
        if missing:
            raise ValueError(
                f"{path} has the arrays {sorted(data.files)} but Keras's layout needs {list(_NPZ_KEYS)} "
                f"(missing {missing}); save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
            )
        return tuple(data[k] for k in _NPZ_KEYS)


def _checked(arrays: Sequence[np.ndarray], source: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    x_train, y_train, x_test, y_test = arrays
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{source}: the {split} images have shape {x.shape} and the labels {y.shape}; expected "
                "(n, rows, cols) images and (n,) labels with the same n"
            )
    return (x_train, y_train), (x_test, y_test)


def load_dataset(
    name: str,
    path: str | os.PathLike | None,
    *,
    mirrors: Sequence[str],
    checksums: Mapping[str, str],
    download: bool,
    verbose: bool,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``load_data`` for an MNIST-style data set: from ``path`` (a ``.npz`` or a folder) or the cache.

    Without ``path`` the four files are looked up in ``cache_dir() / name`` and downloaded there when
    missing (unless ``download=False``); the error says which files to put where when that fails.
    """
    if path is not None:
        path = Path(path).expanduser()
        if path.is_dir():
            return _checked([read_idx(p) for p in _find_in_folder(path)], str(path))
        if path.is_file() and path.suffix == ".npz":
            return _checked(_from_npz(path), str(path))
        if path.is_file():
            raise ValueError(
                f"path={os.fspath(path)!r} is a file but not a .npz; pass a Keras-layout .npz file or a folder "
                f"holding {', '.join(FILES)}"
            )
        raise FileNotFoundError(
            f"path={os.fspath(path)!r} does not exist; pass a Keras-layout .npz file or a folder holding "
            f"{', '.join(FILES)}"
        )
    folder = cache_dir() / name
    hint = (
        f"To load {name} without a network, put the four files {', '.join(FILES)} into {folder} "
        f"(or set EPOCHWISE_DATA_DIR to a folder whose '{name}' subfolder holds them), or call "
        f"load_data(path=...) with a Keras-layout {name}.npz or a folder holding them."
    )
    if not download:
        missing = [f for f in FILES if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{name} is not in the cache (missing {', '.join(missing)}). {hint}")
    files = [
        fetch(
            filename,
            sha256=checksums[filename],
            mirrors=mirrors if download else (),
            folder=folder,
            verbose=verbose,
            offline_hint=hint,
        )
        for filename in FILES
    ]
    return _checked([read_idx(p) for p in files], str(folder))
