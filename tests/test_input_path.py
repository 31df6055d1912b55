"""One input path: training data, validation_data / validation_split, evaluate and predict share one
preparation and one set of checks, run before the first training step; steps_per_epoch at epoch ends."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import classifier, make_classification
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import epochwise as ew
from epochwise.callbacks import Callback

X, Y = make_classification(20)  # 3 classes


class Batches(Callback):
    """Training batches run in each epoch."""

    def __init__(self):
        super().__init__()
        self.per_epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self.per_epoch.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.per_epoch[-1] += 1


def loader(x, y, batch_size=5, **kwargs):
    return DataLoader(TensorDataset(torch.as_tensor(x), torch.as_tensor(y)), batch_size=batch_size, **kwargs)


def fails_before_training(call, pattern, model=None):
    model = model or classifier()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    counter = Batches()
    with pytest.raises(ValueError, match=pattern) as info:
        call(model, [counter])
    assert sum(counter.per_epoch) == 0, "a training step ran before the error"
    after = model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights changed before the error"
    return info.value


def with_label(y, index, value, dtype=None):
    y = y.astype(dtype or y.dtype)
    y[index] = value
    return y


# --- validation data: the checks of the training data, before the first step -------------------------
BAD_LABELS = [
    ("validation_data", lambda y: {"validation_data": (X, y)}, r"validation_data\[1\]: "),
    ("validation_split", lambda y: {"validation_split": 0.2, "_y": y}, r"the last 4 samples of y used by validation_split: "),
    ("validation loader", lambda y: {"validation_data": loader(X, y)}, r"the first batch of validation_data: "),
]


def fit_with(kwargs, callbacks, model):
    kwargs = dict(kwargs)
    y = kwargs.pop("_y", Y)
    return model.fit(X, y, batch_size=5, epochs=2, callbacks=callbacks, verbose=0, **kwargs)


@pytest.mark.parametrize("where, make, prefix", BAD_LABELS, ids=[c[0] for c in BAD_LABELS])
def test_validation_labels_out_of_range_fail_before_training(where, make, prefix):
    bad = make(with_label(Y, -1 if where == "validation_split" else 2, 3))
    err = fails_before_training(lambda m, cbs: fit_with(bad, cbs, m),
                                prefix + r"sparse_categorical_crossentropy needs integer class ids in \[0, 3\).*"
                                         r"out-of-range values \(min \d, max 3\)")
    assert not isinstance(err, IndexError)


@pytest.mark.parametrize("where, make, prefix", BAD_LABELS, ids=[c[0] for c in BAD_LABELS])
def test_validation_labels_not_integers_fail_before_training(where, make, prefix):
    bad = make(with_label(Y, -1 if where == "validation_split" else 2, 1.5, "float32"))
    if where == "validation_split":  # the training part keeps integer-valued float labels, which are fine
        assert float(bad["_y"][0]) == float(Y[0])
    fails_before_training(lambda m, cbs: fit_with(bad, cbs, m), prefix + r"sparse_categorical_crossentropy needs integer class ids in \[0, 3\).*non-integer values")


def test_validation_one_hot_targets_for_sparse_loss_fail_before_training():
    one_hot = np.eye(3, dtype="float32")[Y]
    fails_before_training(lambda m, cbs: m.fit(X, Y, validation_data=(X, one_hot), callbacks=cbs, verbose=0),
                          r"validation_data\[1\]: sparse_categorical_crossentropy got one-hot targets")


def x_nan(row):
    x = X.copy()
    x[row, 1] = np.nan
    return x


@pytest.mark.parametrize(
    "kwargs, pattern",
    [({"x": x_nan(18), "validation_split": 0.2}, r"the last 4 samples of x used by validation_split contains 1 NaN"),
     ({"validation_data": (x_nan(3), Y)}, r"validation_data\[0\] contains 1 NaN"),
     ({"validation_data": loader(x_nan(3), Y)}, r"the inputs of the first batch of validation_data contains 1 NaN"),
     ({"validation_data": (X, with_label(Y, 0, np.nan, "float32"))}, r"validation_data\[1\] contains 1 NaN")],
    ids=["split tail", "arrays", "loader", "targets"],
)  # fmt: skip
def test_nan_in_validation_data_fails_before_training(kwargs, pattern):
    kwargs = {"x": X, **kwargs}
    fails_before_training(lambda m, cbs: m.fit(y=Y, epochs=1, callbacks=cbs, verbose=0, **kwargs),
                          pattern + r".*fit\(\.\.\., check_finite=False\)")


def test_check_finite_false_lets_nan_validation_through():
    history = classifier().fit(x_nan(18), Y, validation_split=0.2, epochs=1, check_finite=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])  # the NaN row is in the validation tail only
    assert np.isnan(history.history["val_loss"][0])


@pytest.mark.parametrize(
    "validation_data, pattern",
    [((X[:0], Y[:0]), r"validation_data\[0\] holds 0 samples"),
     (loader(X[:0], Y[:0]), r"validation_data yielded no batches"),
     ([], r"validation_data yielded no batches")],
    ids=["arrays", "loader", "empty list"],
)  # fmt: skip
def test_empty_validation_data_fails_before_training(validation_data, pattern):
    fails_before_training(
        lambda m, cbs: m.fit(X, Y, epochs=2, validation_data=validation_data, callbacks=cbs, verbose=0),
        pattern + r".*leave validation_data out")


def test_validation_list_of_batches_is_a_source():
    batches = [(X[:10], Y[:10]), (X[10:], Y[10:])]
    model = classifier()
    history = model.fit(X, Y, epochs=1, validation_data=batches, verbose=0)
    with torch.no_grad():
        logits = model.module(torch.from_numpy(X))
    expected = float(nn.functional.cross_entropy(logits, torch.from_numpy(Y)))
    assert history.history["val_loss"][0] == pytest.approx(expected, rel=1e-5)


class PerStep(nn.Module):
    """(n, L) inputs of any length L -> (n, L, 3): one prediction per step."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 3)

    def forward(self, x):
        return self.lin(x.unsqueeze(-1))


