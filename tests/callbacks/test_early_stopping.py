"""EarlyStopping against the worked examples of rules ES1-ES8 (docs/behaviour.md) and our stances.

Each test runs the real ``Model.fit``; ``Script`` (see ``_scripted.py``) feeds the chosen monitor values and
marks each epoch's weights with the epoch number, so a restore says which epoch it brought back.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from _scripted import scripted_fit, scripted_model, val_losses, weight_epoch
from conftest import make_regression, regressor

import epochwise as ew
from epochwise.callbacks import Callback, EarlyStopping, LambdaCallback


def _fit(callbacks, logs, **kwargs):
    return scripted_fit(callbacks, logs, validate=True, **kwargs)  # validating: fit announces val_loss


def test_defaults():  # ES1
    cb = EarlyStopping()
    assert (cb.monitor, cb.min_delta, cb.patience, cb.verbose, cb.mode) == ("val_loss", 0.0, 0, 0, "auto")
    assert (cb.baseline, cb.restore_best_weights, cb.start_from_epoch) == (None, False, 0)


def test_es4_example_patience_2():  # ES4: 1.0, 0.9, 0.95, 0.96 stops at epoch 3, best at epoch 1
    cb = EarlyStopping(patience=2)
    run = _fit([cb], val_losses([1.0, 0.9, 0.95, 0.96, 0.5, 0.4]))
    assert run.epochs == [0, 1, 2, 3]
    assert (cb.stopped_epoch, cb.best_epoch, cb.best, cb.wait) == (3, 1, 0.9, 2)  # ES8


def test_es4_flat_metric_patience_3_runs_4_epochs():  # ES4
    cb = EarlyStopping(patience=3)
    run = _fit([cb], val_losses([1.0] * 10))
    assert run.epochs == [0, 1, 2, 3]
    assert cb.stopped_epoch == 3


@pytest.mark.parametrize("patience", [0, 1])
def test_es4_patience_0_equals_1(patience):  # ES4: stops on the first non-improving epoch
    cb = EarlyStopping(patience=patience)
    run = _fit([cb], val_losses([1.0, 0.8, 0.9, 0.7]))
    assert run.epochs == [0, 1, 2]
    assert cb.stopped_epoch == 2


def test_min_delta_counts_small_gains_as_no_improvement():  # M4 within ES3.6
    cb = EarlyStopping(patience=2, min_delta=0.1)
    run = _fit([cb], val_losses([1.0, 0.95, 0.91, 0.5]))
    assert run.epochs == [0, 1, 2]
    assert (cb.best, cb.best_epoch) == (1.0, 0)


# M4 at an exact min_delta boundary: Keras computes current -/+ min_delta in Python floats and compares in
# float32 (ops.less / ops.greater turn Python floats into the backend's float32); decimal 1.0939 -> 1.0929
# with min_delta=0.001 is then no improvement, where a float64 comparison called it one.
BOUNDARY = [
    ("min", 0.001, 1.0939, 1.0929),
    ("min", 0.001, 1.0011, 1.0001),
    ("min", 0.001, float(np.float32(1.001)), float(np.float32(1.0))),  # values as a float32 log holds them
    ("min", 0.001, 1.0939, 1.0928),  # clearly better: an improvement either way
    ("max", 0.01, 0.102, 0.112),
    ("max", 0.001, 1.0001, 1.0011),
    ("max", 0.001, 0.5, 0.5011),
]


def keras_improves(mode, delta, reference, current):  # the float32 computation, by hand
    if mode == "min":
        return bool(np.float32(current + delta) < np.float32(reference))
    return bool(np.float32(current - delta) > np.float32(reference))


@pytest.mark.parametrize(("mode", "delta", "first", "second"), BOUNDARY)
def test_min_delta_boundary_is_judged_in_float32_as_keras(mode, delta, first, second):
    cb = EarlyStopping(mode=mode, min_delta=delta, patience=1)
    run = _fit([cb], val_losses([first, second, second]))
    # an improving epoch 1 resets the wait and epoch 2 stops; else epoch 1 stops
    assert run.epochs == ([0, 1, 2] if keras_improves(mode, delta, first, second) else [0, 1])


def test_max_mode_from_compiled_metric():  # M2 with ES4
    model = scripted_model(metrics=["accuracy"])  # declares direction "max"
    cb = EarlyStopping(monitor="val_accuracy", patience=1)
    run = _fit([cb], [{"val_accuracy": v} for v in [0.5, 0.7, 0.6, 0.9]], model=model)
    assert run.epochs == [0, 1, 2]
    assert (cb.best, cb.best_epoch) == (0.7, 1)


# --- ES5: baseline ------------------------------------------------------------------------------
def test_es5_improving_but_never_reaching_baseline_never_stops():
    cb = EarlyStopping(patience=1, baseline=0.1)
    run = _fit([cb], val_losses([1.0, 0.9, 0.8, 0.7, 0.6, 0.5]))
    assert run.epochs == [0, 1, 2, 3, 4, 5]
    assert cb.stopped_epoch == 0 and cb.wait == 6


def test_es5_first_non_improving_epoch_stops_at_once_after_accumulated_wait():
    cb = EarlyStopping(patience=2, baseline=0.5)
    run = _fit([cb], val_losses([1.0, 0.9, 0.8, 0.85, 0.1]))
    assert run.epochs == [0, 1, 2, 3]
    assert cb.stopped_epoch == 3


def test_es5_flat_metric_never_beating_baseline_stops_at_epoch_1():
    cb = EarlyStopping(patience=2, baseline=0.5)
    run = _fit([cb], val_losses([1.0] * 5))
    assert run.epochs == [0, 1]
    assert cb.stopped_epoch == 1


def test_beating_the_baseline_resets_wait():  # ES3.6
    cb = EarlyStopping(patience=2, baseline=0.5)
    run = _fit([cb], val_losses([0.4, 0.45, 0.3, 0.35, 0.36, 0.1]))
    assert run.epochs == [0, 1, 2, 3, 4]
    assert (cb.stopped_epoch, cb.best_epoch) == (4, 2)


# --- ES6: restore_best_weights -----------------------------------------------------------------------
def test_es6_restores_the_best_epoch_when_it_stops():
    cb = EarlyStopping(patience=2, restore_best_weights=True)
    run = _fit([cb], val_losses([1.0, 0.9, 0.95, 0.96]))
    assert weight_epoch(run.model) == 1.0


def test_es6_restores_even_without_an_early_stop():  # verified: best at epoch 1 of 3 restores epoch 1
    cb = EarlyStopping(patience=5, restore_best_weights=True)
    run = _fit([cb], val_losses([1.0, 0.5, 0.7]))
    assert run.epochs == [0, 1, 2] and cb.stopped_epoch == 0
    assert weight_epoch(run.model) == 1.0
    assert cb.summary() == "weights restored from epoch 2 (val_loss 0.5000)"


class _StopAt(Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.stop_training = True


def test_es6_restores_when_another_callback_stops():
    cb = EarlyStopping(patience=5, restore_best_weights=True)
    run = _fit([cb, _StopAt(3)], val_losses([1.0, 0.4, 0.7, 0.8, 0.9]))
    assert run.epochs == [0, 1, 2, 3]
    assert weight_epoch(run.model) == 1.0


def test_es6_nothing_restored_before_start_from_epoch():  # ES3.3, ES6
    cb = EarlyStopping(patience=1, restore_best_weights=True, start_from_epoch=5)
    run = _fit([cb], val_losses([0.1, 0.2, 0.3]))
    assert cb.best_weights is None and cb.best is None
    assert weight_epoch(run.model) == 2.0


def test_start_from_epoch_ignores_earlier_epochs():  # ES3.3: not counted, not eligible as best
    cb = EarlyStopping(patience=1, start_from_epoch=2)
    run = _fit([cb], val_losses([0.1, 0.2, 0.5, 0.6, 0.7]))
    assert run.epochs == [0, 1, 2, 3]
    assert (cb.best, cb.best_epoch, cb.stopped_epoch) == (0.5, 2, 3)


def test_restored_weights_are_a_snapshot_not_a_reference():  # best_weights = model.get_weights()
    cb = EarlyStopping(patience=3, restore_best_weights=True)
    _fit([cb], val_losses([0.5, 0.6, 0.7]))
    assert float(cb.best_weights["weight"][0, 0]) == 0.0


# --- ES3.2: missing monitor -------------------------------------------------------------------------
def test_epoch_without_the_monitor_is_not_counted_and_cannot_stop():
    cb = EarlyStopping(patience=1)
    logs = [{"val_loss": 1.0}, {"loss": 1.0}, {"loss": 1.0}, {"val_loss": 1.5}]
    with pytest.warns(UserWarning, match="not available"):
        run = _fit([cb], logs)
    assert run.epochs == [0, 1, 2, 3]
    assert (cb.stopped_epoch, cb.wait) == (3, 1)


# --- arguments, reuse, messages, summary, state -------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patience": -1}, r"patience=-1\): patience must be an integer >= 0"),
        ({"patience": 2.5}, "patience must be an integer"),
        ({"start_from_epoch": -2}, "start_from_epoch must be an integer >= 0"),
        ({"min_delta": "0.1"}, "min_delta must be a finite number"),
        ({"baseline": float("nan")}, "baseline must be a finite number or None"),
        ({"verbose": -1}, "verbose must be an integer >= 0"),
        ({"verbose": "1"}, "verbose must be an integer >= 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


def test_reused_instance_starts_fresh():  # ES2, C3 (keras-team/keras#20256)
    cb = EarlyStopping(patience=1, restore_best_weights=True)
    _fit([cb], val_losses([0.1, 0.2]))
    run = _fit([cb], val_losses([0.9, 0.8, 0.85]))
    assert run.epochs == [0, 1, 2]  # the first fit's best (0.1) would have stopped at epoch 1
    assert (cb.best, cb.best_epoch, cb.stopped_epoch) == (0.8, 1, 2)


def test_verbose_messages_say_why_and_which_weights(capsys):  # ES7
    cb = EarlyStopping(patience=2, verbose=1, restore_best_weights=True)
    _fit([cb], val_losses([1.0, 0.0912, 0.95, 0.96]))
    out = capsys.readouterr().out
    assert "\nEpoch 4: early stopping (val_loss did not improve by > 0 for 2 epochs)." in out
    assert (
        "Restoring model weights from the end of the best epoch: 2 (val_loss 0.0912); the model now holds"
        in out
    )


def test_verbose_without_restore_says_the_model_keeps_the_last_weights(capsys):
    cb = EarlyStopping(patience=1, verbose=1)
    _fit([cb], val_losses([1.0, 0.5, 0.6]))
    out = capsys.readouterr().out
    assert "The model keeps the weights of epoch 3; the best was epoch 2 (val_loss 0.5000)" in out


def test_verbose_true_counts_as_1():
    assert EarlyStopping(verbose=True).verbose == 1


def test_silent_by_default(capsys):
    _fit([EarlyStopping()], val_losses([1.0, 2.0]))
    assert capsys.readouterr().out == ""


def test_summary_text():
    cb = EarlyStopping(patience=3, restore_best_weights=True)
    values = [1.0 - 0.01 * i for i in range(13)] + [0.0912, 0.2, 0.3, 0.4] + [0.01] * 83
    _fit([cb], val_losses(values), epochs=100)
    assert cb.summary() == (
        "stopped at epoch 17 of 100 (val_loss did not improve by > 0 for 3 epochs); "
        "weights restored from epoch 14 (val_loss 0.0912)"
    )


def test_summary_baseline_reason_and_none_when_idle():
    cb = EarlyStopping(patience=2, baseline=0.5)
    _fit([cb], val_losses([1.0, 1.0]))
    assert cb.summary() == "stopped at epoch 2 of 2 (val_loss did not beat the baseline 0.5 for 2 epochs)"
    idle = EarlyStopping(patience=5)
    _fit([idle], val_losses([1.0, 0.9]))
    assert idle.summary() is None


def test_state_dict_round_trips_and_resumes_exactly():
    values = [1.0, 0.9, 0.95, 0.96, 0.97]
    whole = EarlyStopping(patience=2, restore_best_weights=True)
    _fit([whole], val_losses(values))

    first = EarlyStopping(patience=2, restore_best_weights=True)
    _fit([first], val_losses(values[:3]))  # interrupted after epoch 2
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = EarlyStopping(patience=2, restore_best_weights=True)
    resumed.load_state_dict(state)
    run = _fit([resumed], val_losses(values[3:]), initial_epoch=3)
    assert run.epochs == [3]
    assert (resumed.stopped_epoch, resumed.best_epoch, resumed.best) == (whole.stopped_epoch, 1, 0.9)
    assert weight_epoch(run.model) == 1.0


def test_state_taken_during_fit_resumes_exactly():  # the state a checkpoint at the end of epoch 3 holds
    values = [1.0, 0.9, 0.95, 0.96, 0.97]
    first = EarlyStopping(patience=2, restore_best_weights=True)
    buffer = io.BytesIO()
    take = LambdaCallback(
        on_epoch_end=lambda epoch, logs: epoch == 2 and torch.save(first.state_dict(), buffer)
    )
    _fit([first, take], val_losses(values[:3]))
    buffer.seek(0)
    resumed = EarlyStopping(patience=2, restore_best_weights=True)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    run = _fit([resumed], val_losses(values[3:]), initial_epoch=3)
    assert run.epochs == [3]
    assert (resumed.stopped_epoch, resumed.best_epoch, resumed.best) == (3, 1, 0.9)
    assert weight_epoch(run.model) == 1.0


# --- one real fit ------------------------------------------------------------------------------------
def test_real_fit_stops_and_restores_the_best_epoch():
    x, y = make_regression(n=40)
    model = regressor(optimizer=ew.optimizers.SGD(learning_rate=1.0))  # too large: val_loss climbs
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    cb = EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(
        x, y, epochs=20, batch_size=10, validation_split=0.25, verbose=0, callbacks=[keep, cb]
    )
    val = history.history["val_loss"]
    assert val[0] < val[1] < val[2]  # the premise: epoch 0 is the best
    assert history.epoch == [0, 1, 2]  # ES4: stop on the 2nd non-improving epoch
    assert (cb.stopped_epoch, cb.best_epoch, cb.best) == (2, 0, val[0])
    for k, v in model.get_weights().items():  # ES6: the model holds the weights of epoch 0
        torch.testing.assert_close(v, snapshots[0][k], rtol=0, atol=0)
        assert not torch.equal(v, snapshots[2][k])
