"""TerminateOnNaN against TN1-TN3.

Each test runs the real ``Model.fit``; ``Script`` (see ``_scripted.py``) feeds the chosen batch losses and
records which batches ran.
"""

from __future__ import annotations

import math

import pytest
import torch
from _scripted import scripted_fit
from conftest import make_regression, regressor

import epochwise as ew
from epochwise.callbacks import Callback, CallbackList, EarlyStopping, LambdaCallback, TerminateOnNaN

NAN, INF = float("nan"), float("inf")


class _Ends(Callback):
    def __init__(self):
        super().__init__()
        self.epoch_ends, self.train_ends = [], 0

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(epoch)

    def on_train_end(self, logs=None):
        self.train_ends += 1


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_tn2_stops_after_the_bad_batch_but_finishes_the_epoch(bad, capsys):
    ends = _Ends()
    batches = [
        [{"loss": 1.0}] * 4,
        [{"loss": 1.0}, {"loss": bad}, {"loss": bad}, {"loss": bad}],
        [{"loss": 1.0}] * 4,
    ]
    run = scripted_fit(
        [TerminateOnNaN(), ends], [{"loss": 1.0}, {"loss": bad}, {"loss": 1.0}], batch_logs=batches
    )
    assert run.batches[-1] == (1, 1)  # the rest of epoch 1 is skipped (L2)
    assert ends.epoch_ends == [0, 1] and ends.train_ends == 1  # on_epoch_end and on_train_end still run
    assert (
        f"Invalid loss ({bad}) at batch 2 of epoch 2 (both 1-based), terminating training"
        in capsys.readouterr().out
    )


def test_tn2_raise_error_raises_at_once_and_skips_train_end():
    ends = _Ends()
    with pytest.raises(RuntimeError, match=r"Invalid loss \(nan\) at batch 1 of epoch 1"):
        scripted_fit([TerminateOnNaN(raise_error=True), ends], [{"loss": NAN}], batch_logs=[[{"loss": NAN}]])
    assert ends.epoch_ends == [] and ends.train_ends == 0


def test_tn3_ignores_metrics_validation_and_a_missing_loss():
    batches = [[{"mae": NAN}, {"accuracy": INF}, {"loss": 1.0, "mae": NAN}]]
    run = scripted_fit(
        [TerminateOnNaN()], [{"loss": 1.0, "val_loss": NAN}], batch_logs=batches, validate=True
    )
    assert run.batches == [(0, 0), (0, 1), (0, 2)] and not run.model.stop_training
    assert not CallbackList([TerminateOnNaN()]).listens("on_test_batch_end")


def test_summary():
    cb = TerminateOnNaN()
    scripted_fit(
        [cb],
        [{"loss": 1.0}] * 2,
        batch_logs=[[{"loss": 1.0}] * 3, [{"loss": 1.0}, {"loss": 1.0}, {"loss": NAN}]],
    )
    assert cb.summary() == "stopped: loss became nan at batch 3 of epoch 2"
    scripted_fit([cb], [{"loss": 1.0}], batch_logs=[[{"loss": 1.0}]])
    assert cb.summary() is None  # reset for the next fit


def test_real_fit_divergence_stops_and_early_stopping_restores():  # TN2 + ES6
    x, y = make_regression(n=40)
    model = regressor(optimizer=ew.optimizers.SGD(learning_rate=2.0))  # diverges to inf in a few epochs
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    stop = EarlyStopping(monitor="loss", patience=100, restore_best_weights=True)
    nan = TerminateOnNaN()
    history = model.fit(x, y, epochs=30, batch_size=10, verbose=0, callbacks=[nan, keep, stop])
    losses = history.history["loss"]
    assert len(losses) < 30 and not math.isfinite(losses[-1])  # stopped, and the last epoch was logged
    assert nan.summary().startswith(f"stopped: loss became {losses[-1]} at batch ")
    assert nan.summary().endswith(f"of epoch {len(losses)}")
    best = losses.index(min(losses))
    for k, v in model.get_weights().items():
        torch.testing.assert_close(v, snapshots[best][k], rtol=0, atol=0)
