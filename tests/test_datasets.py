"""epochwise.datasets: IDX reading, the verified download cache, load_data(path=...), bundled data, splits.

Downloads are served from a local http.server on 127.0.0.1 with generated IDX files; no test touches
the internet. The mirror list and checksums are monkeypatched per test.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import sys
import threading

import numpy as np
import pytest
import torch

import epochwise.datasets as ds
from epochwise.datasets import _download, fashion_mnist, mnist
from epochwise.datasets._idx import FILES


# --- IDX files built by hand (independent of the reader under test) -----------------------------------
def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + big_endian.tobytes()


def fake_dataset(seed: int = 0, n_train: int = 12, n_test: int = 5):
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_train, dtype=np.uint8),
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )
    files = {name: gzip.compress(idx_bytes(a), mtime=0) for name, a in zip(FILES, arrays)}
    return arrays, files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_loaded(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for got, want in zip((x_train, y_train, x_test, y_test), arrays):
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


# --- a local mirror -----------------------------------------------------------------------------------
class Mirror:
    """Serves ``files`` under ``/<prefix>/``; can truncate, ignore Range, and records every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.truncate_next: dict[str, int] = {}  # name -> how many more responses to cut in half
        self.ignore_range = False
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                mirror.requests.append((name, rng))
                if name not in mirror.files:
                    self.send_error(404)
                    return
                data = mirror.files[name]
                start = 0
                if rng and not mirror.ignore_range:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mirror.truncate_next.get(name, 0) > 0:
                    mirror.truncate_next[name] -= 1
                    body = body[: len(body) // 2]  # promise everything, send half, close
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("EPOCHWISE_DATA_DIR", str(root))
    return root


def serve(monkeypatch, module, mirrors, files):
    monkeypatch.setattr(module, "MIRRORS", [m.url for m in mirrors])
    monkeypatch.setattr(module, "SHA256", {name: sha(data) for name, data in files.items()})


def closed_port_url() -> str:
    m = Mirror()
    url = m.url
    m.close()
    return url


# --- read_idx -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "array, code",
    [
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.array([-3, 0, 70000, 2**31 - 1], dtype=np.int32), 0x0C),
        (np.array([[1.5, -2.25], [1e300, 0.0]], dtype=np.float64), 0x0E),
        (np.array([-1, 1], dtype=np.int16), 0x0B),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_decodes_big_endian_arrays(tmp_path, array, code, compress):
    raw = idx_bytes(array, code)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)  # detected by content, not by name
    got = ds.read_idx(path)
    assert got.shape == array.shape and got.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(got, array)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    raw = idx_bytes(np.arange(100, dtype=np.uint8).reshape(10, 10))
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="truncated or damaged"):
        ds.read_idx(tmp_path / "short")
    (tmp_path / "header-only").write_bytes(raw[:6])
    with pytest.raises(ValueError, match="truncated or damaged"):
        ds.read_idx(tmp_path / "header-only")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="not an IDX file"):
        ds.read_idx(tmp_path / "png")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(ValueError, match="damaged gzip"):
        ds.read_idx(tmp_path / "bad.gz")


# --- download, cache hit, checksum, truncation, resume ---------------------------------------------------
def test_download_verifies_and_caches_then_hits_the_cache(mirror, cache, monkeypatch, capsys):
    arrays, files = fake_dataset()
    mirror.files = files
    serve(monkeypatch, mnist, [mirror], files)
    assert_loaded(mnist.load_data(), arrays)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(FILES)  # no .part left behind
    assert [name for name, _ in mirror.requests] == list(FILES)
    assert "Downloading " + mirror.url in capsys.readouterr().err

    assert_loaded(mnist.load_data(), arrays)  # cache hit: nothing requested
    assert_loaded(mnist.load_data(download=False, verbose=False), arrays)
    assert len(mirror.requests) == 4


def test_checksum_mismatch_falls_through_to_the_next_mirror(cache, monkeypatch):
    arrays, files = fake_dataset()
    bad, good = Mirror(), Mirror()
    try:
        bad.files = {name: data[:-1] + bytes([data[-1] ^ 1]) for name, data in files.items()}
        good.files = files
        serve(monkeypatch, mnist, [bad, good], files)
        assert_loaded(mnist.load_data(verbose=False), arrays)
        assert len(bad.requests) == 4 and len(good.requests) == 4
    finally:
        bad.close()
        good.close()


