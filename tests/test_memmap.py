"""Data bigger than memory: memory-mapped arrays are read per batch (docs/large-data.md), and integer
inputs into a float module are a clear error before training (F18)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew
from epochwise.callbacks import Callback
from epochwise.data import arrays as arrays_mod
from epochwise.engine import plan, report

PROC_STATUS = Path("/proc/self/status")


def rss_anon() -> int:
    """Anonymous resident memory of this process, in bytes (Linux)."""
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class AnonSampler(Callback):
    """RssAnon after every training and evaluation batch."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[int] = []

    def on_train_batch_end(self, batch, logs=None):
        self.samples.append(rss_anon())

    def on_test_batch_end(self, batch, logs=None):
        self.samples.append(rss_anon())


def write_npy(path: Path, n: int, features: int, dtype: str = "float32", seed: int = 0) -> np.ndarray:
    """A .npy file written in slices (never whole in memory); returned opened with mmap_mode="r"."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, features))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 2048):
        stop = min(start + 2048, n)
        out[start:stop] = rng.normal(size=(stop - start, features))
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def mlp(features: int, classes: int = 10, hidden: int = 32, seed: int = 0) -> ew.Model:
    torch.manual_seed(seed)
    model = ew.Model(nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes)), device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def assert_same_weights(a: ew.Model, b: ew.Model) -> None:
    wa, wb = a.get_weights(), b.get_weights()
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)


def assert_same_history(a: dict, b: dict, tol: float = 1e-6) -> None:
    """Key by key (pytest.approx takes no dict of lists since pytest 9.1)."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=tol), key


@pytest.mark.skipif(not PROC_STATUS.exists(), reason="RssAnon is read from /proc (Linux)")
def test_fit_on_a_memory_map_does_not_copy_it_and_trains_the_same_weights(tmp_path):
    """A 64 MB memory-mapped x, shuffled, with validation_split: anonymous memory grows far less than the
    file during fit and evaluate, and the weights equal those of the same data in memory."""
    n, features = 20_000, 800
    x = write_npy(tmp_path / "x.npy", n, features)
    y = np.random.default_rng(1).integers(0, 10, n)
    size = x.nbytes
    mapped, sampler = mlp(features, hidden=8), AnonSampler()
    base = rss_anon()
    history = mapped.fit(x, y, batch_size=256, epochs=1, validation_split=0.2, seed=3, verbose=0,
                         callbacks=[sampler])
    mapped.evaluate(x, y, batch_size=512, verbose=0, callbacks=[sampler])
    growth = max(sampler.samples) - base
    assert growth < 0.4 * size, f"RssAnon grew {growth / 1e6:.1f} MB while fitting a {size / 1e6:.0f} MB memory map"

    in_memory = mlp(features, hidden=8)
    reference = in_memory.fit(np.array(x), y, batch_size=256, epochs=1, validation_split=0.2, seed=3, verbose=0)
    assert_same_weights(mapped, in_memory)
    assert_same_history(history.history, reference.history)

    # the control: a read-only array in memory is still copied whole (the measurement sees a copy)
    frozen = np.array(x)
    frozen.flags.writeable = False
    control, sampler = mlp(features, hidden=8), AnonSampler()
    base = rss_anon()
    control.fit(frozen, y, batch_size=256, epochs=1, steps_per_epoch=2, verbose=0, callbacks=[sampler])
    assert max(sampler.samples) - base > 0.9 * size


@pytest.mark.parametrize("shuffle", [True, False, "batch"])
def test_float64_memory_map_converts_per_batch_and_equals_float32_in_memory(tmp_path, shuffle):  # F18
    x64 = write_npy(tmp_path / "x64.npy", 600, 12, dtype="float64")
    y = np.random.default_rng(2).integers(0, 10, 600)
    mapped, in_memory = mlp(12), mlp(12)
    h1 = mapped.fit(x64, y, batch_size=64, epochs=2, shuffle=shuffle, validation_split=0.25, seed=5, verbose=0)
    h2 = in_memory.fit(np.asarray(x64, dtype="float32"), y, batch_size=64, epochs=2, shuffle=shuffle,
                       validation_split=0.25, seed=5, verbose=0)
    assert_same_weights(mapped, in_memory)
    assert_same_history(h1.history, h2.history)
    batch = next(iter(arrays_mod.ArrayBatches(arrays_mod.ArrayData(x64, y), 64, shuffle=shuffle,
                                              generator=torch.Generator().manual_seed(0))))
    assert batch[0].dtype == torch.float32 and batch[0].shape == (64, 12)


