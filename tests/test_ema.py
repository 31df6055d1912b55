"""Weight averaging (Keras's use_ema): the update against its closed form, the end-of-fit swap, the
overwrite frequency, the exact resume, and Keras 3's own numbers."""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew
from epochwise.callbacks import Callback

X = np.array([[1, 2], [3, 4], [0.5, -1], [2, 0], [1, 1], [0, 1], [2, 2], [-1, 0]], "float32")
Y = np.array([[1], [2], [0], [1], [0.5], [0.2], [1], [-1]], "float32")
W0, B0, LR = np.array([[0.5, -0.3]]), np.array([0.1]), 0.1


def linear_model(**opt_kwargs) -> ew.Model:
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(W0))
        lin.bias.copy_(torch.tensor(B0))
    model = ew.Model(lin, device="cpu")
    model.compile(optimizer=ew.optimizers.SGD(LR, use_ema=True, **opt_kwargs), loss="mse")
    return model


def sgd_steps(batches: list[tuple[np.ndarray, np.ndarray]], momentum: float, every: int | None = None):
    """Plain SGD on the MSE, by hand in float64, with Keras's average: the first update sets it to the
    weights, then ``avg = m * avg + (1 - m) * w``; every ``every`` updates the weights become the average.
    Returns the weights after each update and the final average."""
    w, b = W0.astype("float64"), B0.astype("float64")
    avg = None
    raw = []
    for t, (x, y) in enumerate(batches, start=1):
        err = x.astype("float64") @ w.T + b - y  # (n, 1)
        w = w - LR * 2 / len(x) * (err.T @ x)
        b = b - LR * 2 / len(x) * err.sum(0)
        avg = (w, b) if avg is None else (momentum * avg[0] + (1 - momentum) * w, momentum * avg[1] + (1 - momentum) * b)
        if every and t % every == 0:
            w, b = avg
        raw.append((w, b))
    return raw, avg


def weights(model: ew.Model) -> tuple[np.ndarray, np.ndarray]:
    return model.module.weight.detach().double().numpy(), model.module.bias.detach().double().numpy()


class RecordWeights(Callback):
    def __init__(self):
        super().__init__()
        self.after_batch, self.averages = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.after_batch.append(tuple(p.detach().double().numpy().copy() for p in self.model.module.parameters()))
        self.averages.append([a.clone() for a in self.model.optimizer.average])


BATCHES = [(X[:4], Y[:4]), (X[4:], Y[4:])] * 3  # batch_size=4, shuffle=False, 3 epochs


def test_average_follows_the_closed_form_and_replaces_the_weights_at_the_end_of_fit():
    model = linear_model(ema_momentum=0.8)
    record = RecordWeights()
    model.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[record])
    raw, (avg_w, avg_b) = sgd_steps(BATCHES, 0.8)
    for (w, b), (hw, hb) in zip(record.after_batch, raw):  # during training: the raw SGD weights
        np.testing.assert_allclose(w, hw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, hb, rtol=1e-5, atol=1e-6)
    w, b = weights(model)  # after fit: the averages
    np.testing.assert_allclose(w, avg_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, avg_b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(w, raw[-1][0], atol=1e-3)  # the swap did something
    assert model.optimizer.iterations == 6
    expected = float(np.mean((X.astype("float64") @ avg_w.T + avg_b - Y) ** 2))
    assert model.evaluate(X, Y, verbose=0) == pytest.approx(expected, rel=1e-5)  # evaluate uses the averages


def test_validation_during_fit_sees_the_raw_weights():
    model = linear_model()
    history = model.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=(X, Y))
    raw, avg = sgd_steps(BATCHES[:4], 0.99)
    w, b = raw[-1]
    on_raw = float(np.mean((X.astype("float64") @ w.T + b - Y) ** 2))
    on_avg = float(np.mean((X.astype("float64") @ avg[0].T + avg[1] - Y) ** 2))
    assert history.history["val_loss"][-1] == pytest.approx(on_raw, rel=1e-5)
    assert model.evaluate(X, Y, verbose=0) == pytest.approx(on_avg, rel=1e-5)
    assert on_raw != pytest.approx(on_avg, rel=1e-2)


