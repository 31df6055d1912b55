"""ModelCheckpoint against MC1-MC10 and our stances (MC6, MC7, MC8 fixes; PyTorch file formats).

Each test runs the real ``Model.fit``; ``Script`` (see ``_scripted.py``) feeds the chosen logs and marks each
epoch's weights with the epoch number, and ``Saves``, placed after the checkpoint, reads back every file
written, in order.
"""

from __future__ import annotations

import io
import os
import re

import pytest
import torch
from _scripted import ReadCount, Saves, scripted_fit, scripted_model, val_losses, zeros
from conftest import make_regression, regressor
from safetensors.torch import load_file
from torch import nn

import epochwise as ew
from epochwise.callbacks import LambdaCallback, LearningRateScheduler, ModelCheckpoint


def _fit(cb, logs, tmp_path, validate=True, callbacks_before=(), **kwargs):
    """``scripted_fit`` with ``cb`` then a ``Saves`` on ``tmp_path``; returns the ``Saves``."""
    saves = Saves(tmp_path)
    scripted_fit([*callbacks_before, cb, saves], logs, validate=validate, **kwargs)
    return saves


# --- MC4: save_freq -------------------------------------------------------------------------------
def test_mc4_integer_save_freq_counts_across_epochs(tmp_path):  # verified save points of MC4
    cb = ModelCheckpoint(str(tmp_path / "{epoch}-{batch}.pt"), save_freq=3)
    batches = [[{"loss": 1.0}] * 4] * 3
    saves = _fit(cb, [{"loss": 1.0}] * 3, tmp_path, batch_logs=batches)
    assert saves.paths == ["1-3.pt", "2-2.pt", "3-1.pt", "3-4.pt"]
    assert [extra for _, _, extra in saves.written] == [  # epochs completed, batches done since
        {"epoch": 0, "batch": 3},
        {"epoch": 1, "batch": 2},
        {"epoch": 2, "batch": 1},
        {"epoch": 2, "batch": 4},
    ]


def test_mc4_epoch_saves_every_epoch_and_overwrites(tmp_path):  # MC4, MC5
    cb = ModelCheckpoint(str(tmp_path / "last.pt"))
    saves = _fit(cb, val_losses([1.0, 2.0, 3.0]), tmp_path)
    assert saves.paths == ["last.pt"] * 3
    assert [extra for _, _, extra in saves.written] == [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["extra"] == {"epoch": 3}


def test_epoch_level_checkpoint_does_not_ask_for_batch_logs(tmp_path):  # no per-batch host sync
    reads = []
    for cb in (ModelCheckpoint(str(tmp_path / "m.pt")), ModelCheckpoint(str(tmp_path / "m.pt"), save_freq=2)):
        metric = ReadCount()
        x, y = zeros(batches=4)
        scripted_model(metrics=[metric]).fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[cb])
        reads.append(metric.reads)
    assert reads[0] == 2  # the two epoch ends only
    assert reads[1] > 2  # the batch-level checkpoint reads batch logs