def test_evaluate_and_predict_on_a_memory_map_equal_in_memory(tmp_path):  # E1, P2
    x = write_npy(tmp_path / "x.npy", 500, 8)
    y_path = tmp_path / "y.npy"
    np.save(y_path, np.random.default_rng(3).integers(0, 10, 500))
    y = np.load(y_path, mmap_mode="r")  # memory-mapped targets too
    model = mlp(8)
    model.fit(np.array(x), np.array(y), epochs=1, verbose=0)
    mapped = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    reference = model.evaluate(np.array(x), np.array(y), batch_size=64, verbose=0, return_dict=True)
    assert mapped == pytest.approx(reference, abs=1e-6)
    np.testing.assert_array_equal(model.predict(x, batch_size=64, verbose=0),
                                  model.predict(np.array(x), batch_size=64, verbose=0))
    expected = torch.softmax(model.module(torch.from_numpy(np.array(x))), -1).argmax(-1).numpy()
    assert reference["accuracy"] == pytest.approx(float(np.mean(expected == np.array(y))), abs=1e-6)


def test_what_is_read_per_batch(tmp_path):
    """The rule: a memory-mapped ndarray (np.load(mmap_mode=...), np.memmap, a view of one) is read per
    batch; any other array (read-only ones included, and a fancy-indexed copy of a map) is in memory."""
    x = write_npy(tmp_path / "x.npy", 100, 4)
    raw = np.memmap(tmp_path / "raw.bin", dtype="float32", mode="w+", shape=(100, 4))
    frozen = np.ones((100, 4), dtype="float32")
    frozen.flags.writeable = False
    is_mapped = arrays_mod.is_memory_mapped
    assert is_mapped(x) and is_mapped(x[10:]) and is_mapped(raw) and is_mapped(np.asarray(x))
    assert not is_mapped(x[np.arange(5)]) and not is_mapped(frozen) and not is_mapped(np.array(x))
    data = arrays_mod.ArrayData(x, np.zeros(100, dtype="int64"))
    train, tail = data.split_tail(0.2)  # F7: both sides stay views of the file
    assert np.shares_memory(train.x.array, x) and np.shares_memory(tail.x.array, x)


def run_plan_lines(model, x, y, **kwargs) -> list[str]:
    data = plan.prepare_fit(
        model, x=x, y=y, batch_size=None, epochs=1, validation_split=0.0, validation_data=None,
        shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0, steps_per_epoch=None,
        validation_steps=None, validation_batch_size=None, validation_freq=1, seed=0, check_finite=True,
        **kwargs)
    return data.storage


def test_the_run_plan_says_which_data_is_read_per_batch(tmp_path):
    x = write_npy(tmp_path / "x.npy", 100, 4, dtype="float64")
    y = np.zeros(100, dtype="int64")
    lines = run_plan_lines(mlp(4), x, y)
    assert lines == ["x: memory-mapped (3 kB), read per batch, float64 -> float32 per batch"]
    assert run_plan_lines(mlp(4), np.array(x), y) == []
    text = report.run_plan(n_train=100, n_val=None, batch_size=32, steps=4, epochs=1, initial_epoch=0,
                           device="cpu", loss="loss mse", steps_given=False, inputs=lines)
    assert text.splitlines()[1] == "  x: memory-mapped (3 kB), read per batch, float64 -> float32 per batch"


