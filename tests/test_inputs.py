"""Every input kind of F1: arrays, tensors, pandas, tuples and dicts, Datasets, DataLoaders, iterables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import classifier, make_classification
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import epochwise as ew

X, Y = make_classification(24)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, left, right):
        return self.a(left) + self.b(right)


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x), {"half": self.lin(x) / 2}


def fit_ok(model, *args, **kwargs):
    history = model.fit(*args, epochs=2, verbose=0, **kwargs)
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(v) for v in history.history["loss"])
    return history


@pytest.mark.parametrize("kind", ["numpy", "tensor", "pandas", "list-of-rows-as-array"])
def test_array_kinds(kind):
    x, y = {
        "numpy": (X, Y),
        "tensor": (torch.from_numpy(X), torch.from_numpy(Y)),
        "pandas": (pd.DataFrame(X), pd.Series(Y)),
        "list-of-rows-as-array": (np.asarray(X.tolist(), dtype="float32"), Y),
    }[kind]
    fit_ok(classifier(), x, y, batch_size=8, validation_split=0.25)


def test_tuple_and_dict_inputs():  # a tuple is positional, a dict keyword arguments
    right = np.random.default_rng(1).normal(size=(24, 2)).astype("float32")
    model = ew.Model(TwoInputs(), device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fit_ok(model, (X, right), Y, batch_size=8, validation_data=((X, right), Y))
    fit_ok(model, {"left": X, "right": right}, Y, batch_size=8)
    out = model.predict({"left": X, "right": right}, verbose=0)
    assert out.shape == (24, 3)
    expected = model.module(torch.from_numpy(X), torch.from_numpy(right)).detach().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_dataset_is_batched_with_batch_size():
    ds = TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    history = fit_ok(classifier(), ds, batch_size=5)
    assert history.params["steps"] == 5


def test_custom_map_dataset_yields_triples():
    class Weighted(Dataset):
        def __len__(self):
            return 24

        def __getitem__(self, i):
            return torch.from_numpy(X[i]), torch.tensor(Y[i]), torch.tensor(1.0)

    fit_ok(classifier(), Weighted(), batch_size=6)


def test_dataloader_and_validation_loader():
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=6, shuffle=True)
    history = fit_ok(classifier(), loader, validation_data=loader)
    assert history.params["steps"] == 4
    assert "val_accuracy" in history.history


def test_list_of_batches_is_reiterable():
    batches = [(torch.from_numpy(X[i:i + 8]), torch.from_numpy(Y[i:i + 8])) for i in range(0, 24, 8)]
    history = fit_ok(classifier(), batches)
    assert history.params["steps"] == 3


def test_generator_with_steps_per_epoch():  # F1, F13
    def forever():
        while True:
            for i in range(0, 24, 8):
                yield X[i:i + 8], Y[i:i + 8], np.ones(8, dtype="float32")

    history = fit_ok(classifier(), forever(), steps_per_epoch=3)
    assert history.params["steps"] == 3


def test_exhausted_generator_is_a_clear_error():
    gen = ((X[i:i + 8], Y[i:i + 8]) for i in range(0, 24, 8))
    model = classifier()
    with pytest.raises(ValueError, match="generator that is already exhausted"):
        model.fit(gen, epochs=2, verbose=0)


def test_unsized_generator_steps_unknown_then_counted():
    gen = ((X[i:i + 8], Y[i:i + 8]) for i in range(0, 24, 8))
    history = classifier().fit(gen, epochs=1, verbose=0)
    assert history.params["steps"] is None
    assert len(history.history["loss"]) == 1


def test_batch_tuple_of_four_is_rejected():  # F1
    bad = [(X[:8], Y[:8], np.ones(8), np.ones(8))]
    with pytest.raises(ValueError, match="tuple of 4 items"):
        classifier().fit(bad, verbose=0)


def test_evaluate_and_predict_accept_sources():
    model = classifier()
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=7)
    a = model.evaluate(X, Y, return_dict=True, verbose=0)
    b = model.evaluate(loader, return_dict=True, verbose=0)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert a["accuracy"] == pytest.approx(b["accuracy"])
    p1 = model.predict(X, verbose=0)
    p2 = model.predict(loader, verbose=0)  # P3: targets in the batches are ignored
    p3 = model.predict(TensorDataset(torch.from_numpy(X)), batch_size=5, verbose=0)
    np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)  # batch 32 vs 7: other matmul blocking
    np.testing.assert_allclose(p1, p3, rtol=1e-5, atol=1e-6)


def test_predict_structure_of_outputs():  # P2
    model = ew.Model(TwoOutputs(), device="cpu")
    out = model.predict(X, batch_size=5, verbose=0)
    assert isinstance(out, tuple) and isinstance(out[1], dict)
    assert out[0].shape == (24, 3) and out[1]["half"].shape == (24, 3)
    np.testing.assert_allclose(out[1]["half"], out[0] / 2, rtol=1e-6)
    assert isinstance(out[0], np.ndarray)


def test_callable_loss_gets_structured_outputs():
    model = ew.Model(TwoOutputs(), device="cpu")

    def two_part(y_true, y_pred):
        logits, extra = y_pred
        return torch.nn.functional.cross_entropy(logits, y_true) + 0.0 * extra["half"].sum()

    model.compile(optimizer="adam", loss=two_part)
    fit_ok(model, X, Y, batch_size=8)


def test_torch_loss_module_is_called_pred_first():
    model = ew.Model(nn.Linear(4, 3), device="cpu")
    model.compile(optimizer="adam", loss=nn.CrossEntropyLoss(), metrics=["accuracy"])
    history = fit_ok(model, X, Y, batch_size=8)
    assert "accuracy" in history.history


def test_torch_optimizer_instance():
    net = nn.Linear(4, 3)
    model = ew.Model(net, device="cpu")
    model.compile(optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss="sparse_categorical_crossentropy")
    before = net.weight.detach().clone()
    fit_ok(model, X, Y)
    assert not torch.equal(before, net.weight)
    assert model.optimizer.learning_rate == pytest.approx(0.1)