def test_overwrite_frequency_puts_the_average_into_the_weights_every_n_updates():
    model = linear_model(ema_momentum=0.5, ema_overwrite_frequency=2)
    record = RecordWeights()
    model.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[record])
    raw, _ = sgd_steps(BATCHES, 0.5, every=2)
    for (w, b), (hw, hb) in zip(record.after_batch, raw):
        np.testing.assert_allclose(w, hw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, hb, rtol=1e-5, atol=1e-6)
    for t, (w, average) in enumerate(zip(record.after_batch, record.averages), start=1):
        same = np.array_equal(w[0], average[0].double().numpy())
        assert same == (t == 1 or t % 2 == 0), t  # the first update sets the average; 2, 4, 6 overwrite


def test_train_on_batch_updates_the_average_and_finalize_swaps_it_in():
    model = linear_model(ema_momentum=0.8)
    for x, y in BATCHES[:3]:
        model.train_on_batch(x, y)
    raw, (avg_w, _) = sgd_steps(BATCHES[:3], 0.8)
    np.testing.assert_allclose(weights(model)[0], raw[-1][0], rtol=1e-5, atol=1e-6)  # not swapped yet
    model.optimizer.finalize_variable_values()
    np.testing.assert_allclose(weights(model)[0], avg_w, rtol=1e-5, atol=1e-6)


def test_average_is_in_the_state_dict_and_loads_back():
    a = linear_model(ema_momentum=0.8)
    a.fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    state = a.optimizer.state_dict()
    assert [t.shape for t in state["ema"]] == [(1, 2), (1,)]
    b = linear_model(ema_momentum=0.8)
    b.optimizer.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(a.optimizer.average, b.optimizer.average))
    plain = ew.optimizers.SGD()  # an optimizer without use_ema keeps no average and writes none
    ew.Model(nn.Linear(2, 1), device="cpu").compile(optimizer=plain, loss="mse")
    assert "ema" not in plain.state_dict() and plain.average is None


class Crash(Callback):
    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("crash")


def _resumable_run(folder, crash_at=None):
    torch.manual_seed(0)
    model = ew.Model(nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 1)), device="cpu", seed=1)
    model.compile(optimizer=ew.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.7, ema_overwrite_frequency=3),
                  loss="mse")
    callbacks = [ew.callbacks.BackupAndRestore(folder, save_freq=1)] + ([Crash(crash_at)] if crash_at else [])
    history = model.fit(X, Y, batch_size=3, epochs=3, verbose=0, callbacks=callbacks)
    return model, history