# --- MC3: templates -------------------------------------------------------------------------------
def test_mc3_template_uses_1_based_epoch_and_logs(tmp_path):
    cb = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{val_loss:.3f}.pt"))
    _fit(cb, val_losses([0.35812, 0.2]), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["m-01-0.358.pt", "m-02-0.200.pt"]


def _no_step(cb, tmp_path, logs=None, metrics=None, **kwargs):
    """Fit with ``cb`` and return the ValueError it raises, after checking no step ran and no file was written."""
    steps = []
    probe = LambdaCallback(on_train_batch_begin=lambda batch, logs: steps.append(batch))
    with pytest.raises(ValueError) as info:
        scripted_fit([probe, cb], logs or val_losses([1.0]), model=scripted_model(metrics=metrics), **kwargs)
    assert steps == [] and os.listdir(tmp_path) == []  # before the first step (§1)
    return str(info.value)


@pytest.mark.parametrize(
    ("template", "save_freq", "validate", "expected"),
    [
        ("m-{val_acc:.3f}.pt", "epoch", True, r"\{val_acc:.3f\} names 'val_acc'.*Did you mean 'val_accuracy'"),
        ("m-{val_loss:.3f}.pt", 1, True, r"\{val_loss:.3f\}.*at batch level.*never hold val_\* values"),
        ("m-{val_loss}.pt", "epoch", False, r"\{val_loss\}.*only when fit validates: pass validation_data"),
        ("m-{batch}.pt", "epoch", True, r"\{batch\} exists only with an integer save_freq"),
    ],
    ids=["misspelt", "val_at_batch_level", "val_without_validation", "batch_at_epoch_level"],
)
def test_mc3_unknown_placeholder_is_an_error_at_train_begin(tmp_path, template, save_freq, validate, expected):
    cb = ModelCheckpoint(str(tmp_path / template), save_freq=save_freq)
    message = _no_step(cb, tmp_path, metrics=["accuracy"], validate=validate,
                       batch_logs=[[{"loss": 1.0}]] if save_freq == 1 else None)
    assert re.search(expected, message), message
    assert message.startswith(f"ModelCheckpoint(filepath={str(tmp_path / template)!r})")
    keys = ["accuracy", "epoch", "loss", "val_accuracy", "val_loss"] if validate else ["accuracy", "epoch", "loss"]
    if save_freq == 1:
        keys = ["accuracy", "batch", "epoch", "loss"]
    assert f"Available placeholders: {keys}" in message, message


@pytest.mark.parametrize(
    ("template", "value"), [("m-{loss:02d}.pt", "a float"), ("m-{epoch:.3s}.pt", "an integer")], ids=["loss", "epoch"]
)
def test_mc3_bad_format_spec_is_an_error_at_train_begin(tmp_path, template, value):
    message = _no_step(ModelCheckpoint(str(tmp_path / template)), tmp_path)
    placeholder = template[2:-3]
    assert f"ModelCheckpoint(filepath={str(tmp_path / template)!r}): the placeholder {placeholder}" in message
    assert f"which is {value}" in message, message


def test_mc3_learning_rate_placeholder_is_allowed_with_an_lr_callback(tmp_path):
    schedule = LearningRateScheduler(lambda epoch, lr: 0.5 / (epoch + 1))  # logs learning_rate at epoch end
    cb = ModelCheckpoint(str(tmp_path / "m-{epoch}-{learning_rate:.2f}.pt"))
    _fit(cb, val_losses([1.0, 1.0]), tmp_path, callbacks_before=[schedule])
    assert sorted(os.listdir(tmp_path)) == ["m-1-0.50.pt", "m-2-0.25.pt"]


@pytest.mark.parametrize("bad", ["m-{}.pt", "m-{0}.pt", "m-{epoch.pt"])
def test_template_must_use_named_valid_placeholders(bad, tmp_path):
    with pytest.raises(ValueError, match="ModelCheckpoint"):
        ModelCheckpoint(str(tmp_path / bad))


# --- MC6 / MC7: save_best_only -----------------------------------------------------------------------
def test_mc6_saves_only_on_strict_improvement(tmp_path):
    cb = ModelCheckpoint(str(tmp_path / "best-{epoch}.pt"), save_best_only=True)
    saves = _fit(cb, val_losses([1.0, 1.0, 0.9, 0.95, 0.5]), tmp_path)
    assert saves.paths == ["best-1.pt", "best-3.pt", "best-5.pt"]
    assert cb.best == 0.5


def test_mc6_fix_missing_monitor_skips_the_save_and_warns_once(tmp_path):  # Keras saves anyway
    cb = ModelCheckpoint(str(tmp_path / "best-{epoch}.pt"), save_best_only=True)
    logs = [{"loss": 1.0}, {"loss": 1.0, "val_loss": 0.8}, {"loss": 1.0}, {"loss": 1.0, "val_loss": 0.7}]
    with pytest.warns(UserWarning, match="so no checkpoint is saved") as record:
        saves = _fit(cb, logs, tmp_path, validation_freq=2)
    assert saves.paths == ["best-2.pt", "best-4.pt"]
    assert len(record) == 1


def test_mc7_fix_best_resets_between_fits(tmp_path):  # Keras compares with the previous fit's best
    model = scripted_model()
    cb = ModelCheckpoint(str(tmp_path / "best.pt"), save_best_only=True)
    saves = _fit(cb, val_losses([0.5]), tmp_path, model=model)
    saves.written += _fit(cb, val_losses([0.9]), tmp_path, model=model).written
    assert len(saves.written) == 2 and cb.best == 0.9


def test_mc7_initial_value_threshold_is_kept_across_fits(tmp_path):
    model = scripted_model()
    cb = ModelCheckpoint(str(tmp_path / "best-{epoch}.pt"), save_best_only=True, initial_value_threshold=0.6)
    saves = _fit(cb, val_losses([0.7, 0.5]), tmp_path, model=model)
    assert saves.paths == ["best-2.pt"]
    saves.written += _fit(cb, val_losses([0.55, 0.4]), tmp_path, model=model).written
    assert saves.paths == ["best-2.pt", "best-2.pt"]  # 0.55 did not beat 0.5
    assert cb.best == 0.4


def test_max_mode_with_compiled_metric(tmp_path):  # M2
    model = scripted_model(metrics=["accuracy"])  # declares direction "max"
    cb = ModelCheckpoint(str(tmp_path / "b-{epoch}.pt"), monitor="val_accuracy", save_best_only=True)
    saves = _fit(cb, [{"val_accuracy": v} for v in [0.5, 0.4, 0.6]], tmp_path, model=model)
    assert saves.paths == ["b-1.pt", "b-3.pt"]


# --- MC8 fix ---------------------------------------------------------------------------------------
def test_mc8_fix_integer_save_freq_with_save_best_only_works(tmp_path):  # Keras crashes here
    cb = ModelCheckpoint(
        str(tmp_path / "{epoch}-{batch}.pt"), monitor="loss", save_best_only=True, save_freq=2
    )
    seen = []
    probe = LambdaCallback(on_train_batch_begin=lambda batch, logs: seen.append(cb.direction))
    batches = [[{"loss": v} for v in (1.0, 0.8, 0.9, 0.7)], [{"loss": v} for v in (0.9, 0.75, 0.6, 0.5)]]
    saves = Saves(tmp_path)
    logs = [{"loss": 0.7, "val_loss": 1.0}, {"loss": 0.5, "val_loss": 1.0}]
    scripted_fit([probe, cb, saves], logs, batch_logs=batches, validate=True)  # fit announces loss, val_loss
    assert seen[0] == "min"  # resolved before the first batch
    assert saves.paths == ["1-2.pt", "1-4.pt", "2-4.pt"]  # 0.8, 0.7, (0.75 no), 0.5


def test_mc8_fix_val_monitor_at_batch_level_is_rejected_up_front(tmp_path):
    with pytest.raises(ValueError, match="batch-level logs never hold validation values"):
        ModelCheckpoint(str(tmp_path / "m.pt"), save_best_only=True, save_freq=10)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_monitor_fit_never_logs_is_an_error_in_any_mode(tmp_path, mode):  # M1; Keras only warns
    cb = ModelCheckpoint(str(tmp_path / "best.pt"), monitor="val_acc", mode=mode, save_best_only=True)
    message = _no_step(cb, tmp_path, metrics=["accuracy"], validate=True)
    assert "ModelCheckpoint(monitor='val_acc')" in message and "Did you mean 'val_accuracy'" in message
    assert "['accuracy', 'loss', 'val_accuracy', 'val_loss']" in message


def test_monitor_is_not_checked_without_save_best_only(tmp_path):  # every epoch saves: monitor unused
    saves = _fit(ModelCheckpoint(str(tmp_path / "m.pt"), monitor="val_acc", mode="max"), [{"loss": 1.0}], tmp_path)
    assert saves.paths == ["m.pt"]


def test_mc8_batch_level_monitor_checked_against_training_keys(tmp_path):
    cb = ModelCheckpoint(str(tmp_path / "m.pt"), monitor="los", save_best_only=True, save_freq=2)
    with pytest.raises(ValueError, match=r"fit logs \['loss'\] at each training batch.*Did you mean 'loss'"):
        _fit(cb, [{"loss": 1.0}], tmp_path)  # fit announces loss, val_loss


# --- files (MC2, MC9) ------------------------------------------------------------------------------
def test_pt_weights_only_file(tmp_path):
    saves = _fit(
        ModelCheckpoint(str(tmp_path / "w.pt"), save_weights_only=True), val_losses([1.0, 1.0]), tmp_path
    )
    assert saves.written[-1][0] == "save_weights"
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    assert float(state["weight"][0, 0]) == 1.0  # the weights at the end of epoch 2


def test_safetensors_weights_only_file(tmp_path):
    _fit(
        ModelCheckpoint(str(tmp_path / "w.safetensors"), save_weights_only=True), val_losses([1.0]), tmp_path
    )
    assert float(load_file(tmp_path / "w.safetensors")["bias"][0]) == 0.0


def test_safetensors_needs_save_weights_only():
    with pytest.raises(ValueError, match=r"Use 'best\.pt', or pass save_weights_only=True"):
        ModelCheckpoint("best.safetensors")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "best-model.h5",
            "'best-model.h5' is a Keras HDF5 name; epochwise writes PyTorch files: use 'best-model.pt' "
            "(or .safetensors with save_weights_only=True)",
        ),
        ("m.weights.h5", "'m.weights.h5' is a Keras HDF5 name; epochwise writes PyTorch files: use 'm.pt'"),
        ("m.keras", "'m.keras' is a Keras archive name; epochwise writes PyTorch files: use 'm.pt'"),
        (
            "m.pth",
            "the file name must end in '.pt' (or '.safetensors' with save_weights_only=True), e.g. 'm.pt'",
        ),
        ("ckpt-{val_loss:.2f}", "e.g. 'ckpt-{val_loss:.2f}.pt'"),
    ],
)
def test_keras_and_unknown_extensions_name_the_fix(name, expected):  # MC2 for PyTorch files
    with pytest.raises(ValueError) as info:
        ModelCheckpoint(name)
    assert expected in str(info.value)