def test_validation_inputs_of_another_length_are_not_checked_against_the_training_output():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 6)).astype("float32"), rng.integers(0, 3, (8, 6))
    xv, yv = rng.normal(size=(5, 9)).astype("float32"), rng.integers(0, 3, (5, 9))
    model = ew.Model(PerStep(), device="cpu")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=1, validation_data=(xv, yv), verbose=0)
    with torch.no_grad():
        logits = model.module(torch.from_numpy(xv))
    expected = float(nn.functional.cross_entropy(logits.reshape(-1, 3), torch.from_numpy(yv).reshape(-1)))
    assert history.history["val_loss"][0] == pytest.approx(expected, rel=1e-5)


def test_nan_labels_with_class_weight_are_reported_not_crashed_on():
    y = with_label(Y, 4, np.nan, "float32")
    fails_before_training(lambda m, cbs: m.fit(X, y, class_weight={0: 2.0}, callbacks=cbs, verbose=0),
                          r"^y contains 1 NaN")


# --- a training DataLoader: its first batch is checked like arrays -----------------------------------
def test_nan_in_the_first_training_batch_fails_before_the_step():
    fails_before_training(lambda m, cbs: m.fit(loader(x_nan(1), Y), callbacks=cbs, verbose=0),
                          r"the inputs of the first batch of x contains 1 NaN.*check_finite=False")
    history = classifier().fit(loader(x_nan(1), Y), epochs=1, check_finite=False, verbose=0)
    assert np.isnan(history.history["loss"][0])


def test_bad_labels_in_the_first_training_batch_name_it():
    fails_before_training(lambda m, cbs: m.fit(loader(X, with_label(Y, 0, 7)), callbacks=cbs, verbose=0),
                          r"the first batch of x: sparse_categorical_crossentropy needs integer class ids in \[0, 3\)")


# --- evaluate: the same checks --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "y, problem",
    [(with_label(Y, 2, 1.5, "float32"), "non-integer"), (with_label(Y, 2, 10), "out-of-range")],
    ids=["non-integer", "out of range"],
)
def test_evaluate_checks_labels_like_fit(y, problem):
    model = classifier()
    pattern = rf"sparse_categorical_crossentropy needs integer class ids in \[0, 3\).*{problem}"
    with pytest.raises(ValueError, match=rf"^y: {pattern}"):
        model.evaluate(X, y, verbose=0)
    with pytest.raises(ValueError, match=rf"^the first batch of x: {pattern}"):
        model.evaluate(loader(X, y), verbose=0)
    with pytest.raises(ValueError, match=rf"^y: {pattern}"):
        model.fit(X, y, verbose=0)  # fit says the same