def test_checks_on_a_memory_map_read_it_in_chunks(tmp_path, monkeypatch):  # F18
    """NaN counts and label ranges are checked over every chunk, not the first only."""
    monkeypatch.setattr(arrays_mod, "CHUNK_BYTES", 256)  # 16-row chunks of 4 float32 features
    path = tmp_path / "x.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype="float32", shape=(200, 4))
    x[:] = 1.0
    x[170, 2] = np.nan
    x[199, 0] = np.inf
    x.flush()
    x = np.load(path, mmap_mode="r")
    y = np.zeros(200, dtype="int64")
    with pytest.raises(ValueError, match=r"x contains 2 NaN or inf value\(s\)"):
        mlp(4).fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"the last 40 samples of x used by validation_split contains 2 NaN"):
        mlp(4).fit(x, y, validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"x contains 2 NaN"):
        mlp(4).predict(x, verbose=0)

    clean = write_npy(tmp_path / "clean.npy", 200, 4)
    y_path = tmp_path / "y.npy"
    labels = np.zeros(200, dtype="int64")
    labels[190] = 10  # a class the 10-way output does not have, in the last chunk
    np.save(y_path, labels)
    model = mlp(4)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"^y: .*10"):
        model.fit(clean, np.load(y_path, mmap_mode="r"), verbose=0)
    for k, v in model.get_weights().items():
        assert torch.equal(v, before[k])  # raised before any step


def test_class_weight_with_memory_mapped_labels(tmp_path):  # F10
    x = write_npy(tmp_path / "x.npy", 300, 6)
    y_path = tmp_path / "y.npy"
    np.save(y_path, np.random.default_rng(4).integers(0, 3, 300))
    y = np.load(y_path, mmap_mode="r")
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    a, b = mlp(6, classes=3), mlp(6, classes=3)
    a.fit(x, y, class_weight=weights, validation_split=0.1, seed=1, verbose=0)
    b.fit(np.array(x), np.array(y), class_weight=weights, validation_split=0.1, seed=1, verbose=0)
    assert_same_weights(a, b)


# --- integer inputs into a float module (F18) ----------------------------------------------------------
def pixels(n: int = 16, shape: tuple[int, ...] = (12,)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, *shape)).astype("uint8")


@pytest.mark.parametrize("module, shape", [
    (nn.Sequential(nn.Linear(12, 3)), (12,)),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)), (1, 6, 6)),
], ids=["linear", "conv"])
def test_uint8_x_is_an_error_that_shows_the_conversion(module, shape):
    model = ew.Model(module, device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    x, y = pixels(shape=shape), np.zeros(16, dtype="int64")
    pattern = r'x is uint8, but the module\'s first layer expects float32.*x = x\.astype\("float32"\) / 255'
    with pytest.raises(ValueError, match=pattern) as info:
        model.fit(x, y, verbose=0)
    assert isinstance(info.value.__cause__, RuntimeError)  # torch's own message stays attached
    for k, v in model.get_weights().items():
        assert torch.equal(v, before[k])
    assert model.module.training  # the probe left the module's mode as it was
    with pytest.raises(ValueError, match=pattern):
        model.evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match=pattern):
        model.predict(x, verbose=0)
    # the conversion the message shows trains (nothing is converted silently)
    model.fit(x.astype("float32") / 255, y, epochs=1, verbose=0)


def test_integer_x_into_a_module_that_takes_integers_trains():
    model = ew.Model(nn.Sequential(nn.Embedding(256, 4), nn.Flatten(), nn.Linear(4 * 12, 3)), device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = pixels().astype("int64"), np.zeros(16, dtype="int64")
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_fit_prints_which_inputs_are_read_per_batch(tmp_path, capsys):
    import torch

    import epochwise as ew

    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(40, 4)))  # float64 on disk
    x = np.load(path, mmap_mode="r")
    y = np.random.default_rng(1).integers(0, 3, 40)
    model = ew.Model(torch.nn.Linear(4, 3), device="cpu")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=2)
    plan = capsys.readouterr().out.splitlines()
    assert plan[1].startswith("  x: memory-mapped (") and plan[1].endswith("read per batch, float64 -> float32 per batch")
