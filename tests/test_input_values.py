"""Input values that used to train silently wrong or fail late: negative weights, class_weight keys that
are not classes, NumPy numbers as arguments, string labels, and a validation_split of one class."""

from __future__ import annotations

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


class Steps(Callback):
    """Counts training batches, and the warnings already issued when training begins."""

    def __init__(self, caught=None):
        super().__init__()
        self.batches, self.caught, self.warned_at_begin = 0, caught, None

    def on_train_begin(self, logs=None):
        self.warned_at_begin = len(self.caught) if self.caught is not None else None

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def fails_before_training(call, pattern, model=None):
    """``call(model, callbacks)`` raises ValueError matching ``pattern`` with no step run, no weight changed."""
    model = model or classifier()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    steps = Steps()
    with pytest.raises(ValueError, match=pattern):
        call(model, [steps])
    assert steps.batches == 0, "a training step ran before the error"
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items()), "weights changed"


def weights(values):
    w = np.ones(20, "float32")
    w[: len(values)] = values
    return w


# --- 1. negative sample_weight / class_weight: an error, not gradient ascent ----------------------------
@pytest.mark.parametrize("call, pattern", [
    (lambda m, cbs: m.fit(X, Y, sample_weight=weights([-1.0, 2.0, -0.5]), callbacks=cbs, verbose=0),
     r"^sample_weight holds 2 negative value\(s\) \(the smallest is -1\).*weights >= 0"),
    (lambda m, cbs: m.fit(X, Y, sample_weight=weights([1.0] * 19 + [-3.0]), validation_split=0.2, callbacks=cbs,
                          verbose=0),
     r"^sample_weight holds 1 negative value\(s\)"),  # the weights of the validation_split tail too
    (lambda m, cbs: m.fit(X, Y, validation_data=(X, Y, weights([-2.0])), callbacks=cbs, verbose=0),
     r"^validation_data\[2\] holds 1 negative value\(s\)"),
    (lambda m, cbs: m.fit(DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y),
                                                   torch.from_numpy(weights([-1.0]))), batch_size=5),
                          callbacks=cbs, verbose=0),
     r"^the sample weights of the first batch of x holds 1 negative value\(s\)"),
    (lambda m, cbs: m.fit(X, Y, class_weight={0: 1.0, 1: -2.0}, callbacks=cbs, verbose=0),
     r"^class_weight gives 1 class\(es\) a negative weight \(\{1: -2\.0\}\).*weights >= 0"),
], ids=["fit", "validation_split tail", "validation_data", "DataLoader batch", "class_weight"])
def test_negative_weights_fail_before_training(call, pattern):  # F10, F11
    fails_before_training(call, pattern)


def test_evaluate_refuses_negative_sample_weight():
    with pytest.raises(ValueError, match=r"^sample_weight holds 1 negative value\(s\)"):
        classifier().evaluate(X, Y, sample_weight=weights([-1.0]), verbose=0)


def test_zero_weights_are_fine_and_nan_weights_still_fail_the_finite_check():  # F11, F18
    model = classifier(optimizer="sgd")
    model.optimizer.learning_rate = 1e-12
    sw = weights([0.0] * 10)
    loss = model.fit(X, Y, sample_weight=sw, batch_size=20, verbose=0).history["loss"][0]
    per_sample = nn.functional.cross_entropy(model.module(torch.from_numpy(X)), torch.from_numpy(Y),
                                             reduction="none").detach().numpy()
    assert loss == pytest.approx(float((per_sample * sw).sum() / 20), rel=1e-4)  # LO2: / n
    fails_before_training(lambda m, cbs: m.fit(X, Y, sample_weight=weights([np.nan]), callbacks=cbs, verbose=0),
                          r"^sample_weight contains 1 NaN")


# --- 2. class_weight keys must be classes the data has ---------------------------------------------------
@pytest.mark.parametrize("class_weight, pattern", [
    ({1: 1.0, 2: 2.0, 3: 3.0}, r"class_weight has key\(s\) \[3\] that are not classes of the data: y holds "
                               r"classes 0\.\.2 \(integer labels\) \(class indices start at 0\)"),
    ({-1: 2.0, 0: 1.0}, r"class_weight has key\(s\) \[-1\] .*classes 0\.\.2"),
    ({0.5: 2.0}, r"class_weight keys must be class indices \(integers\), got 0\.5"),
    ({"1": 2.0}, r"class_weight keys must be class indices"),
], ids=["1-based", "minus one", "float key", "str key"])
def test_class_weight_keys_outside_the_classes_fail(class_weight, pattern):  # F10
    fails_before_training(lambda m, cbs: m.fit(X, Y, class_weight=class_weight, callbacks=cbs, verbose=0), pattern)


