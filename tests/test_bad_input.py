"""The bad-input catalogue: every wrong input gets a clear error before the first training step.

Add a row to CASES for each new check: (id, function of a fresh compiled model, exception, regex the
message must match). Each fit case also asserts that no weight changed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import classifier, make_classification
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import epochwise as ew

X, Y = make_classification(20)
LOADER = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=4)


def x_with_nan():
    x = X.copy()
    x[3, 1] = np.nan
    return x


CASES = [
    ("batch_size zero", lambda m: m.fit(X, Y, batch_size=0), ValueError, r"batch_size must be a positive integer"),
    ("batch_size negative", lambda m: m.fit(X, Y, batch_size=-4), ValueError, r"batch_size"),
    ("batch_size float", lambda m: m.fit(X, Y, batch_size=3.5), ValueError, r"batch_size"),
    ("epochs negative", lambda m: m.fit(X, Y, epochs=-1), ValueError, r"epochs must be an integer >= 0"),
    ("initial_epoch negative", lambda m: m.fit(X, Y, initial_epoch=-1), ValueError, r"initial_epoch"),
    ("steps_per_epoch zero", lambda m: m.fit(X, Y, steps_per_epoch=0), ValueError, r"steps_per_epoch"),
    ("x/y length mismatch", lambda m: m.fit(X, Y[:-3]), ValueError, r"cardinality is ambiguous.*x: \[20\].*y: \[17\]"),
    ("x missing", lambda m: m.fit(None, Y), ValueError, r"needs training data"),
    ("y missing", lambda m: m.fit(X), ValueError, r"no y"),
    ("validation_split above 1", lambda m: m.fit(X, Y, validation_split=1.5), ValueError, r"validation_split.*between 0 and 1"),
    ("validation_split negative", lambda m: m.fit(X, Y, validation_split=-0.2), ValueError, r"validation_split"),
    ("validation_split one", lambda m: m.fit(X, Y, validation_split=1.0), ValueError, r"validation_split"),
    ("validation_split empty side", lambda m: m.fit(X[:10], Y[:10], validation_split=0.9), ValueError,
     r"leaves an empty side.*train 0"),  # F7: n=10, s=0.9
    ("validation_split with DataLoader", lambda m: m.fit(LOADER, validation_split=0.2), ValueError,
     r"validation_split needs array input"),
    ("y with DataLoader", lambda m: m.fit(LOADER, Y), ValueError, r"y cannot be given separately.*\(x, y, sample_weight\)"),
    ("sample_weight with DataLoader", lambda m: m.fit(LOADER, sample_weight=np.ones(20)), ValueError,
     r"sample_weight cannot be given separately"),
    ("class_weight with DataLoader", lambda m: m.fit(LOADER, class_weight={0: 1.0}), ValueError, r"class_weight"),
    ("class_weight and sample_weight", lambda m: m.fit(X, Y, class_weight={0: 2.0}, sample_weight=np.ones(20)),
     ValueError, r"class_weight or sample_weight, not both"),
    ("class_weight not a dict", lambda m: m.fit(X, Y, class_weight=[1, 2, 3]), ValueError, r"class_weight must be a dict"),
    ("class_weight bad key", lambda m: m.fit(X, Y, class_weight={"cat": 2.0}), ValueError, r"class_weight keys"),
    ("validation_freq tuple", lambda m: m.fit(X, Y, validation_split=0.2, validation_freq=(1, 2)), ValueError,
     r"validation_freq"),
    ("validation_freq zero", lambda m: m.fit(X, Y, validation_freq=0), ValueError, r"validation_freq"),
    ("validation_data of 4", lambda m: m.fit(X, Y, validation_data=(X, Y, Y, Y)), ValueError,
     r"\(x, y\) or \(x, y, sample_weight\)"),
    ("validation_data without y", lambda m: m.fit(X, Y, validation_data=X), ValueError, r"no targets"),
    ("shuffle string", lambda m: m.fit(X, Y, shuffle="yes"), ValueError, r"shuffle must be True, False or 'batch'"),
    ("verbose 3", lambda m: m.fit(X, Y, verbose=3), ValueError, r"verbose must be"),
    ("labels out of range", lambda m: m.fit(X, np.where(Y == 0, 12, Y)), ValueError, r"12"),
    ("negative labels", lambda m: m.fit(X, np.where(Y == 0, -1, Y)), ValueError, r"-1"),
    ("one-hot to sparse loss", lambda m: m.fit(X, np.eye(3, dtype="float32")[Y]), ValueError, r"categorical_crossentropy"),
    ("NaN in x", lambda m: m.fit(x_with_nan(), Y), ValueError, r"x contains 1 NaN or inf.*check_finite=False"),
    ("NaN in validation data", lambda m: m.fit(X, Y, validation_data=(x_with_nan(), Y)), ValueError, r"NaN"),
    ("object array", lambda m: m.fit(np.array([object()] * 20), Y), TypeError, r"dtype=object"),
    ("callback not a Callback", lambda m: m.fit(X, Y, callbacks=[print]), TypeError, r"not an epochwise.callbacks.Callback"),
    ("callback class not instance", lambda m: m.fit(X, Y, callbacks=[ew.callbacks.History]), TypeError,
     r"pass an instance"),
    ("evaluate class_weight", lambda m: m.evaluate(X, Y, class_weight={0: 1}), ValueError, r"training only"),
    ("evaluate y with DataLoader", lambda m: m.evaluate(LOADER, Y), ValueError, r"y cannot be given separately"),
    ("predict batch_size", lambda m: m.predict(X, batch_size=0), ValueError, r"batch_size"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case):
    _, call, exc, pattern = case
    model = classifier()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    with pytest.raises(exc, match=pattern):
        call(model)
    after = model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights changed before the error"


def test_fit_before_compile():  # F17
    model = ew.Model(nn.Linear(4, 3), device="cpu")
    with pytest.raises(ValueError, match=r"compile\(optimizer=\.\.\., loss=\.\.\.\) before model\.fit"):
        model.fit(X, Y)
    with pytest.raises(ValueError, match="before model.evaluate"):
        model.evaluate(X, Y)


COMPILE_CASES = [
    ("unknown loss", {"loss": "sparse_categorical_crossentropi"}, ValueError, r"sparse_categorical_crossentropy"),
    ("unknown metric", {"loss": "mse", "metrics": ["acuracy"]}, ValueError, r"accuracy"),
    ("unknown optimizer", {"optimizer": "adm", "loss": "mse"}, ValueError, r"adam"),
    ("optimizer class", {"optimizer": torch.optim.Adam, "loss": "mse"}, TypeError, r"not an optimizer: create it"),
    ("missing loss", {"optimizer": "adam"}, ValueError, r"needs a loss"),
    ("foreign torch optimizer", {"optimizer": torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), "loss": "mse"},
     ValueError, r"none of this module's parameters"),
]


@pytest.mark.parametrize("case", COMPILE_CASES, ids=[c[0] for c in COMPILE_CASES])
def test_bad_compile(case):
    _, kwargs, exc, pattern = case
    model = ew.Model(nn.Linear(4, 3), device="cpu")
    with pytest.raises(exc, match=pattern):
        model.compile(**kwargs)


def test_output_shape_does_not_fit_loss():
    model = ew.Model(nn.Linear(4, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    before = model.module.weight.detach().clone()
    with pytest.raises(ValueError, match=r"shape"):
        model.fit(X, np.ones((20, 3), dtype="float32"))
    assert torch.equal(before, model.module.weight)


def test_categorical_loss_with_integer_labels():
    model = ew.Model(nn.Linear(4, 3), device="cpu")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        model.fit(X, Y)


def test_bad_module_and_device():
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        ew.Model("not a module")
    with pytest.raises(ValueError, match="device="):
        ew.Model(nn.Linear(2, 2), device="gpu9")


def test_check_finite_opt_out_trains():
    model = classifier()
    x = x_with_nan()
    history = model.fit(x, Y, epochs=1, check_finite=False, verbose=0)
    assert np.isnan(history.history["loss"][0])


@pytest.mark.parametrize(
    "values, finite",
    [([1.0, 2.0], True), ([1.0, float("nan")], False), ([float("inf"), 1.0], False), ([float("-inf")], False),
     ([float("inf"), float("-inf")], False), ([3e38, 3e38, -1.0], True), ([], True)],
)  # fmt: skip
def test_finiteness_check_is_exact(values, finite):
    """The fast sum test never lets a bad value through, and a sum that overflows is not called bad."""
    from epochwise.data.checks import all_finite

    for dtype in (torch.float32, torch.float16, torch.float64):
        big = {torch.float32: 3e38, torch.float16: 6e4, torch.float64: 1.7e308}[dtype]  # the sum overflows
        t = torch.tensor([big if v == 3e38 else v for v in values], dtype=dtype)
        assert all_finite(t) is finite, (values, dtype)
