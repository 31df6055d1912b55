"""Real ``Model.fit`` runs whose logs hold values a test chooses.

A hook's logs dict is shared by the callbacks in list order, so :class:`Script`, placed first, replaces
its contents and every later callback sees the chosen values, as a user's own callback could arrange.
``Script`` also sets every weight to the epoch number at each epoch begin. The inputs are zeros, so the
weight gradient is zero, and at the default learning_rate=0 the bias stays put too: saved or restored
weights say which epoch they come from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import epochwise as ew
from epochwise.callbacks import Callback, History

BATCH = 4  # samples per batch


def _replace(logs: dict, values: dict) -> None:
    for key in list(logs):  # reading the keys computes lazy batch logs first
        del logs[key]
    logs.update(values)


class Script(Callback):
    """Feeds chosen logs to the callbacks after it; records the batches run and each epoch's LR.

    ``epoch_logs[i]`` becomes the logs of the i-th epoch this fit runs, ``batch_logs[i][b]`` those of its
    batch ``b``, ``test_logs`` those of ``on_test_end``; None leaves the real logs.
    """

    def __init__(self, epoch_logs=None, batch_logs=None, test_logs=None, mark_weights=True) -> None:
        super().__init__()
        self.epoch_logs, self.batch_logs, self.test_logs = epoch_logs, batch_logs, test_logs
        self.mark_weights = mark_weights
        self.batches: list[tuple[int, int]] = []  # (epoch, batch) that ran
        self.lrs: list[float] = []  # the learning rate of each epoch's first batch
        self._first: int | None = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.batches, self.lrs, self._first = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._first = epoch if self._first is None else self._first
        self._epoch = epoch
        if self.mark_weights:
            self.model.set_weights(
                {k: torch.full_like(v, epoch) for k, v in self.model.get_weights().items()}
            )

    def on_train_batch_begin(self, batch, logs=None):
        self.batches.append((self._epoch, batch))
        if batch == 0:  # every on_epoch_begin has run: the LR this epoch trains with
            self.lrs.append(self.model.optimizer.learning_rate)

    def on_train_batch_end(self, batch, logs=None):
        if self.batch_logs is not None:
            _replace(logs, self.batch_logs[self._epoch - self._first][batch])

    def on_test_end(self, logs=None):
        if self.test_logs is not None:
            _replace(logs, self.test_logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_logs is not None:
            _replace(logs, self.epoch_logs[epoch - self._first])


def scripted_model(metrics=None, learning_rate=0.0, optimizer=None) -> ew.Model:
    """``Linear(2, 1)`` with the mse loss and SGD (learning_rate 0 unless given)."""
    model = ew.Model(nn.Linear(2, 1), device="cpu")
    if optimizer is None:
        optimizer = ew.optimizers.SGD(learning_rate=1.0)
        optimizer.learning_rate = learning_rate  # a rate of 0 can be set, not constructed
    model.compile(optimizer=optimizer, loss="mse", metrics=metrics)
    return model


def zeros(batches: int = 1):
    n = batches * BATCH
    return np.zeros((n, 2), "float32"), np.zeros((n, 1), "float32")


class ReadCount(ew.metrics.Metric):
    """A metric that counts how often its value is read: once per epoch end, and once per batch whose
    logs a callback makes fit compute (a host sync each)."""

    def __init__(self) -> None:
        super().__init__("count", direction="min")
        self.add_state("n", torch.zeros(()), "sum")
        self.reads = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.n = self.n + 1

    def result(self):
        self.reads += 1
        return self.n


@dataclass
class Run:
    model: ew.Model
    history: History
    script: Script

    @property
    def epochs(self) -> list[int]:  # the epochs that ran (0-based)
        return self.history.epoch

    @property
    def lrs(self) -> list[float]:
        return self.script.lrs

    @property
    def batches(self) -> list[tuple[int, int]]:
        return self.script.batches


def scripted_fit(
    callbacks: list,
    epoch_logs: list[dict] | None,
    *,
    model: ew.Model | None = None,
    epochs: int | None = None,
    initial_epoch: int = 0,
    batch_logs: list[list[dict]] | None = None,
    validate: bool = False,
    **fit_kwargs: Any,
) -> Run:
    """``model.fit`` with ``Script`` first; ``epochs`` defaults to one per entry of ``epoch_logs``.

    Each epoch has ``len(batch_logs[0])`` batches (else one); ``validate`` validates on the same zeros,
    so fit announces (``model.expected_log_keys``) and logs the ``val_*`` keys.
    """
    model = scripted_model() if model is None else model
    steps = len(batch_logs[0]) if batch_logs else 1
    assert all(len(b) == steps for b in batch_logs or []), "every epoch has as many batches"
    if epochs is None:
        epochs = initial_epoch + len(epoch_logs)
    x, y = zeros(steps)
    script = Script(epoch_logs, batch_logs)
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        initial_epoch=initial_epoch,
        verbose=0,
        validation_data=(x, y) if validate else None,
        callbacks=[script, *callbacks],
        **fit_kwargs,
    )
    return Run(model, history, script)


def val_losses(values: list[float]) -> list[dict]:
    return [{"loss": 1.0, "val_loss": v} for v in values]


def weight_epoch(model: ew.Model) -> float:
    """Which epoch the model's weights come from (``Script`` set every weight to it)."""
    return float(model.get_weights()["weight"][0, 0])


class Saves(Callback):
    """Placed after a ModelCheckpoint: the files written under ``folder``, in order, read back.

    After every hook it looks for files that are new or changed since its ``on_train_begin`` and records
    ``("save", name, extra)`` for a ``model.save`` checkpoint or ``("save_weights", name, None)`` for
    weights only; ``name`` is relative to ``folder``.
    """

    def __init__(self, folder) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.written: list[tuple[str, str, dict | None]] = []
        self._seen: dict[str, tuple] = {}

    @property
    def paths(self) -> list[str]:
        return [name for _, name, _ in self.written]

    def _files(self) -> dict[str, tuple]:
        found = {}
        for path in sorted(self.folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):  # not an atomic write's temporary file
                stat = path.stat()
                digest = hashlib.sha1(path.read_bytes()).hexdigest()
                found[path.relative_to(self.folder).as_posix()] = (stat.st_ino, stat.st_mtime_ns, digest)
        return found

    def scan(self) -> None:
        for name, signature in self._files().items():
            if self._seen.get(name) != signature:
                self._seen[name] = signature
                self.written.append(_read_back(self.folder / name, name))

    def on_train_begin(self, logs=None):
        self._seen = self._files()

    def on_epoch_begin(self, epoch, logs=None):
        self.scan()

    def on_train_batch_begin(self, batch, logs=None):
        self.scan()

    def on_train_batch_end(self, batch, logs=None):
        self.scan()

    def on_epoch_end(self, epoch, logs=None):
        self.scan()

    def after_train_batch(self, batch):
        self.scan()

    def after_epoch(self, epoch):
        self.scan()

    def on_train_end(self, logs=None):
        self.scan()


def _read_back(path: Path, name: str) -> tuple[str, str, dict | None]:
    fresh = ew.Model(nn.Linear(2, 1), device="cpu")
    if path.suffix == ".safetensors":
        fresh.load_weights(path)
        return ("save_weights", name, None)
    try:
        return ("save", name, fresh.load(path, compile=False))
    except ValueError:  # "holds weights only"
        fresh.load_weights(path)
        return ("save_weights", name, None)