def test_class_weight_keys_of_one_hot_labels_are_its_columns():  # F10
    model = classifier(loss="categorical_crossentropy")
    onehot = np.eye(3, dtype="float32")[Y]
    fails_before_training(lambda m, cbs: m.fit(X, onehot, class_weight={3: 2.0}, callbacks=cbs, verbose=0),
                          r"key\(s\) \[3\] .*y holds classes 0\.\.2 \(one-hot columns\)", model=model)


def test_class_weight_with_missing_classes_weighs_them_one():  # F10: Keras's rule, for one-hot labels too
    x, y = make_classification(30)
    onehot = np.eye(3, dtype="float32")[y]
    model = classifier(loss="categorical_crossentropy", optimizer="sgd")
    model.optimizer.learning_rate = 1e-12
    loss = model.fit(x, onehot, class_weight={np.int64(2): 4.0}, batch_size=30, verbose=0).history["loss"][0]
    per_sample = nn.functional.cross_entropy(model.module(torch.from_numpy(x)), torch.from_numpy(y),
                                             reduction="none").detach().numpy()
    assert loss == pytest.approx(float((per_sample * np.where(y == 2, 4.0, 1.0)).sum() / 30), rel=1e-4)


def test_class_weight_classes_include_the_validation_split_tail():  # F7, F10
    order = np.argsort(Y, kind="stable")  # class 2 only in the tail
    x, y = X[order], Y[order]
    tail = int((y == 2).sum())
    model = classifier()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tail is one class: item 5's warning
        history = model.fit(x, y, validation_split=tail / 20 + 1e-9, class_weight={2: 5.0}, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])


# --- 3. NumPy numbers are accepted wherever a Python number is (as in Keras) ------------------------------
def run_fit(kwargs):
    torch.manual_seed(0)
    model = classifier()
    x, y = make_classification(40)
    history = model.fit(x, y, verbose=0, **kwargs)
    return history, model.get_weights()


def test_numpy_numbers_train_exactly_like_python_numbers():  # F3, F4, F7, F12-F16
    python = {"batch_size": 8, "epochs": 3, "validation_split": 0.25, "steps_per_epoch": 2,
              "validation_steps": 2, "validation_batch_size": 4, "initial_epoch": 1, "validation_freq": [2, 3],
              "shuffle": True, "seed": 5}
    numpy = {"batch_size": np.int64(8), "epochs": np.int32(3), "validation_split": np.float32(0.25),
             "steps_per_epoch": np.int64(2), "validation_steps": np.int16(2), "validation_batch_size": np.int64(4),
             "initial_epoch": np.int64(1), "validation_freq": [np.int64(2), np.int32(3)], "shuffle": np.bool_(True),
             "seed": np.int64(5)}
    (h_py, w_py), (h_np, w_np) = run_fit(python), run_fit(numpy)
    assert h_np.epoch == h_py.epoch == [1, 2]
    assert h_np.history == h_py.history and "val_loss" in h_np.history
    assert all(torch.equal(w_py[k], w_np[k]) for k in w_py)
    (h_py, _), (h_np, _) = run_fit({"validation_split": 0.2}), run_fit({"validation_split": np.float64(0.2)})
    assert h_np.history == h_py.history


def test_numpy_validation_freq_int_validates_like_an_int():  # F16
    (h_py, _), (h_np, _) = run_fit({"epochs": 4, "validation_split": 0.25, "validation_freq": 2}), \
        run_fit({"epochs": 4, "validation_split": 0.25, "validation_freq": np.int64(2)})
    assert h_np.history == h_py.history and len(h_np.history["val_loss"]) == 2