def test_evaluate_accepts_integer_valued_float_labels():
    model = classifier()
    loss = model.evaluate(X, Y.astype("float32"), verbose=0)[0]
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(model.module(torch.from_numpy(X)), torch.from_numpy(Y)))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_evaluate_check_finite():
    model = classifier()
    with pytest.raises(ValueError, match=r"^x contains 1 NaN.*evaluate\(\.\.\., check_finite=False\)"):
        model.evaluate(x_nan(3), Y, verbose=0)
    with pytest.raises(ValueError, match=r"the inputs of the first batch of x contains 1 NaN"):
        model.evaluate(loader(x_nan(3), Y), verbose=0)
    loss = model.evaluate(x_nan(3), Y, check_finite=False, return_dict=True, verbose=0)["loss"]
    assert math.isnan(loss)


# --- predict: the inputs' checks --------------------------------------------------------------------------
def test_predict_checks_finite_inputs():
    model = classifier()
    with pytest.raises(ValueError, match=r"^x contains 1 NaN.*predict\(\.\.\., check_finite=False\)"):
        model.predict(x_nan(3), verbose=0)
    with pytest.raises(ValueError, match=r"the inputs of the first batch of x contains 1 NaN"):
        model.predict(loader(x_nan(3), Y), verbose=0)
    out = model.predict(x_nan(3), check_finite=False, verbose=0)
    with torch.no_grad():
        expected = model.module(torch.from_numpy(X)).numpy()
    assert np.isnan(out[3]).all()
    np.testing.assert_allclose(np.delete(out, 3, 0), np.delete(expected, 3, 0), rtol=1e-5, atol=1e-6)


def test_predict_ignores_the_targets_in_batches():
    out = classifier().predict(loader(X, with_label(Y, 0, np.nan, "float32")), verbose=0)
    assert out.shape == (20, 3) and np.isfinite(out).all()


def test_predict_checks_lengths_and_emptiness():
    model = ew.Model(nn.Linear(4, 3), device="cpu")
    with pytest.raises(ValueError, match=r"^x holds 0 samples"):
        model.predict(X[:0], verbose=0)
    with pytest.raises(ValueError, match=r"cardinality is ambiguous"):
        model.predict((X, X[:5]), verbose=0)


# --- steps_per_epoch: data that runs out exactly at an epoch's end starts again (Keras 3) -------------
X512, Y512 = make_classification(512)


