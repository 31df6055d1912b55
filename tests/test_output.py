"""What a person reads: the run plan, progress lines (B1-B5) and the no-control-characters stance."""

from __future__ import annotations

import re

import pytest
from conftest import classifier, make_classification

from epochwise.callbacks import progbar_logger
from epochwise.engine import report as _report


def test_run_plan_tutorial_numbers():
    text = _report.run_plan(n_train=55_000, n_val=5_000, batch_size=5_000, steps=11, epochs=100, initial_epoch=0,
                            device="cpu", loss="loss sparse_categorical_crossentropy (from logits)", steps_given=False)
    assert text == ("Train on 55,000 samples, validate on 5,000 | batch 5,000 -> 11 iterations/epoch | "
                    "100 epochs -> 1,100 iterations | cpu | loss sparse_categorical_crossentropy (from logits)")


def test_run_plan_says_the_partial_batch():  # D1: 2,000 at 500 -> 4; 1,437 at 32 -> 45 with 29 left
    text = _report.run_plan(n_train=2_000, n_val=None, batch_size=500, steps=4, epochs=20, initial_epoch=0,
                            device="cpu", loss="loss mse", steps_given=False)
    assert "batch 500 -> 4 iterations/epoch | 20 epochs -> 80 iterations" in text
    assert "\n" not in text
    text = _report.run_plan(n_train=1_437, n_val=None, batch_size=32, steps=45, epochs=2, initial_epoch=0,
                            device="cpu", loss="loss mse", steps_given=False)
    assert "1,437 = 44 x 32 + 29: the last batch of each epoch holds 29 samples" in text


def test_run_plan_initial_epoch():
    text = _report.run_plan(n_train=100, n_val=None, batch_size=10, steps=10, epochs=10, initial_epoch=5,
                            device="cpu", loss="loss mse", steps_given=False)
    assert "epochs 6-10 (5 epochs) -> 50 iterations" in text


def test_run_plan_says_one_in_the_singular():
    text = _report.run_plan(n_train=8, n_val=None, batch_size=8, steps=1, epochs=1, initial_epoch=0,
                            device="cpu", loss="loss mse", steps_given=False)
    assert text == "Train on 8 samples | batch 8 -> 1 iteration/epoch | 1 epoch -> 1 iteration | cpu | loss mse"


def test_an_early_stop_says_how_many_iterations_ran(capsys):
    """The plan promises 17 x 30 = 510 iterations; EarlyStopping ends the run sooner and the last line
    says how many really ran: epochs run (History's length) x 17."""
    import epochwise as ew

    x, y = make_classification(1_079)
    model = classifier()
    stop = ew.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)  # stops after epoch 2
    history = model.fit(x, y, batch_size=64, epochs=30, callbacks=[stop], verbose=2)
    out = capsys.readouterr().out
    assert "17 iterations/epoch | 30 epochs -> 510 iterations" in out
    ran = len(history.epoch) * 17
    assert ran < 510 and f"; {ran} iterations of the 510 planned ran" in out.strip().splitlines()[-1]


def test_fit_prints_plan_and_one_plain_line_per_epoch(capsys):  # B2, B4, and verbose=1 off a terminal
    x, y = make_classification(70)
    classifier().fit(x, y, epochs=2, validation_split=0.2, verbose=1)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\b" not in out and "\r" not in out  # §14: no control characters in logs
    lines = out.strip().splitlines()
    assert lines[0].startswith("Train on 56 samples, validate on 14 | batch 32 -> 2 iterations/epoch")
    assert "(from logits)" in lines[0]
    assert "56 = 1 x 32 + 24" in lines[1]
    assert lines[2] == "Epoch 1/2" and lines[4] == "Epoch 2/2"
    pattern = r"^2/2 - \d+s - \d+(us|ms|s)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4} - val_accuracy: \d\.\d{4} - val_loss: \d\.\d{4}$"
    assert re.match(pattern, lines[3]), lines[3]


def test_no_epoch_header_for_one_epoch(capsys):  # B2
    x, y = make_classification(10)
    classifier().fit(x, y, epochs=1, verbose=2)
    assert "Epoch 1/1" not in capsys.readouterr().out


def test_verbose_zero_is_silent(capsys):  # F5
    x, y = make_classification(10)
    model = classifier()
    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_evaluate_and_predict_lines(capsys):  # B5
    x, y = make_classification(10)
    model = classifier()
    model.evaluate(x, y, batch_size=4)
    model.predict(x, batch_size=4)
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.match(r"^3/3 - \d+s - \d+(us|ms|s)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4}$", lines[0]), lines
    assert re.match(r"^3/3 - \d+s - \d+(us|ms|s)/step$", lines[1]), lines


def test_live_bar_on_a_terminal(capsys, monkeypatch):  # B3, drawn by rich
    monkeypatch.setattr(progbar_logger, "_is_interactive", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    x, y = make_classification(70)
    classifier().fit(x, y, epochs=1, validation_split=0.2, verbose=1)
    out = capsys.readouterr().out
    assert "━" in out
    assert re.search(r"2/2 .*━.* - accuracy: \d\.\d{4} - loss: \d\.\d{4} - val_accuracy", out)


def test_lazy_logs_not_computed_when_nobody_reads_them(monkeypatch):
    from epochwise.engine import loop as _loop

    calls = []
    original = _loop.Tracker.logs

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(_loop.Tracker, "logs", counting)
    x, y = make_classification(64)
    classifier().fit(x, y, batch_size=4, epochs=1, verbose=2)
    assert len(calls) == 1  # the epoch logs only: no per-batch host sync for a plain-line logger


@pytest.mark.parametrize("value,text", [(0.12345, "0.1235"), (0.0001, "1.0000e-04"), (0.0, "0.0000e+00"),
                                        (-0.5, "-0.5000"), (float("nan"), "nan")])
def test_value_format(value, text):  # B3 (and the §14 fix for negatives)
    assert _report.fmt_value(value) == text


@pytest.mark.parametrize("seconds,text", [(0.185, "185ms/step"), (2.4, "2s/step"), (0.0005, "500us/step")])
def test_step_time_format(seconds, text):
    assert _report.fmt_step_time(seconds) == text


@pytest.mark.parametrize("resume_at", [None, 2, 5])
def test_first_nonfinite_batch_is_found_across_chunks_and_a_resume(monkeypatch, resume_at):
    """The end-of-fit NaN note names the first bad batch; per-batch values are kept in chunks (no
    per-step work), and a tracker restored from a backup keeps counting from where it was."""
    import torch

    from epochwise.engine import logs as _logs

    monkeypatch.setattr(_logs, "_CHUNK", 3)
    model = classifier()
    losses = [1.0, 2.0, 3.0, 4.0, float("nan"), 5.0, float("inf"), 6.0]

    def feed(tracker, values):
        for v in values:
            tracker.update(torch.tensor(v), None, None, None, 4)

    tracker = _logs.Tracker(model)
    tracker.track_nonfinite = True
    tracker.reset()
    if resume_at is None:
        feed(tracker, losses)
    else:
        feed(tracker, losses[:resume_at])
        state = tracker.state_dict()
        tracker = _logs.Tracker(model)
        tracker.track_nonfinite = True
        tracker.load_state_dict(state, torch.device("cpu"))
        feed(tracker, losses[resume_at:])
    assert tracker.first_nonfinite_batch() == 4
    tracker.reset()
    feed(tracker, [1.0] * 7)
    assert tracker.first_nonfinite_batch() is None
