"""LearningRateScheduler against LS1-LS5, with the signature inspected instead of retrying on TypeError.

Each test runs the real ``Model.fit`` with SGD; ``Script`` (see ``_scripted.py``) records the learning rate
the optimizer holds when each epoch's first batch begins.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from _scripted import scripted_fit, scripted_model
from conftest import make_regression, regressor

import epochwise as ew
from epochwise.callbacks import LearningRateScheduler

FLAT = [{"loss": 1.0}]


def _model(learning_rate=1.0):
    return scripted_model(learning_rate=learning_rate)


def _scheduled():  # an optimizer whose learning rate a schedule sets at every step
    return scripted_model(
        optimizer=ew.optimizers.SGD(learning_rate=ew.schedules.ExponentialDecay(0.1, 10, 0.5))
    )


def tutorial_scheduler(epoch, lr):  # the tutorial's schedule: keep lr for 10 epochs, then decay
    return lr if epoch < 10 else lr * math.exp(-0.1)


def test_ls2_tutorial_schedule_closed_form():
    model = _model(0.01)
    run = scripted_fit([LearningRateScheduler(tutorial_scheduler)], FLAT * 15, model=model)
    expected = [0.01 * math.exp(-0.1 * max(0, e - 9)) for e in range(15)]
    np.testing.assert_allclose(run.lrs, expected, rtol=1e-12)
    assert model.optimizer.learning_rate == pytest.approx(expected[-1], rel=1e-12)  # LS3: persists


def test_ls2_called_at_epoch_begin_with_absolute_epoch_and_current_lr():
    calls = []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return lr / 2

    run = scripted_fit([LearningRateScheduler(schedule)], FLAT * 3, model=_model(1.0), initial_epoch=2)
    assert calls == [(2, 1.0), (3, 0.5), (4, 0.25)]
    assert run.lrs == [0.5, 0.25, 0.125]  # set before the epoch's first batch


def test_one_argument_schedule():  # LS2
    run = scripted_fit([LearningRateScheduler(lambda epoch: 0.1 * (epoch + 1))], FLAT * 3, model=_model())
    assert run.lrs == [0.1, 0.2, 0.30000000000000004]


def test_default_lr_parameter_gets_the_current_lr():
    def schedule(epoch, lr=123.0):
        return lr * 0.5

    run = scripted_fit([LearningRateScheduler(schedule)], FLAT * 2, model=_model(1.0))
    assert run.lrs == [0.5, 0.25]


def test_partial_and_callable_object_signatures():
    class Halve:
        def __call__(self, epoch, lr):
            return lr / 2

    def scaled(scale, epoch, lr):
        return lr * scale

    run = scripted_fit([LearningRateScheduler(Halve())], FLAT * 2, model=_model(1.0))
    assert run.lrs == [0.5, 0.25]
    run = scripted_fit([LearningRateScheduler(functools.partial(scaled, 0.1))], FLAT, model=_model(1.0))
    assert run.lrs == [0.1]


def test_genuine_type_error_inside_schedule_surfaces():  # our stance on LS2's retry
    calls = []

    def schedule(epoch, lr):
        calls.append(epoch)
        return lr + "oops"  # a bug in the user's schedule

    with pytest.raises(TypeError, match="unsupported operand"):
        scripted_fit([LearningRateScheduler(schedule)], FLAT, model=_model())
    assert calls == [0]  # called once: no retry as schedule(epoch)


@pytest.mark.parametrize(
    "schedule",
    [lambda: 0.1, lambda epoch, lr, extra: 0.1, lambda epoch, *, lr: 0.1],
)
def test_unusable_signatures_are_rejected_up_front(schedule):
    with pytest.raises(
        TypeError, match=r"schedule must be a function \(epoch\) -> lr or \(epoch, lr\) -> lr"
    ):
        LearningRateScheduler(schedule)


def test_not_callable_or_a_class():
    with pytest.raises(TypeError, match="schedule must be a function"):
        LearningRateScheduler(0.1)
    with pytest.raises(TypeError, match="pass an instance, not the class"):
        LearningRateScheduler(ew.schedules.ExponentialDecay)


@pytest.mark.parametrize("value", [1, torch.tensor(0.1), "0.1", None, True])
def test_ls3_non_float_return_is_an_error(value):
    with pytest.raises(ValueError, match=r"it must return a float: end it with `return float\(\.\.\.\)`"):
        scripted_fit([LearningRateScheduler(lambda epoch, lr: value)], FLAT, model=_model())


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1])
def test_non_finite_or_negative_return_is_an_error(value):
    with pytest.raises(ValueError, match="a learning rate must be finite and >= 0"):
        scripted_fit([LearningRateScheduler(lambda epoch, lr: value)], FLAT, model=_model())


@pytest.mark.parametrize("value", [np.float32(0.25), np.float64(0.25), 0.25])
def test_ls3_numpy_floats_are_accepted(value):
    run = scripted_fit([LearningRateScheduler(lambda epoch, lr: value)], FLAT, model=_model())
    assert run.lrs == [0.25] and type(run.lrs[0]) is float


def test_ls3_scheduled_optimizer_is_rejected_before_training():
    model = _scheduled()
    before = model.get_weights()
    with pytest.raises(ValueError, match="learning-rate schedule"):
        scripted_fit([LearningRateScheduler(tutorial_scheduler)], FLAT, model=model)
    for k, v in model.get_weights().items():  # raised before the first epoch began
        assert torch.equal(v, before[k])


def test_learning_rate_schedule_instance_is_evaluated_at_step_epoch():  # SC7 test vectors
    schedule = ew.schedules.ExponentialDecay(0.1, 10, 0.5)
    run = scripted_fit([LearningRateScheduler(schedule)], FLAT * 21, model=_model())
    assert run.lrs[0] == pytest.approx(0.1)
    assert run.lrs[5] == pytest.approx(0.070711, abs=1e-6)
    assert run.lrs[10] == pytest.approx(0.05)
    assert run.lrs[20] == pytest.approx(0.025)


def test_ls4_message(capsys):
    scripted_fit([LearningRateScheduler(lambda epoch: 0.5, verbose=1)], FLAT * 2, model=_model())
    out = capsys.readouterr().out
    assert "\nEpoch 1: LearningRateScheduler setting learning rate to 0.5." in out
    assert "\nEpoch 2: LearningRateScheduler setting learning rate to 0.5." in out


def test_ls5_logs_the_learning_rate_of_each_epoch():
    run = scripted_fit([LearningRateScheduler(lambda e, lr: lr / 10)], FLAT * 3, model=_model(1.0))
    assert run.history.history["learning_rate"] == run.lrs == [1 / 10, 1 / 10 / 10, 1 / 10 / 10 / 10]


def test_summary():
    cb = LearningRateScheduler(tutorial_scheduler)
    scripted_fit([cb], FLAT * 12, model=_model(0.01))
    assert cb.summary() == f"learning rate scheduled from 0.01 to {0.01 * math.exp(-0.2):g}"
    constant = LearningRateScheduler(lambda epoch, lr: lr)
    scripted_fit([constant], FLAT * 3, model=_model())
    assert constant.summary() is None


def test_real_fit_history_has_the_learning_rate():
    x, y = make_regression(n=40)
    model = regressor(optimizer=ew.optimizers.SGD(learning_rate=0.01))
    cb = LearningRateScheduler(lambda epoch, lr: 0.01 * 0.5**epoch)
    history = model.fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[cb])
    assert history.history["learning_rate"] == [0.01, 0.005, 0.0025]  # LS5 / G6
    assert model.optimizer.learning_rate == 0.0025
    assert model.optimizer.torch_optimizer.param_groups[0]["lr"] == 0.0025  # the value torch steps with
