"""LambdaCallback against LC1-LC2, through the real fit / evaluate / predict.

``Script`` (see ``_scripted.py``), placed first, feeds the chosen logs where a test names the values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _scripted import BATCH, scripted_fit, scripted_model
from conftest import make_regression, regressor

from epochwise.callbacks import CallbackList, LambdaCallback


def test_lc2_each_hook_gets_keras_arguments():
    calls = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: calls.append(("train_begin", logs)),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch, logs)),
        on_train_batch_begin=lambda batch, logs: calls.append(("batch_begin", batch, logs)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch, logs)),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, logs)),
        on_train_end=lambda logs: calls.append(("train_end", logs)),
    )
    scripted_fit([cb], [{"loss": 0.5}], batch_logs=[[{"loss": 0.4}]])
    assert calls == [
        ("train_begin", {}),
        ("epoch_begin", 0, {}),
        ("batch_begin", 0, {}),
        ("batch_end", 0, {"loss": 0.4}),
        ("epoch_end", 0, {"loss": 0.5}),
        ("train_end", {"loss": 0.5}),
    ]


def test_lc2_batch_hooks_receive_logs_by_keyword():  # so the parameter must be named `logs`, as in Keras
    seen = []

    def by_keyword(batch, *, logs):
        seen.append((batch, logs))

    scripted_fit(
        [LambdaCallback(on_train_batch_end=by_keyword)], [{"loss": 1.0}], batch_logs=[[{"loss": 1.0}]]
    )
    assert seen == [(0, {"loss": 1.0})]
    cb = LambdaCallback(on_train_batch_end=lambda b, l: None)  # noqa: E741
    with pytest.raises(TypeError, match="unexpected keyword argument 'logs'"):
        scripted_fit([cb], [{"loss": 1.0}], batch_logs=[[{"loss": 1.0}]])


def test_lc1_other_hooks_by_keyword():
    calls = []
    cb = LambdaCallback(
        on_test_end=lambda logs: calls.append(("test_end", logs)),
        on_batch_end=lambda batch, logs: calls.append(("batch_end", batch)),  # legacy, via on_train_batch_end
        on_predict_batch_end=lambda batch, logs: calls.append(("predict_batch_end", batch, logs)),
    )
    cbs = CallbackList([cb])
    assert (
        cbs.listens("on_test_end") and cbs.listens("on_train_batch_end") and not cbs.listens("on_epoch_end")
    )
    model = scripted_model()
    x = np.arange(3 * BATCH * 2, dtype="float32").reshape(3 * BATCH, 2)
    y = np.zeros((3 * BATCH, 1), "float32")
    with torch.no_grad():
        expected = model.module(torch.from_numpy(x)).numpy()  # the reference: the module called directly
    loss = model.evaluate(x, y, batch_size=BATCH, verbose=0, callbacks=[cb])
    assert calls == [("test_end", {"loss": loss})]
    assert loss == pytest.approx(float((expected**2).mean()), rel=1e-6)  # mse against zeros
    calls.clear()
    scripted_fit([cb], None, epochs=1, batch_logs=[[{"loss": 1.0}] * 4])
    assert calls == [("batch_end", b) for b in range(4)]
    calls.clear()
    out = model.predict(x, batch_size=BATCH, verbose=0, callbacks=[cb])
    assert [c[:2] for c in calls] == [("predict_batch_end", b) for b in range(3)]
    for b, (_, _, logs) in enumerate(calls):
        np.testing.assert_allclose(
            np.asarray(logs["outputs"]), expected[b * BATCH : (b + 1) * BATCH], rtol=1e-6
        )
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_hooks_belong_to_the_instance():
    a = LambdaCallback(on_epoch_end=lambda epoch, logs: None)
    b = LambdaCallback()
    assert "on_epoch_end" in vars(a) and "on_epoch_end" not in vars(b)
    assert not CallbackList([b]).listens("on_epoch_end")


def test_unknown_hook_and_non_callable_are_errors():  # Keras stores any keyword silently
    with pytest.raises(
        TypeError, match=r"on_epoch_ned=, which is not a callback hook. Did you mean 'on_epoch_end'"
    ):
        LambdaCallback(on_epoch_ned=print)
    with pytest.raises(TypeError, match="on_epoch_end must be a function or None"):
        LambdaCallback(on_epoch_end="print")


def test_real_fit():
    x, y = make_regression(n=40)
    model = regressor()
    seen = []
    cb = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, sorted(logs))))
    model.fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[cb])
    assert seen == [(0, ["loss", "mae"]), (1, ["loss", "mae"])]