def test_checksum_mismatch_everywhere_is_an_error_and_caches_nothing(mirror, cache, monkeypatch):
    _, files = fake_dataset()
    mirror.files = files
    serve(monkeypatch, mnist, [mirror], files)
    monkeypatch.setitem(mnist.SHA256, FILES[0], "0" * 64)
    with pytest.raises(ds.DownloadError) as info:
        mnist.load_data(verbose=False)
    message = str(info.value)
    assert "does not match the expected " + "0" * 64 in message
    assert str(cache / "mnist") in message and all(name in message for name in FILES)
    assert list((cache / "mnist").iterdir()) == []  # neither the file nor a .part


def test_truncated_transfer_is_resumed_with_range(mirror, cache, monkeypatch):
    arrays, files = fake_dataset()
    mirror.files = files
    mirror.truncate_next = {FILES[0]: 1}
    serve(monkeypatch, mnist, [mirror], files)
    assert_loaded(mnist.load_data(verbose=False), arrays)
    first = [rng for name, rng in mirror.requests if name == FILES[0]]
    assert first == [None, f"bytes={len(files[FILES[0]]) // 2}-"]  # the second request asks for the rest


def test_a_mirror_that_always_truncates_is_reported(mirror, cache, monkeypatch):
    _, files = fake_dataset()
    mirror.files = files
    mirror.truncate_next = {FILES[0]: 99}
    serve(monkeypatch, mnist, [mirror], files)
    with pytest.raises(ds.DownloadError, match="cut short 3 times"):
        mnist.load_data(verbose=False)
    part = cache / "mnist" / (FILES[0] + ".part")
    assert part.exists() and not (cache / "mnist" / FILES[0]).exists()  # kept for a later resume


def test_interrupted_download_resumes_from_the_part_file(mirror, cache, monkeypatch):
    arrays, files = fake_dataset()
    mirror.files = files
    serve(monkeypatch, mnist, [mirror], files)
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    (folder / (FILES[0] + ".part")).write_bytes(files[FILES[0]][:100])  # what a killed run left
    assert_loaded(mnist.load_data(verbose=False), arrays)
    assert mirror.requests[0] == (FILES[0], "bytes=100-")
    assert not (folder / (FILES[0] + ".part")).exists()


def test_resume_restarts_when_the_server_ignores_range(mirror, cache, monkeypatch):
    arrays, files = fake_dataset()
    mirror.files, mirror.ignore_range = files, True
    serve(monkeypatch, mnist, [mirror], files)
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    (folder / (FILES[0] + ".part")).write_bytes(files[FILES[0]][:100])
    assert_loaded(mnist.load_data(verbose=False), arrays)  # a 200 reply replaces the .part, not appends
    assert [name for name, _ in mirror.requests].count(FILES[0]) == 1


def test_a_stale_part_file_is_discarded_after_a_mismatch(mirror, cache, monkeypatch):
    arrays, files = fake_dataset()
    mirror.files = files
    serve(monkeypatch, mnist, [mirror], files)
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    (folder / (FILES[0] + ".part")).write_bytes(b"x" * 100)  # from another download
    assert_loaded(mnist.load_data(verbose=False), arrays)
    assert [rng for name, rng in mirror.requests if name == FILES[0]] == ["bytes=100-", None]


def test_a_damaged_cached_file_is_downloaded_again(mirror, cache, monkeypatch):
    arrays, files = fake_dataset()
    mirror.files = files
    serve(monkeypatch, mnist, [mirror], files)
    mnist.load_data(verbose=False)
    (cache / "mnist" / FILES[2]).write_bytes(b"garbage")
    assert_loaded(mnist.load_data(verbose=False), arrays)
    assert [name for name, _ in mirror.requests] == [*FILES, FILES[2]]