def test_the_fix_does_not_repeat_an_argument_already_given():
    with pytest.raises(ValueError) as info:
        ModelCheckpoint("best.weights.h5", save_weights_only=True)
    assert str(info.value) == ("'best.weights.h5' is a Keras HDF5 name; epochwise writes PyTorch files: use "
                               "'best.pt' or 'best.safetensors'")
    with pytest.raises(ValueError, match=r"must end in '\.pt' or '\.safetensors', e\.g\. 'm\.pt'$"):
        ModelCheckpoint("m.pth", save_weights_only=True)


def test_parent_directory_is_created(tmp_path):  # MC9
    _fit(ModelCheckpoint(str(tmp_path / "a" / "b" / "m.pt")), val_losses([1.0]), tmp_path)
    assert (tmp_path / "a" / "b" / "m.pt").is_file()


def test_existing_directory_is_an_error_before_training(tmp_path):  # MC9
    (tmp_path / "m.pt").mkdir()
    with pytest.raises(IsADirectoryError, match="is an existing directory"):
        _fit(ModelCheckpoint(str(tmp_path / "m.pt")), val_losses([1.0]), tmp_path)


@pytest.mark.parametrize("save_freq", ["epochs", 0, -3, True, 2.5])
def test_bad_save_freq(save_freq):  # MC2 (Keras accepts True/False/0 and saves every batch)
    with pytest.raises(ValueError, match="save_freq must be 'epoch' or a positive number of batches"):
        ModelCheckpoint("m.pt", save_freq=save_freq)


