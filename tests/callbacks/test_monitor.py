"""The shared monitor rule (M1-M4) and the misspelt / missing monitor stance, for all three users.

Tests run the real ``Model.fit``, where ``Script`` (see ``_scripted.py``) feeds the chosen logs and the
compiled metrics and validation decide which keys fit announces. Only the mode-resolution tables for
cases no fit can produce (a model that announces no keys, or a monitored key no compiled metric makes)
use ``FakeModel``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _fakes import FakeModel
from _scripted import scripted_fit, scripted_model, val_losses

import epochwise as ew
from epochwise.callbacks import (
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)

KEYS = ["accuracy", "loss", "val_accuracy", "val_loss"]


def _monitors(monitor: str, mode: str = "auto", tmp_path=None):
    return [
        EarlyStopping(monitor=monitor, mode=mode),
        ModelCheckpoint(str(tmp_path / "m.pt"), monitor=monitor, mode=mode, save_best_only=True),
        ReduceLROnPlateau(monitor=monitor, mode=mode),
    ]


def _begin(cb, model):  # a decision table: on_train_begin alone, for what no fit can produce
    cb.set_model(model)
    cb.set_params({"verbose": 0, "epochs": 3, "steps": None})
    cb.on_train_begin({})


def _metric(name, direction=None):  # a custom metric: the mean absolute error under another name
    fn = lambda y_true, y_pred: (y_pred - y_true).abs().mean(dim=-1)  # noqa: E731
    return ew.metrics.MeanMetricWrapper(fn, name=name, direction=direction)


def _fit(callbacks, logs, metrics=None, **kwargs):
    return scripted_fit(callbacks, logs, model=scripted_model(metrics=metrics), validate=True, **kwargs)


# --- M1 ----------------------------------------------------------------------------------------
def test_unknown_mode_is_an_error_with_a_close_match():  # M1 (Keras warns and uses "auto")
    with pytest.raises(ValueError, match=r"mode='mini'.*Did you mean 'min'"):
        EarlyStopping(mode="mini")
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max'"):
        ReduceLROnPlateau(mode=None)


def test_monitor_must_be_a_name():
    with pytest.raises(ValueError, match="monitor must be the name of a logged value"):
        EarlyStopping(monitor="")


# --- M2 / M3 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("monitor", "metrics", "direction"),
    [
        ("val_loss", None, "min"),  # M2: strip val_, "loss" -> min
        ("loss", None, "min"),
        ("val_accuracy", ["accuracy"], "max"),  # a compiled metric's declared direction
        ("accuracy", ["accuracy"], "max"),
        ("val_mae", ["mae"], "min"),
    ],
)
def test_auto_direction(monitor, metrics, direction):
    cb = EarlyStopping(monitor=monitor)
    seen = []
    probe = LambdaCallback(on_train_batch_begin=lambda batch, logs: seen.append(cb.direction))
    _fit([cb, probe], [{monitor: 1.0}], metrics=metrics)
    assert seen == [direction]  # resolved before the first batch


@pytest.mark.parametrize(
    ("monitor", "metrics"),
    [
        ("val_my_score", {"my_score": None}),  # custom metric without a declared direction
        ("out_accuracy", {"accuracy": "max"}),  # per-output key: no exact match
        ("val_accuracy", {}),  # not compiled
    ],
)
def test_auto_direction_unknown_raises_before_training(monitor, metrics):  # M2, raised at train begin
    cb = EarlyStopping(monitor=monitor)
    with pytest.raises(ValueError, match=r"Pass mode='min' \(lower is better\) or mode='max'"):
        _begin(cb, FakeModel(metrics=metrics))


def test_custom_metric_without_direction_raises_before_the_first_epoch():  # M2 in a real fit
    cb = EarlyStopping(monitor="val_my_score")
    model = scripted_model(metrics=[_metric("my_score")])
    before = model.get_weights()
    with pytest.raises(
        ValueError, match=r"cannot tell whether 'my_score'.*Pass mode='min' \(lower is better\)"
    ):
        scripted_fit([cb], val_losses([1.0]), model=model, validate=True)
    for k, v in model.get_weights().items():  # Script marks the weights at epoch begin: it never ran
        assert torch.equal(v, before[k])


def test_explicit_mode_needs_no_metric():
    cb = EarlyStopping(monitor="val_my_score", mode="max")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _fit([cb], [{"val_my_score": 1.0}], metrics=[_metric("my_score")])
    assert cb.direction == "max"


def test_direction_is_cached_for_the_instance():  # M3 / C3: the direction persists across fits
    cb = EarlyStopping(monitor="val_score")
    _fit([cb], [{"val_score": 1.0}], metrics=[_metric("score", "max")])
    _fit([cb], [{"val_score": 1.0}], metrics=[_metric("score", "min")])
    assert cb.direction == "max"


# --- M4 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "min_delta", "current", "reference", "expected"),
    [
        ("min", 0.0, 0.9, None, True),  # None reference: anything improves
        ("min", 0.0, 0.9, 1.0, True),
        ("min", 0.0, 1.0, 1.0, False),  # strict: equal is not an improvement
        ("min", 0.1, 0.9, 1.0, False),  # exactly min_delta better is not (verified in M4)
        ("min", 0.1, 0.89, 1.0, True),
        ("min", -0.1, 0.9, 1.0, False),  # min_delta is stored as |min_delta|
        ("max", 0.0, 1.1, 1.0, True),
        ("max", 0.0, 1.0, 1.0, False),
        ("max", 0.05, 1.04, 1.0, False),
        ("max", 0.05, 1.06, 1.0, True),
        ("min", 0.0, float("nan"), 1.0, False),
        ("min", 0.001, 1.0929, 1.0939, False),  # decimal min_delta exactly: float32, as Keras (float64 said True)
        ("max", 0.01, 0.112, 0.102, False),
    ],
)
def test_improvement_rule(mode, min_delta, current, reference, expected):  # M4
    cb = EarlyStopping(monitor="score", mode=mode, min_delta=min_delta)
    assert cb.is_improvement(current, reference) is expected


# --- a misspelt monitor must not go unnoticed ------------------------------------------------------
def test_typo_with_auto_mode_raises_at_train_begin_for_every_monitor_callback(tmp_path):
    for cb in _monitors("val_los", tmp_path=tmp_path):
        with pytest.raises(ValueError) as info:
            _fit([cb], val_losses([1.0]), metrics=["accuracy"])  # fit announces KEYS
        text = str(info.value)
        assert "Did you mean 'val_loss'" in text and str(KEYS) in text, text
        assert type(cb).__name__ in text


def test_val_monitor_without_validation_says_how_to_validate():
    with pytest.raises(ValueError, match=r"validation_split=.*or monitor 'loss'"):
        scripted_fit([EarlyStopping()], [{"loss": 1.0}])  # fit announces ['loss']


def test_typo_with_explicit_mode_warns_once_and_trains(tmp_path):
    # ModelCheckpoint(save_best_only=True) refuses it in any mode: it would never write a file
    for cb in _monitors("val_los", mode="min", tmp_path=tmp_path)[::2]:
        with pytest.warns(UserWarning, match="Did you mean 'val_loss'") as record:
            run = _fit([cb], val_losses([1.0, 1.0, 1.0]), metrics=["accuracy"])  # fit announces KEYS
        assert run.epochs == [0, 1, 2]
        assert len(record) == 1  # not once more at each epoch end


def test_learning_rate_monitor_is_not_checked_against_fit_keys():
    cb = EarlyStopping(monitor="learning_rate", mode="min")
    schedule = LearningRateScheduler(lambda epoch, lr: 0.5 / (epoch + 1))  # logs learning_rate
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        run = _fit([schedule, cb], val_losses([1.0, 1.0, 1.0]), metrics=["accuracy"])  # fit announces KEYS
    assert run.model.expected_log_keys == KEYS  # no learning_rate among them
    assert cb.direction == "min"
    assert cb.best == 0.5 / 3 and run.epochs == [0, 1, 2]  # a falling learning rate keeps improving


def test_no_expected_keys_skips_the_up_front_check():
    cb = EarlyStopping(monitor="val_los", mode="min")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _begin(cb, FakeModel(expected_log_keys=None))


# --- a monitor missing at an epoch end: warn once per fit, then skip (ES3.2, RL3, MC6) --------------
def test_missing_key_warns_once_per_fit(tmp_path):
    for cb in _monitors("val_loss", tmp_path=tmp_path):
        logs = [{"loss": 1.0}, {"loss": 1.0}, {"loss": 1.0, "val_loss": 0.5}, {"loss": 1.0}]
        for _ in range(2):  # a second fit warns again
            with pytest.warns(UserWarning, match="'val_loss' is not available in the logs of epoch 1") as rec:
                _fit([cb], logs)
            assert len([w for w in rec if "not available" in str(w.message)]) == 1