def test_offline_with_nothing_cached_says_which_files_to_put_where(cache, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", [closed_port_url()])
    with pytest.raises(ds.DownloadError) as info:
        mnist.load_data(verbose=False)
    message = str(info.value)
    assert (
        str(cache / "mnist") in message and "EPOCHWISE_DATA_DIR" in message and "load_data(path=" in message
    )
    assert all(name in message for name in FILES)
    with pytest.raises(FileNotFoundError, match="not in the cache"):
        mnist.load_data(download=False)


def test_fashion_mnist_uses_its_own_folder(mirror, cache, monkeypatch):
    arrays, files = fake_dataset(seed=3)
    mirror.files = files
    serve(monkeypatch, fashion_mnist, [mirror], files)
    assert_loaded(fashion_mnist.load_data(verbose=False), arrays)
    assert sorted(p.name for p in (cache / "fashion_mnist").iterdir()) == sorted(FILES)
    assert len(fashion_mnist.CLASS_NAMES) == 10 and fashion_mnist.CLASS_NAMES[9] == "Ankle boot"


def test_cache_dir_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("EPOCHWISE_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ds.cache_dir() == tmp_path / ".cache" / "epochwise"
    monkeypatch.setenv("EPOCHWISE_DATA_DIR", "~/data")
    assert ds.cache_dir() == tmp_path / "data"


@pytest.mark.parametrize("module", [mnist, fashion_mnist])
def test_published_checksums_cover_the_four_files(module):
    assert set(module.SHA256) == set(FILES)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in module.SHA256.values())
    assert len(set(module.SHA256.values())) == 4
    assert all(url.startswith(("https://", "http://")) and url.endswith("/") for url in module.MIRRORS)


def test_fetch_error_names_every_mirror(tmp_path):
    urls = [closed_port_url(), closed_port_url()]
    with pytest.raises(ds.DownloadError) as info:
        _download.fetch(
            "f.gz", sha256="0" * 64, mirrors=urls, folder=tmp_path, verbose=False, offline_hint="HINT"
        )
    message = str(info.value)
    assert all(url + "f.gz" in message for url in urls) and message.endswith("HINT")


# --- load_data(path=...) ------------------------------------------------------------------------------
def test_load_data_from_a_keras_npz(tmp_path):
    arrays, _ = fake_dataset()
    np.savez(tmp_path / "mnist.npz", **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays)))
    assert_loaded(mnist.load_data(path=tmp_path / "mnist.npz"), arrays)
    np.savez(tmp_path / "other.npz", images=arrays[0])
    with pytest.raises(ValueError, match=r"missing \['x_train', 'y_train', 'x_test', 'y_test'\]"):
        mnist.load_data(path=str(tmp_path / "other.npz"))


def test_load_data_from_a_folder_of_idx_files(tmp_path):
    arrays, files = fake_dataset()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert_loaded(fashion_mnist.load_data(path=tmp_path), arrays)

    plain = tmp_path / "kaggle"
    plain.mkdir()
    for name, array in zip(FILES, arrays):  # uncompressed, with Kaggle's "train-images.idx3-ubyte" names
        (plain / name.removesuffix(".gz").replace("-idx", ".idx")).write_bytes(idx_bytes(array))
    assert_loaded(mnist.load_data(path=plain), arrays)

    (tmp_path / FILES[3]).unlink()
    with pytest.raises(FileNotFoundError, match=f"missing {FILES[3]}"):
        mnist.load_data(path=tmp_path)


def test_load_data_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mnist.load_data(path=tmp_path / "nope")
    (tmp_path / "mnist.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match="not a .npz"):
        mnist.load_data(path=tmp_path / "mnist.pkl")
    arrays, _ = fake_dataset()
    np.savez(tmp_path / "flat.npz", x_train=arrays[0].reshape(12, -1), y_train=arrays[1], x_test=arrays[2],
             y_test=arrays[3])  # fmt: skip
    with pytest.raises(ValueError, match=r"expected \(n, rows, cols\) images"):
        mnist.load_data(path=tmp_path / "flat.npz")


# --- bundled data -------------------------------------------------------------------------------------
def test_digits_match_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets").load_digits()
    x, y = ds.load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, sk.images)
    np.testing.assert_array_equal(y, sk.target)
    flat, _ = ds.load_digits(flatten=True)
    assert flat.shape == (1797, 64)
    np.testing.assert_array_equal(flat, x.reshape(1797, 64))


def test_breast_cancer_and_diabetes():
    pytest.importorskip("sklearn")
    x, y = ds.load_breast_cancer()
    assert x.shape == (569, 30) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [212, 357]  # malignant, benign
    x, y = ds.load_diabetes()
    assert x.shape == (442, 10) and y.shape == (442,) and x.dtype == y.dtype == np.float32
    assert (y.min(), y.max()) == (25.0, 346.0)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `from sklearn import ...` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'epochwise\[demo\]'"):
        ds.load_digits()