# --- messages, summary, state ------------------------------------------------------------------------
def test_mc10_messages(tmp_path, capsys):
    path = str(tmp_path / "best.pt")
    _fit(ModelCheckpoint(path, save_best_only=True, verbose=1), val_losses([0.5, 0.6]), tmp_path)
    out = capsys.readouterr().out
    assert f"\nEpoch 1: val_loss improved from None to 0.50000, saving model to {path}" in out
    assert f"\nEpoch 1: finished saving model to {path}" in out
    assert "\nEpoch 2: val_loss did not improve from 0.50000" in out
    _fit(ModelCheckpoint(path, verbose=1), val_losses([0.5]), tmp_path)
    assert f"\nEpoch 1: saving model to {path}" in capsys.readouterr().out


def test_summary(tmp_path):
    best = ModelCheckpoint(str(tmp_path / "best-model.pt"), save_best_only=True)
    _fit(best, val_losses([0.5, 0.0912, 0.3]), tmp_path)
    assert best.summary() == f"best model saved to {tmp_path / 'best-model.pt'} (val_loss 0.0912 at epoch 2)"
    every = ModelCheckpoint(str(tmp_path / "m-{epoch}.pt"))
    _fit(every, val_losses([0.5, 0.6]), tmp_path)
    assert every.summary() == f"model saved 2 times, last to {tmp_path / 'm-2.pt'} (epoch 2)"
    last = ModelCheckpoint(str(tmp_path / "best-model.pt"))  # Keras's default too: the file holds the last epoch
    _fit(last, val_losses([0.5, 0.2, 0.3]), tmp_path)
    assert last.summary() == (
        f"model saved 3 times, last to {tmp_path / 'best-model.pt'} (epoch 3): it holds the last epoch saved, not "
        "the best; to keep the best, pass save_best_only=True (monitor='val_loss')")
    idle = ModelCheckpoint(str(tmp_path / "x.pt"), save_best_only=True)
    with pytest.warns(UserWarning):
        _fit(idle, [{"loss": 1.0}], tmp_path)
    assert idle.summary() is None


