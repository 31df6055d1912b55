"""ReduceLROnPlateau against RL1-RL6, with our cooldown fix (exactly `cooldown` epochs are skipped).

Each test runs the real ``Model.fit`` with SGD; ``Script`` (see ``_scripted.py``) feeds the chosen monitor
values and records the learning rate the optimizer holds when each epoch's first batch begins.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from _scripted import scripted_fit, scripted_model, val_losses
from conftest import make_regression, regressor

import epochwise as ew
from epochwise.callbacks import ReduceLROnPlateau


def _fit(callbacks, logs, model=None, **kwargs):
    model = scripted_model(learning_rate=1.0) if model is None else model
    return scripted_fit(callbacks, logs, model=model, validate=True, **kwargs)


def _lrs(values, **kwargs):
    cb = ReduceLROnPlateau(**kwargs)
    run = _fit([cb], val_losses(values))
    return run.lrs, cb, run


def test_defaults():  # RL1
    cb = ReduceLROnPlateau()
    assert (cb.monitor, cb.factor, cb.patience, cb.verbose, cb.mode) == ("val_loss", 0.1, 10, 0, "auto")
    assert (cb.min_delta, cb.cooldown, cb.min_lr) == (1e-4, 0, 0.0)


@pytest.mark.parametrize("patience", [0, 1])
def test_rl5_flat_metric_cooldown_0(patience):  # RL5: patience 0 == 1; the new LR applies next epoch (RL6)
    lrs, _, _ = _lrs([1.0] * 6, factor=0.5, patience=patience)
    assert lrs == [1, 1, 0.5, 0.25, 0.125, 0.0625]


def test_rl5_cooldown_1_skips_one_epoch():  # our fix: Keras's cooldown=1 is a no-op (same as 0)
    lrs, _, _ = _lrs([1.0] * 7, factor=0.5, patience=1, cooldown=1)
    assert lrs == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]  # what Keras gives only with cooldown=2


def test_rl5_cooldown_2_skips_two_epochs():  # our fix: Keras's cooldown=2 skips one epoch
    lrs, _, _ = _lrs([1.0] * 9, factor=0.5, patience=1, cooldown=2)
    assert lrs == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


def test_rl5_min_lr_example():  # RL5: patience=2 with min_lr=0.3
    lrs, cb, _ = _lrs([1.0] * 8, factor=0.5, patience=2, min_lr=0.3)
    assert lrs == [1, 1, 1, 0.5, 0.5, 0.3, 0.3, 0.3]
    assert cb.wait == 3  # RL4.4: at min_lr nothing happens and wait keeps growing


def test_improvement_resets_wait_and_min_delta_is_absolute():  # RL4.2, RL1
    lrs, cb, _ = _lrs([1.0, 0.9, 0.8, 0.79995, 0.7999, 0.5], factor=0.5, patience=2)
    assert lrs == [1, 1, 1, 1, 1, 0.5]  # 0.79995 is within min_delta 1e-4, so 2 flat epochs: drop at epoch 4
    assert cb.best == 0.5


def test_rl3_learning_rate_logged_before_the_change_even_when_monitor_missing():
    cb = ReduceLROnPlateau(factor=0.5, patience=1)
    logs = [{"val_loss": 1.0}, {"val_loss": 1.0}, {"loss": 1.0}, {"val_loss": 1.0}]
    with pytest.warns(UserWarning, match="so the learning rate is left unchanged"):
        run = _fit([cb], logs)
    assert run.history.history["learning_rate"] == [1.0, 1.0, 0.5, 0.5]  # G6: the LR of that epoch
    assert run.lrs == [1.0, 1.0, 0.5, 0.5]
    assert run.model.optimizer.learning_rate == 0.25


def test_max_mode():
    model = scripted_model(metrics=["accuracy"], learning_rate=1.0)  # declares direction "max"
    cb = ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1)
    run = _fit([cb], [{"val_accuracy": v} for v in [0.5, 0.6, 0.55, 0.7]], model=model)
    assert run.lrs == [1, 1, 1, 0.5]


def test_rl6_scheduled_optimizer_is_rejected_before_training():
    model = scripted_model(
        optimizer=ew.optimizers.SGD(learning_rate=ew.schedules.ExponentialDecay(0.1, 10, 0.5))
    )
    before = model.get_weights()
    with pytest.raises(ValueError, match="learning-rate schedule .* Compile with a float learning_rate"):
        _fit([ReduceLROnPlateau()], val_losses([1.0]), model=model)
    for k, v in model.get_weights().items():  # raised before the first epoch began
        assert torch.equal(v, before[k])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"factor": 1.0}, ValueError, "factor must be between 0 and 1"),  # RL1
        ({"factor": 0.0}, ValueError, "factor must be between 0 and 1"),
        ({"patience": -1}, ValueError, "patience must be an integer >= 0"),
        ({"cooldown": 1.5}, ValueError, "cooldown must be an integer >= 0"),
        ({"min_lr": -1e-3}, ValueError, "min_lr must be >= 0"),
        ({"patiense": 3}, TypeError, "unexpected keyword argument 'patiense'. Did you mean 'patience'"),
    ],
)
def test_bad_arguments(kwargs, error, match):  # Keras ignores unknown keywords (RL1)
    with pytest.raises(error, match=match):
        ReduceLROnPlateau(**kwargs)


def test_rl6_message(capsys):
    _lrs([1.0, 1.0], factor=0.5, patience=1, verbose=1)
    assert "\nEpoch 2: ReduceLROnPlateau reducing learning rate to 0.5." in capsys.readouterr().out


def test_summary():
    _, cb, _ = _lrs([1.0] * 4, factor=0.1, patience=1, cooldown=1)
    assert cb.summary() == "learning rate reduced 2 times, to 0.01"
    _, idle, _ = _lrs([1.0, 0.5], patience=1)
    assert idle.summary() is None


def test_reused_instance_starts_fresh():  # RL2
    model = scripted_model(learning_rate=1.0)
    cb = ReduceLROnPlateau(factor=0.5, patience=2)
    _fit([cb], val_losses([0.1, 0.2]), model=model)
    run = _fit([cb], val_losses([0.9, 0.8, 0.85]), model=model)
    assert run.lrs == [1.0, 1.0, 1.0] and cb.best == 0.8


def test_state_dict_round_trips_and_resumes():
    values = [1.0] * 6
    whole, _, _ = _lrs(values, factor=0.5, patience=1, cooldown=2)
    model = scripted_model(learning_rate=1.0)
    first = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    _fit([first], val_losses(values[:3]), model=model)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    run = _fit([resumed], val_losses(values[3:]), model=model, initial_epoch=3)
    assert run.lrs == whole[3:]


def test_real_fit_reduces_the_learning_rate():
    x, y = make_regression(n=40)
    model = regressor(optimizer=ew.optimizers.SGD(learning_rate=1e-30))  # no progress: a flat val_loss
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0)
    history = model.fit(x, y, epochs=4, batch_size=10, validation_split=0.25, verbose=0, callbacks=[cb])
    assert history.history["learning_rate"] == [1e-30, 1e-30, 0.5e-30, 0.25e-30]  # RL3, G6
    assert model.optimizer.learning_rate == pytest.approx(0.125e-30, rel=1e-6)


# M4 at an exact min_delta boundary, judged in float32 as Keras does (cases and reference: the
# EarlyStopping tests' BOUNDARY, recomputed here with numpy)
@pytest.mark.parametrize(
    ("mode", "delta", "first", "second"),
    [("min", 0.001, 1.0939, 1.0929), ("min", 0.001, 1.0011, 1.0001), ("min", 0.001, 1.0939, 1.0928),
     ("max", 0.01, 0.102, 0.112), ("max", 0.001, 0.5, 0.5011)],
)
def test_min_delta_boundary_is_judged_in_float32_as_keras(mode, delta, first, second):
    if mode == "min":
        improves = np.float32(second + delta) < np.float32(first)
    else:
        improves = np.float32(second - delta) > np.float32(first)
    lrs, _, _ = _lrs([first, second, second], factor=0.5, patience=1, mode=mode, min_delta=delta)
    assert lrs == ([1, 1, 1] if improves else [1, 1, 0.5])  # no improvement at epoch 1: halved from epoch 2
