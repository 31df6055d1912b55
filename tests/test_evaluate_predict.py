"""evaluate() and predict(): values (E3, P2), return shapes (E4), eval mode and no grad (E2, P4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import classifier, make_classification, make_regression, regressor
from torch import nn

import epochwise as ew


def test_evaluate_values_against_torch():  # E3, ME3
    x, y = make_classification(50)
    model = classifier()
    loss, acc = model.evaluate(x, y, batch_size=16, verbose=0)
    with torch.no_grad():
        logits = model.module(torch.from_numpy(x))
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, torch.from_numpy(y))), rel=1e-5)
    assert acc == pytest.approx(float((logits.argmax(1) == torch.from_numpy(y)).float().mean()))


def test_evaluate_return_forms():  # E4
    x, y = make_regression(12)
    model = regressor(metrics=None)
    value = model.evaluate(x, y, verbose=0)
    assert isinstance(value, float)  # one value -> a bare float
    model = regressor(metrics=["mae", "mse"])
    values = model.evaluate(x, y, verbose=0)
    as_dict = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(as_dict) == ["loss", "mae", "mse"]  # sorted keys
    assert values == [as_dict["loss"], as_dict["mae"], as_dict["mse"]]  # loss first, then compile order
    assert as_dict["loss"] == pytest.approx(as_dict["mse"], rel=1e-6)


def test_evaluate_sample_weight_and_steps():  # E1, E2
    x, y = make_regression(12)
    model = regressor(metrics=None)
    sw = np.zeros(12, dtype="float32")
    sw[:3] = 1
    pred = model.module(torch.from_numpy(x)).detach().numpy()
    loss = model.evaluate(x, y, sample_weight=sw, batch_size=12, verbose=0)
    assert loss == pytest.approx(((pred - y) ** 2)[:3].sum() / 12, rel=1e-5)
    loss = model.evaluate(x, y, batch_size=4, steps=1, verbose=0)
    assert loss == pytest.approx(((pred - y) ** 2)[:4].mean(), rel=1e-5)


def test_eval_mode_dropout_off_and_no_grad():  # E2, P4, tutorial 4
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 64), nn.Dropout(0.5), nn.Linear(64, 3))
    model = ew.Model(net, device="cpu")
    x, _ = make_classification(20)
    a, b = model.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_array_equal(a, b)  # dropout is off in eval mode
    net.eval()
    np.testing.assert_allclose(a, net(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)
    net.train()
    model.predict(x, verbose=0)
    assert net.training  # mode restored


def test_batchnorm_running_stats_untouched_by_evaluate():
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    model = ew.Model(net, device="cpu")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = make_classification(20)
    before = net[1].running_mean.clone()
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert torch.equal(before, net[1].running_mean)
    model.fit(x, y, epochs=1, verbose=0)
    assert not torch.equal(before, net[1].running_mean)


def test_predict_keeps_order_and_partial_batch():  # P2, D3
    x, _ = make_classification(23)
    model = classifier()
    out = model.predict(x, batch_size=5, verbose=0)
    np.testing.assert_allclose(out, model.module(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert out.shape == (23, 3)
    assert model.predict(x, batch_size=5, steps=2, verbose=0).shape == (10, 3)


def test_evaluate_after_fit_differs_from_training_loss():  # X3: two different averages
    x, y = make_classification(64)
    model = classifier(optimizer=ew.optimizers.Adam(learning_rate=0.05))
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.evaluate(x, y, verbose=0)[0] != pytest.approx(history.history["loss"][0], rel=1e-6)