def test_state_dict_round_trips_and_resumes(tmp_path):
    cb = ModelCheckpoint(
        str(tmp_path / "{epoch}-{batch}.pt"), save_freq=3, monitor="loss", save_best_only=True
    )
    _fit(cb, [{"loss": 1.0}], tmp_path, batch_logs=[[{"loss": 0.5}] * 4])
    buffer = io.BytesIO()
    torch.save(cb.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state == {"best": 0.5, "direction": "min", "_batches_seen": 1, "_current_epoch": 0}
    resumed = ModelCheckpoint(
        str(tmp_path / "{epoch}-{batch}.pt"), save_freq=3, monitor="loss", save_best_only=True
    )
    resumed.load_state_dict(state)
    saves = _fit(
        resumed, [{"loss": 1.0}], tmp_path, batch_logs=[[{"loss": 0.6}, {"loss": 0.4}]], initial_epoch=1
    )
    assert saves.paths == ["2-2.pt"]  # the count went on (1 + 2 = 3); 0.6 would not beat 0.5


# --- one real fit ---------------------------------------------------------------------------------------
def test_real_fit_saves_the_best_model(tmp_path):
    x, y = make_regression(n=40)
    model = regressor(
        optimizer=ew.optimizers.SGD(learning_rate=0.9)
    )  # large steps: val_loss goes up and down
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    path = str(tmp_path / "best-model.pt")
    cb = ModelCheckpoint(path, save_best_only=True)
    history = model.fit(x, y, epochs=5, batch_size=10, validation_split=0.25, verbose=0, callbacks=[keep, cb])
    val = history.history["val_loss"]
    best = val.index(min(val))
    assert best != len(val) - 1  # premise: the best epoch is not simply the last one
    assert cb.best == min(val)
    fresh = ew.Model(nn.Linear(3, 1), device="cpu")
    assert fresh.load(path) == {"epoch": best + 1}
    for k, v in fresh.get_weights().items():
        torch.testing.assert_close(v, snapshots[best][k], rtol=0, atol=0)
