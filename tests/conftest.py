"""Shared fixtures: tiny data and modules that train in milliseconds on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew
from epochwise.callbacks import Callback


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def make_classification(n: int = 40, features: int = 4, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = rng.integers(0, classes, size=n).astype("int64")
    return x, y


def make_regression(n: int = 40, features: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    w = np.arange(1, features + 1, dtype="float32")
    y = (x @ w)[:, None].astype("float32")
    return x, y


def classifier(features: int = 4, classes: int = 3, **compile_kwargs) -> ew.Model:
    model = ew.Model(nn.Sequential(nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, classes)), device="cpu")
    kwargs = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    kwargs.update(compile_kwargs)
    model.compile(**kwargs)
    return model


def regressor(features: int = 3, **compile_kwargs) -> ew.Model:
    model = ew.Model(nn.Linear(features, 1), device="cpu")
    kwargs = {"optimizer": ew.optimizers.SGD(learning_rate=0.01), "loss": "mse", "metrics": ["mae"]}
    kwargs.update(compile_kwargs)
    model.compile(**kwargs)
    return model


class Recorder(Callback):
    """Records every hook call as (hook, index, sorted log keys)."""

    def __init__(self, stop_at: tuple[str, int, int] | None = None) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.logs: list[tuple] = []
        self.stop_at = stop_at
        self._epoch = None

    def _rec(self, hook, index, logs):
        assert isinstance(logs, dict)  # G1
        self.calls.append((hook, index) if index is not None else (hook,))
        self.logs.append((hook, index, dict(logs)))
        if self.stop_at and self.stop_at == (hook, self._epoch, index):
            self.model.stop_training = True


def _make_hook(name, indexed):
    if indexed:
        def hook(self, i, logs=None):
            if name == "on_epoch_begin":
                self._epoch = i
            self._rec(name, i, logs)
    else:
        def hook(self, logs=None):
            self._rec(name, None, logs)
    return hook


for _name, _indexed in [
    ("on_train_begin", False), ("on_train_end", False), ("on_epoch_begin", True), ("on_epoch_end", True),
    ("on_train_batch_begin", True), ("on_train_batch_end", True), ("on_test_begin", False), ("on_test_end", False),
    ("on_test_batch_begin", True), ("on_test_batch_end", True), ("on_predict_begin", False),
    ("on_predict_end", False), ("on_predict_batch_begin", True), ("on_predict_batch_end", True),
]:
    setattr(Recorder, _name, _make_hook(_name, _indexed))