def test_numpy_numbers_in_evaluate_and_predict():
    model = classifier()
    assert model.evaluate(X, Y, batch_size=np.int64(4), steps=np.int32(2), verbose=0) == \
        model.evaluate(X, Y, batch_size=4, steps=2, verbose=0)
    np.testing.assert_array_equal(model.predict(X, batch_size=np.int64(6), steps=np.int64(2), verbose=0),
                                  model.predict(X, batch_size=6, steps=2, verbose=0))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"batch_size": np.int64(0)}, r"^batch_size must be a positive integer or None, got np\.int64\(0\)$"),
    ({"batch_size": np.float64(8.0)}, r"^batch_size must be a positive integer or None, got np\.float64\(8\.0\)$"),
    ({"validation_split": np.float64(1.5)}, r"^validation_split must be 0 or a fraction strictly between 0 and 1"),
    ({"validation_freq": np.int64(0)}, r"^validation_freq must be a positive int"),
])
def test_bad_numpy_values_say_what_is_wrong(kwargs, pattern):
    fails_before_training(lambda m, cbs: m.fit(X, Y, callbacks=cbs, verbose=0, **kwargs), pattern)


# --- 4. string labels: say to encode them ----------------------------------------------------------------
NAMES = np.array(["cat", "dog", "emu"])


@pytest.mark.parametrize("call, pattern", [
    (lambda m, cbs: m.fit(X, NAMES[Y], callbacks=cbs, verbose=0), r"^y holds strings \(e\.g\. 'dog'\)"),
    (lambda m, cbs: m.fit(X, NAMES[Y].astype(object), callbacks=cbs, verbose=0), r"^y holds strings"),
    (lambda m, cbs: m.fit(X, Y, validation_data=(X, NAMES[Y]), callbacks=cbs, verbose=0),
     r"^validation_data\[1\] holds strings"),
    (lambda m, cbs: m.evaluate(X, NAMES[Y], callbacks=cbs, verbose=0), r"^y holds strings"),
], ids=["str array", "object array", "validation_data", "evaluate"])
def test_string_labels_say_to_encode_them(call, pattern):
    fails_before_training(call, pattern + r".*encode the labels as integer class indices.*"
                                          r"np\.unique\(labels, return_inverse=True\).*LabelEncoder")


def test_string_inputs_say_to_encode_them():
    pd = pytest.importorskip("pandas")
    fails_before_training(lambda m, cbs: m.fit(pd.Series(NAMES[Y]), Y, callbacks=cbs, verbose=0),
                          r"^x holds strings \(e\.g\. 'dog'\), but training needs numbers: encode them first")


# --- 5. validation_split of data sorted by label: warn before training --------------------------------------
def sorted_data(n=60):
    x, y = make_classification(n)
    order = np.argsort(y, kind="stable")
    return x[order], y[order]


@pytest.mark.parametrize("loss, onehot", [("sparse_categorical_crossentropy", False),
                                          ("categorical_crossentropy", True)], ids=["labels", "one-hot"])
def test_validation_split_of_one_class_warns_before_training(loss, onehot):  # F7
    x, y = sorted_data()
    assert set(y[48:]) == {2} and len(set(y[:48])) == 3  # the reference: the tail is one class
    target = np.eye(3, dtype="float32")[y] if onehot else y
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps = Steps(caught)
        classifier(loss=loss).fit(x, target, validation_split=0.2, callbacks=[steps], verbose=0)
    split = [w for w in caught if "validation_split" in str(w.message)]
    assert len(split) == 1 and split[0].category is UserWarning
    assert steps.warned_at_begin >= 1  # issued before on_train_begin
    assert split[0].filename == __file__  # points at the fit call
    message = str(split[0].message)
    assert "takes the last 12 samples in their order, and here they are all class 2" in message
    assert "Shuffle the data before fit" in message and "permutation" in message


@pytest.mark.parametrize("case", ["shuffled", "regression loss", "small tail"])
def test_no_split_warning_where_the_tail_is_not_a_trap(case):  # F7
    x, y = sorted_data(20 if case == "small tail" else 60)
    model = classifier()
    if case == "shuffled":
        p = np.random.default_rng(0).permutation(len(x))
        x, y = x[p], y[p]
    if case == "regression loss":
        model = ew.Model(nn.Linear(4, 1), device="cpu")
        model.compile(optimizer="sgd", loss="mse")
        y = y[:, None].astype("float32")
    if case == "small tail":  # 4 samples of one class happen by chance in 4 % of random splits
        assert set(y[16:]) == {2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, validation_split=0.2, verbose=0)
