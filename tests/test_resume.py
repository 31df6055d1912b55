"""Exact resume in one process: crash a run at every batch, run it again, compare bit for bit.

The subprocess SIGKILL suite is tests/test_faults.py; this one covers more configurations quickly.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import epochwise as ew
from epochwise.callbacks import Callback

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 4)).astype("float32")
Y = RNG.integers(0, 3, 40)


class Crash(Callback):
    """Raises after the n-th training batch of this fit (a stand-in for a kill)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("crash")


def build(**compile_kwargs):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 12), nn.Dropout(0.3), nn.ReLU(), nn.Linear(12, 3))
    model = ew.Model(net, device="cpu", seed=1)
    kwargs = {"optimizer": ew.optimizers.Adam(learning_rate=0.02), "loss": "sparse_categorical_crossentropy",
              "metrics": ["accuracy"]}
    kwargs.update(compile_kwargs)
    model.compile(**kwargs)
    return model


def tutorial_scheduler(epoch, lr):  # relative: a replayed on_epoch_begin would decay twice
    return lr if epoch < 1 else lr * math.exp(-0.1)


def run(backup_dir, crash_at=None, data="arrays", csv=None, save_freq=1, **compile_kwargs):
    model = build(**compile_kwargs)
    callbacks = [ew.callbacks.EarlyStopping(patience=10, restore_best_weights=True),
                 ew.callbacks.LearningRateScheduler(tutorial_scheduler),
                 ew.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)]
    if csv:
        callbacks.append(ew.callbacks.CSVLogger(csv))
    if crash_at:
        callbacks.append(Crash(crash_at))
    kwargs = {"epochs": 4, "verbose": 0, "callbacks": callbacks}
    if data == "arrays":
        history = model.fit(X, Y, batch_size=6, validation_split=0.25, **kwargs)
    else:
        gen = torch.Generator().manual_seed(0)
        loader = DataLoader(TensorDataset(torch.from_numpy(X[:30]), torch.from_numpy(Y[:30])), batch_size=6,
                            shuffle=True, generator=gen)
        history = model.fit(loader, validation_data=(X[30:], Y[30:]), **kwargs)
    return model, history


def crash_then_finish(backup_dir, points, **kwargs):
    for at in points:
        with pytest.raises(RuntimeError, match="crash"):
            run(backup_dir, crash_at=at, **kwargs)
    return run(backup_dir, **kwargs)


def assert_identical(a, b):
    (ma, ha), (mb, hb) = a, b
    assert ha.history == hb.history and ha.epoch == hb.epoch
    for (ka, va), (kb, vb) in zip(ma.module.state_dict().items(), mb.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert ma.optimizer.iterations == mb.optimizer.iterations
    assert ma.optimizer.learning_rate == mb.optimizer.learning_rate


@pytest.mark.parametrize("data", ["arrays", "dataloader"])
def test_crash_at_every_batch_resumes_bitwise(tmp_path, data):
    reference = run(tmp_path / "ref", data=data)
    points = range(1, 20, 2) if data == "arrays" else range(2, 20, 4)  # 5 batches per epoch, 4 epochs
    for at in points:
        folder = tmp_path / f"b{at}"
        assert_identical(crash_then_finish(folder, [at], data=data), reference)


def test_many_crashes_in_one_run_with_accumulation_and_bf16(tmp_path):
    kwargs = {"accumulate_steps": 3, "precision": "bf16-mixed"}
    reference = run(tmp_path / "ref", **kwargs)
    assert_identical(crash_then_finish(tmp_path / "b", [2, 3, 1, 4, 2, 5], **kwargs), reference)


def test_csv_log_continues_exactly(tmp_path):
    run(tmp_path / "ref", csv=tmp_path / "ref.csv")
    crash_then_finish(tmp_path / "b", [7, 4], csv=tmp_path / "run.csv")
    assert (tmp_path / "run.csv").read_text() == (tmp_path / "ref.csv").read_text()


def test_epoch_level_backups_replay_the_epoch(tmp_path):
    reference = run(tmp_path / "ref", save_freq="epoch")
    assert_identical(crash_then_finish(tmp_path / "b", [8, 9], save_freq="epoch"), reference)


def test_backup_removed_after_a_finished_run_and_kept_after_a_crash(tmp_path):  # BR5
    with pytest.raises(RuntimeError):
        run(tmp_path / "b", crash_at=3)
    assert (tmp_path / "b" / "backup.pt").exists()
    run(tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_resume_from_a_full_checkpoint(tmp_path):
    model = build()
    model.fit(X, Y, batch_size=6, epochs=2, verbose=0,
              callbacks=[ew.callbacks.ModelCheckpoint(str(tmp_path / "last.pt"), monitor="loss")])
    again = build()
    history = again.fit(X, Y, batch_size=6, epochs=4, verbose=0, resume_from=tmp_path / "last.pt")
    assert history.epoch == [0, 1, 2, 3]  # History so far comes back with the state
    assert again.optimizer.iterations == 4 * 7


def test_resume_from_weights_only_is_a_clear_error(tmp_path):
    model = build()
    model.save_weights(tmp_path / "w.pt")
    with pytest.raises(ValueError, match="holds weights only"):
        build().fit(X, Y, epochs=1, verbose=0, resume_from=tmp_path / "w.pt")


def test_pickled_backup_is_refused(tmp_path):
    import pickle

    folder = tmp_path / "b"
    folder.mkdir()
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "backup.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        run(folder)  # the unreadable backup is skipped with a warning; training starts fresh
    assert not marker.exists()


def test_periodic_backup_failure_warns_and_keeps_training(tmp_path, monkeypatch):
    from epochwise.io import files as _io

    folder = tmp_path / "b"
    with pytest.raises(RuntimeError):
        run(folder, crash_at=2)
    good = (folder / "backup.pt").read_bytes()
    real = _io.torch.save

    def disk_full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_io.torch, "save", disk_full)
    with pytest.warns(UserWarning, match="could not write"):
        with pytest.raises(RuntimeError):
            run(folder, crash_at=2)
    monkeypatch.setattr(_io.torch, "save", real)
    assert (folder / "backup.pt").read_bytes() == good  # the previous backup is intact
    assert not list(folder.glob(".*.tmp"))


def test_explicit_save_failure_raises_and_keeps_the_old_file(tmp_path, monkeypatch):
    from epochwise.io import files as _io

    model = build()
    path = tmp_path / "w.pt"
    model.save_weights(path)
    before = path.read_bytes()
    monkeypatch.setattr(_io.torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(OSError, match="No space"):
        model.save_weights(path)
    assert path.read_bytes() == before


def test_exception_in_a_callback_closes_files(tmp_path):
    logger = ew.callbacks.CSVLogger(tmp_path / "log.csv")
    with pytest.raises(RuntimeError):
        build().fit(X, Y, epochs=3, verbose=0, callbacks=[logger, Crash(3)])
    assert logger._file is None or logger._file.closed
    assert (tmp_path / "log.csv").read_text().count("\n") == 2  # header and the one finished epoch


def test_nan_without_terminate_is_reported(capsys):
    model = build()
    x = X.copy()
    x[13] = np.nan
    model.fit(x, Y, batch_size=4, epochs=2, verbose=2, check_finite=False, shuffle=False)
    assert "the loss became NaN or inf at batch 4 of epoch 1" in capsys.readouterr().out