def run_epochs(x, y=None, **fit_kwargs):
    counter = Batches()
    model = classifier()
    seen = []
    forward = model.module.forward
    model.module.forward = lambda t: (seen.append(t[:, 0].clone()), forward(t))[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "ran out of data" warning: no epoch was cut short
        history = model.fit(x, y, callbacks=[counter], verbose=0, shuffle=False, **fit_kwargs)
    return history, counter.per_epoch, seen


def test_steps_per_epoch_equal_to_the_batches():
    history, per_epoch, seen = run_epochs(X512, Y512, batch_size=32, steps_per_epoch=16, epochs=3)
    assert len(history.history["loss"]) == 3 and per_epoch == [16, 16, 16]
    assert torch.equal(seen[16], torch.from_numpy(X512[:32, 0]))  # epoch 2 starts the data again


def test_steps_per_epoch_dividing_the_batches():
    history, per_epoch, seen = run_epochs(X512, Y512, batch_size=32, steps_per_epoch=8, epochs=3)
    assert len(history.history["loss"]) == 3 and per_epoch == [8, 8, 8]
    assert torch.equal(seen[8], torch.from_numpy(X512[256:288, 0]))  # epoch 2 goes on through the data
    assert torch.equal(seen[16], torch.from_numpy(X512[:32, 0]))  # epoch 3 starts it again


def test_steps_per_epoch_equal_to_len_of_a_dataloader():
    data = loader(X512, Y512, batch_size=64)
    history, per_epoch, _ = run_epochs(data, steps_per_epoch=len(data), epochs=2)
    assert len(history.history["loss"]) == 2 and per_epoch == [8, 8]


def test_steps_per_epoch_without_batch_size():  # F3: ceil(512 / 16) = 32 per batch
    history, per_epoch, seen = run_epochs(X512, Y512, steps_per_epoch=16, epochs=2)
    assert len(history.history["loss"]) == 2 and per_epoch == [16, 16]
    assert [len(s) for s in seen] == [32] * 32


def test_a_generator_that_ran_dry_at_an_epoch_end_is_an_error():
    gen = ((X[i:i + 5], Y[i:i + 5]) for i in range(0, 20, 5))
    counter = Batches()
    with pytest.raises(ValueError, match="generator that is already exhausted"):
        classifier().fit(gen, steps_per_epoch=4, epochs=2, callbacks=[counter], verbose=0)
    assert counter.per_epoch == [4, 0]


# --- the logits decision: probabilities given to a loss compile decided takes logits ------------------
class Ends(nn.Module):
    def __init__(self, outputs, last):
        super().__init__()
        self.lin, self.last = nn.Linear(4, outputs), last

    def forward(self, x):
        return self.last(self.lin(x))


def compiled(module, loss):
    model = ew.Model(module, device="cpu")
    model.compile(optimizer=ew.optimizers.SGD(learning_rate=0.1), loss=loss)
    return model


@pytest.mark.parametrize(
    "outputs, last, loss, y",
    [(3, lambda z: torch.softmax(z, -1), "sparse_categorical_crossentropy", Y),
     (1, torch.sigmoid, "binary_crossentropy", (Y[:, None] == 1).astype("float32"))],
    ids=["softmax", "sigmoid"],
)
def test_probabilities_to_a_decided_logits_loss_are_an_error(outputs, last, loss, y):
    model = compiled(Ends(outputs, last), loss)
    assert model.loss.from_logits is True  # compile could not see the softmax / sigmoid in forward()
    pattern = r"outputs look like probabilities.*from_logits=False.*from_logits=True"
    fails_before_training(lambda m, cbs: m.fit(X, y, callbacks=cbs, verbose=0), pattern, model=model)
    with pytest.raises(ValueError, match=pattern):
        model.evaluate(X, y, verbose=0)


def test_probabilities_with_from_logits_false_train():
    model = compiled(Ends(3, lambda z: torch.softmax(z, -1)), ew.losses.SparseCategoricalCrossentropy(from_logits=False))
    with torch.no_grad():
        probs = model.module(torch.from_numpy(X))
    expected = float(nn.functional.nll_loss(torch.log(probs), torch.from_numpy(Y)))
    history = model.fit(X, Y, batch_size=20, epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_a_visible_softmax_layer_is_not_an_error():
    model = compiled(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1)), "sparse_categorical_crossentropy")
    assert model.loss.from_logits is False
    history = model.fit(X, Y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_a_few_binary_logits_in_0_1_are_no_evidence():
    half = Ends(1, lambda z: z * 0 + 0.5)  # the logit 0.5 for every sample: in [0, 1], yet a logit
    y = (Y[:, None] == 1).astype("float32")
    model = compiled(half, "binary_crossentropy")
    history = model.fit(X[:4], y[:4], batch_size=4, epochs=1, verbose=0)  # 4 values: not taken for probabilities
    p = 1 / (1 + math.exp(-0.5))
    expected = -np.mean(y[:4] * math.log(p) + (1 - y[:4]) * math.log(1 - p))
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="look like probabilities"):
        compiled(Ends(1, lambda z: z * 0 + 0.5), "binary_crossentropy").fit(X, y, verbose=0)  # 20 values


def test_batches_without_targets_are_named():
    inputs_only = DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=5)
    fails_before_training(lambda m, cbs: m.fit(inputs_only, callbacks=cbs, verbose=0),
                          r"the first batch of x holds no targets; yield \(x, y\)")
    fails_before_training(lambda m, cbs: m.fit(X, Y, validation_data=inputs_only, callbacks=cbs, verbose=0),
                          r"the first batch of validation_data holds no targets")