@pytest.mark.parametrize("crash_at", [2, 4])
def test_resume_through_backup_and_restore_is_exact(tmp_path, crash_at):  # BR2
    reference, ref_history = _resumable_run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="crash"):
        _resumable_run(tmp_path / "b", crash_at=crash_at)
    resumed, history = _resumable_run(tmp_path / "b")
    assert history.history == ref_history.history
    for p, q in zip(reference.module.parameters(), resumed.module.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(reference.optimizer.average, resumed.optimizer.average):
        assert torch.equal(p, q)


def test_run_plan_says_what_the_averaging_does(capsys):
    linear_model(ema_momentum=0.9).fit(X, Y, batch_size=4, epochs=1, verbose=2)
    out = capsys.readouterr().out
    assert "weights averaged (EMA, momentum 0.9): training and validation use the raw weights; at the end of " \
           "fit the module gets the averages" in out
    linear_model(ema_overwrite_frequency=5).fit(X, Y, batch_size=4, epochs=1, verbose=2)
    assert "every 5 updates the weights are overwritten by the averages" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, message", [
    ({"ema_momentum": 1.0}, r"ema_momentum` must be a number in \[0, 1\)"),
    ({"ema_momentum": -0.1}, r"ema_momentum` must be a number in \[0, 1\)"),
    ({"ema_momentum": "0.9"}, r"ema_momentum"),
    ({"ema_overwrite_frequency": 0}, r"ema_overwrite_frequency` must be a positive int"),
    ({"ema_overwrite_frequency": 2.5}, r"ema_overwrite_frequency` must be a positive int"),
    ({"use_ema": "yes"}, r"use_ema` must be True or False"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    for cls in (ew.optimizers.Adam, ew.optimizers.SGD, ew.optimizers.AdamW):
        with pytest.raises(ValueError, match=message):
            cls(**kwargs)


def test_config_round_trip_keeps_the_averaging():
    opt = ew.optimizers.Nadam(use_ema=True, ema_momentum=0.95, ema_overwrite_frequency=10)
    again = ew.optimizers.Nadam.from_config(opt.get_config())
    assert (again.use_ema, again.ema_momentum, again.ema_overwrite_frequency) == (True, 0.95, 10)
    assert "use_ema" not in repr(ew.optimizers.Adam())  # the default stays out of the repr


KERAS_SCRIPT = """
import json, sys
import numpy as np, keras
x, y, w0, b0, lr, momentum, frequencies = json.loads(sys.argv[1])
out = []
for every in frequencies:
    m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    m.layers[0].set_weights([np.array(w0, "float32").T, np.array(b0, "float32")])
    opt = keras.optimizers.SGD(lr, use_ema=True, ema_momentum=momentum, ema_overwrite_frequency=every)
    m.compile(optimizer=opt, loss="mse")
    m.fit(np.array(x, "float32"), np.array(y, "float32"), batch_size=4, epochs=3, shuffle=False, verbose=0)
    out.append([w.tolist() for w in m.layers[0].get_weights()])
print(json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="Keras 3 is not installed")
def test_same_weights_as_keras_3():
    """Keras 3 itself (torch backend, in a subprocess: it takes ~15 s to import) on the same data and start."""
    frequencies = [None, 4]
    args = json.dumps([X.tolist(), Y.tolist(), W0.tolist(), B0.tolist(), LR, 0.8, frequencies])
    env = dict(os.environ, KERAS_BACKEND="torch")
    done = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for every, (kernel, bias) in zip(frequencies, results):
        model = linear_model(ema_momentum=0.8, ema_overwrite_frequency=every)
        model.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0)
        w, b = weights(model)
        np.testing.assert_allclose(w, np.array(kernel).T, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b, np.array(bias), rtol=1e-6, atol=1e-7)


FSDP_SCRIPT = """
import json, sys
import numpy as np, torch
from torch import nn
import epochwise as ew

x = np.random.default_rng(0).normal(size=(48, 4)).astype("float32")
y = (np.arange(48) % 3).astype("int64")
torch.manual_seed(0)
model = ew.Model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), device="cpu")
opt = ew.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=3)
model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", strategy=sys.argv[2])
world = ew.distributed.world_size()
model.fit(x, y, batch_size=16 // world, epochs=2, shuffle=False, verbose=0, validation_data=(x[:10], y[:10]))
result = {"evaluate": model.evaluate(x, y, verbose=0), "ema": [a.tolist() for a in opt.state_dict()["ema"]],
          "weights": {k: v.tolist() for k, v in model.get_weights().items()}}
json.dump(result, open(f"{sys.argv[1]}.{ew.distributed.rank()}.json", "w"))
"""


def test_fsdp_shards_average_and_swap_like_one_process(tmp_path, monkeypatch):
    """Each rank averages its shard; after the swap, evaluate reads the averages (not the full parameters
    gathered for the last validation)."""
    script = tmp_path / "fsdp_ema.py"
    script.write_text(FSDP_SCRIPT)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(script), str(tmp_path / "two"), "fsdp"], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "one"), "ddp"])
    runpy.run_path(str(script), run_name="__main__")  # the same script in this one process
    single = json.loads((tmp_path / "one.0.json").read_text())
    for rank in (0, 1):
        sharded = json.loads((tmp_path / f"two.{rank}.json").read_text())
        assert sharded["evaluate"] == pytest.approx(single["evaluate"], rel=1e-5)
        for a, b in zip(sharded["ema"], single["ema"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for k, v in single["weights"].items():
            np.testing.assert_allclose(sharded["weights"][k], v, rtol=1e-5, atol=1e-6)