# --- train_test_split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("test_size", [0.25, 0.2, 0.33, 0.5, 7, 1])
def test_split_sizes_match_scikit_learn(test_size):
    model_selection = pytest.importorskip("sklearn.model_selection")
    x = np.arange(103)
    ours = ds.train_test_split(x, test_size=test_size, seed=0)
    theirs = model_selection.train_test_split(x, test_size=test_size, random_state=0)
    assert [len(p) for p in ours] == [len(p) for p in theirs]


def test_split_keeps_rows_together_and_covers_everything():
    x = np.arange(50) * 10
    y = torch.arange(50)
    names = [f"s{i}" for i in range(50)]
    x_tr, x_te, y_tr, y_te, n_tr, n_te = ds.train_test_split(x, y, names, test_size=0.2, seed=1)
    assert isinstance(y_tr, torch.Tensor) and isinstance(n_tr, list)
    np.testing.assert_array_equal(x_tr, y_tr.numpy() * 10)
    np.testing.assert_array_equal(x_te, y_te.numpy() * 10)
    assert n_te == [f"s{i}" for i in y_te.tolist()]
    assert sorted(np.concatenate([x_tr, x_te]).tolist()) == x.tolist()
    again = ds.train_test_split(x, test_size=0.2, seed=1)
    np.testing.assert_array_equal(again[1], x_te)
    assert not np.array_equal(ds.train_test_split(x, test_size=0.2, seed=2)[1], x_te)


def test_split_without_shuffle_takes_the_tail():
    x = np.arange(10)
    train, test = ds.train_test_split(x, test_size=0.3, shuffle=False)
    assert train.tolist() == list(range(7)) and test.tolist() == [7, 8, 9]


def test_split_pandas():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": range(20)})
    train, test = ds.train_test_split(frame, test_size=5, seed=0)
    assert len(test) == 5 and set(train["a"]) | set(test["a"]) == set(range(20))


def test_stratified_split_keeps_class_proportions():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    x = np.arange(100)
    x_tr, x_te, y_tr, y_te = ds.train_test_split(x, y, test_size=0.2, seed=0, stratify=y)
    assert np.bincount(y_te).tolist() == [10, 6, 4]  # exact shares of 20
    np.testing.assert_array_equal(y[x_te], y_te)
    # shares 7.5 / 4.5 / 3 of 15: one of the two .5 classes gets the extra sample, the total is exact
    _, y_te = ds.train_test_split(y, test_size=15, seed=0, stratify=y)
    counts = np.bincount(y_te, minlength=3).tolist()
    assert counts in ([8, 4, 3], [7, 5, 3])
    onehot = np.eye(3)[y]
    _, y_te = ds.train_test_split(y, test_size=0.2, seed=3, stratify=onehot)
    assert np.bincount(y_te).tolist() == [10, 6, 4]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_size": 0.0}, "strictly between 0 and 1"),
        ({"test_size": 1.0}, "strictly between 0 and 1"),
        ({"test_size": 1.5}, "strictly between 0 and 1"),
        ({"test_size": 10}, "both sides need at least one"),
        ({"test_size": True}, "a fraction in"),
        ({"test_size": "20%"}, "a fraction in"),
        ({"stratify": [0] * 9 + [1]}, "single sample"),
        ({"stratify": [0, 1] * 5, "shuffle": False}, "needs shuffle=True"),
        ({"stratify": [0, 1]}, "2 labels for 10 samples"),
    ],
)
def test_split_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ds.train_test_split(np.arange(10), **kwargs)


def test_split_length_mismatch_and_nothing_to_split():
    with pytest.raises(ValueError, match=r"different lengths \[10, 9\]"):
        ds.train_test_split(np.arange(10), np.arange(9))
    with pytest.raises(ValueError, match="at least one array"):
        ds.train_test_split()
    with pytest.raises(TypeError, match="has no length"):
        ds.train_test_split(np.arange(3), 5)


def test_downloaded_labels_train_a_model(mirror, cache, monkeypatch):
    """The arrays load_data returns go straight into fit, as in the Keras tutorial (x / 255.0, uint8 labels)."""
    import torch.nn as nn

    import epochwise as ew

    arrays, files = fake_dataset()
    mirror.files = files
    serve(monkeypatch, mnist, [mirror], files)
    (x_train, y_train), _ = mnist.load_data(verbose=False)
    model = ew.Model(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train / 255.0, y_train, epochs=2, batch_size=4, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
