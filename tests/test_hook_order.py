"""The golden order of every hook in fit, evaluate and predict (L1, L2, E5, P4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import Recorder, classifier, make_classification


def expected_fit(epochs, batches, val_batches, *, stop=None):
    """L1 as a list: stop=(epoch, batch) ends the run after that batch (L2)."""
    out = [("on_train_begin",)]
    for e in epochs:
        out.append(("on_epoch_begin", e))
        for b in range(batches):
            out += [("on_train_batch_begin", b), ("on_train_batch_end", b)]
            if stop == (e, b):
                break
        if val_batches:
            out.append(("on_test_begin",))
            for b in range(val_batches):
                out += [("on_test_batch_begin", b), ("on_test_batch_end", b)]
            out.append(("on_test_end",))
        out.append(("on_epoch_end", e))
        if stop is not None and stop[0] == e:
            break
    out.append(("on_train_end",))
    return out


def test_fit_order_with_validation():  # L1
    x, y = make_classification(10)
    xv, yv = make_classification(5, seed=1)
    rec = Recorder()
    classifier().fit(x, y, batch_size=4, epochs=2, validation_data=(xv, yv), callbacks=[rec], verbose=0)
    assert rec.calls == expected_fit([0, 1], 3, 2)


def test_fit_order_mid_epoch_stop():  # L2, X2: the stopped epoch still validates and ends
    x, y = make_classification(10)
    xv, yv = make_classification(5, seed=1)
    rec = Recorder(stop_at=("on_train_batch_end", 1, 1))
    history = classifier().fit(x, y, batch_size=4, epochs=4, validation_data=(xv, yv), callbacks=[rec], verbose=0)
    assert rec.calls == expected_fit([0, 1, 2, 3], 3, 2, stop=(1, 1))
    assert history.epoch == [0, 1]
    assert len(history.history["val_loss"]) == 2


def test_fit_order_initial_epoch():  # F4, F12, H3
    x, y = make_classification(8)
    rec = Recorder()
    history = classifier().fit(x, y, batch_size=4, epochs=4, initial_epoch=2, callbacks=[rec], verbose=0)
    assert rec.calls == expected_fit([2, 3], 2, 0)
    assert history.epoch == [2, 3]


def test_no_epoch_runs_when_epochs_le_initial_epoch():  # F4
    x, y = make_classification(8)
    rec = Recorder()
    history = classifier().fit(x, y, epochs=2, initial_epoch=2, callbacks=[rec], verbose=0)
    assert rec.calls == [("on_train_begin",), ("on_train_end",)]
    assert rec.logs[-1][2] == {}
    assert history.history == {} and history.epoch == []


def test_stop_in_train_begin_still_runs_one_batch():  # L2
    class StopAtBegin(Recorder):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.model.stop_training = True

    x, y = make_classification(12)
    rec = StopAtBegin()
    history = classifier().fit(x, y, batch_size=4, epochs=3, callbacks=[rec], verbose=0)
    assert rec.calls == expected_fit([0], 3, 0, stop=(0, 0))
    assert history.epoch == [0]


def test_evaluate_and_predict_order():  # E5, P4
    x, y = make_classification(10)
    model = classifier()
    rec = Recorder()
    model.evaluate(x, y, batch_size=4, callbacks=[rec], verbose=0)
    assert rec.calls == [("on_test_begin",)] + [
        c for b in range(3) for c in (("on_test_batch_begin", b), ("on_test_batch_end", b))
    ] + [("on_test_end",)]
    rec = Recorder()
    model.predict(x, batch_size=4, callbacks=[rec], verbose=0)
    assert rec.calls == [("on_predict_begin",)] + [
        c for b in range(3) for c in (("on_predict_batch_begin", b), ("on_predict_batch_end", b))
    ] + [("on_predict_end",)]
    outputs = [logs["outputs"] for hook, _, logs in rec.logs if hook == "on_predict_batch_end"]  # G9
    assert [len(o) for o in outputs] == [4, 4, 2]


def test_logs_dicts():  # G1-G4, G8
    x, y = make_classification(10)
    xv, yv = make_classification(5, seed=1)
    rec = Recorder()
    classifier().fit(x, y, batch_size=4, epochs=1, validation_data=(xv, yv), callbacks=[rec], verbose=0)
    by_hook = {}
    for hook, _index, logs in rec.logs:
        by_hook.setdefault(hook, []).append(logs)
    for hook in ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_test_begin", "on_test_batch_begin"):
        assert all(logs == {} for logs in by_hook[hook])  # G1
    epoch_logs = by_hook["on_epoch_end"][0]
    assert list(epoch_logs) == ["accuracy", "loss", "val_accuracy", "val_loss"]  # G2 sorted, G4 val_ prefix
    assert all(type(v) is float for v in epoch_logs.values())
    assert list(by_hook["on_test_end"][0]) == ["accuracy", "loss"]  # G4 unprefixed
    assert by_hook["on_test_end"][0]["loss"] == pytest.approx(epoch_logs["val_loss"])
    assert by_hook["on_train_batch_end"][-1]["loss"] == pytest.approx(epoch_logs["loss"])  # G4 running value
    assert by_hook["on_train_end"][0] == epoch_logs  # G8


def test_batch_logs_are_running_means_weighted_by_batch_size():  # G3, LO5, D4
    x, y = make_classification(10)
    model = classifier(optimizer="sgd")
    model.optimizer.learning_rate = 0.0  # no update: each batch loss can be recomputed afterwards
    rec = Recorder()
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, callbacks=[rec], verbose=0)
    per_batch = [model.evaluate(x[s:s + 4], y[s:s + 4], verbose=0, return_dict=True)["loss"] for s in (0, 4, 8)]
    sizes = [4, 4, 2]
    logged = [logs["loss"] for hook, _, logs in rec.logs if hook == "on_train_batch_end"]
    for k in range(3):
        running = sum(s * v for s, v in zip(sizes[:k + 1], per_batch[:k + 1])) / sum(sizes[:k + 1])
        assert logged[k] == pytest.approx(running, rel=1e-5)
    assert math.isclose(logged[0], per_batch[0], rel_tol=1e-5)


def test_history_and_progbar_come_last(capsys):  # F6, G7
    class AddKey(Recorder):
        def on_epoch_end(self, epoch, logs=None):
            logs["custom"] = 1.5

    x, y = make_classification(8)
    model = classifier()
    history = model.fit(x, y, epochs=2, callbacks=[AddKey()], verbose=2)
    assert history.history["custom"] == [1.5, 1.5]
    assert "custom: 1.5000" in capsys.readouterr().out
    assert model.history is history  # H1


def test_module_mode_restored_after_fit():  # §14 stance on L4
    x, y = make_classification(8)
    model = classifier()
    model.module.train()
    model.fit(x, y, epochs=1, verbose=0)
    assert model.module.training
    model.module.eval()
    model.fit(x, y, epochs=1, validation_split=0.25, verbose=0)
    assert not model.module.training


def test_training_mode_inside_epoch_and_eval_in_validation():  # L1.3.3, L1.3.6, L4
    seen = []

    class Modes(Recorder):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(("train", self.model.module.training))

        def on_test_batch_end(self, batch, logs=None):
            seen.append(("val", self.model.module.training))

    x, y = make_classification(8)
    classifier().fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), callbacks=[Modes()], verbose=0)
    assert seen == [("train", True), ("train", True), ("val", False), ("val", False)]


def test_validation_freq_epochs():  # F16, H2
    x, y = make_classification(8)
    history = classifier().fit(x, y, epochs=4, validation_data=(x, y), validation_freq=2, verbose=0)
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2
    history = classifier().fit(x, y, epochs=4, validation_data=(x, y), validation_freq=[1, 4], verbose=0)
    assert len(history.history["val_loss"]) == 2


def test_evaluate_resets_metrics_each_call():  # ME4, E2
    x, y = make_classification(12)
    model = classifier()
    a = model.evaluate(x, y, return_dict=True, verbose=0)
    b = model.evaluate(x, y, return_dict=True, verbose=0)
    assert a == b
    assert np.isfinite(a["loss"])


class FitMoments(Recorder):
    """Records fit's own moments too: resume_state, after_train_batch, after_epoch, on_interrupt,
    on_exception (the hooks BackupAndRestore and CSVLogger are built on)."""

    def resume_state(self):
        self.calls.append(("resume_state",))
        return None

    def after_train_batch(self, batch):
        self.calls.append(("after_train_batch", batch))

    def after_epoch(self, epoch):
        self.calls.append(("after_epoch", epoch))

    def on_interrupt(self, signum):
        self.calls.append(("on_interrupt", signum))

    def on_exception(self, error):
        self.calls.append(("on_exception", type(error).__name__))


def _with_moments(calls):
    out = [("resume_state",)]
    for call in calls:
        out.append(call)
        if call[0] == "on_train_batch_end":
            out.append(("after_train_batch", call[1]))
        elif call[0] == "on_epoch_end":
            out.append(("after_epoch", call[1]))
    return out


def test_fit_moments_follow_every_batch_and_epoch_end():  # L1 with fit's own moments
    x, y = make_classification(10)
    xv, yv = make_classification(5, seed=1)
    rec = FitMoments()
    classifier().fit(x, y, batch_size=4, epochs=2, validation_data=(xv, yv), callbacks=[rec], verbose=0)
    assert rec.calls == _with_moments(expected_fit([0, 1], 3, 2))


def test_an_exception_reaches_on_exception_and_skips_on_train_end():  # L3
    x, y = make_classification(12)
    rec = FitMoments()

    class Boom(Recorder):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        classifier().fit(x, y, batch_size=4, epochs=2, callbacks=[rec, Boom()], verbose=0)
    assert rec.calls[-1] == ("on_exception", "RuntimeError")
    assert ("on_train_end",) not in rec.calls and ("after_train_batch", 1) not in rec.calls


def test_a_signal_calls_on_interrupt_before_on_train_end():  # Ctrl-C: the batch ends, then the run
    import os
    import signal

    x, y = make_classification(12)
    rec = FitMoments()

    class CtrlC(Recorder):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        classifier().fit(x, y, batch_size=4, epochs=2, callbacks=[CtrlC(), rec], verbose=0)
    tail = rec.calls[rec.calls.index(("on_train_batch_end", 0)):]
    assert tail == [("on_train_batch_end", 0), ("after_train_batch", 0), ("on_interrupt", signal.SIGINT),
                    ("on_train_end",)]
