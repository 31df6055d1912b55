"""Each fit argument does what rule F1-F18 and D1-D4 say."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import Recorder, classifier, make_classification, make_regression, regressor
from torch import nn

import epochwise as ew


def batch_sizes(model, x, y, **fit_kwargs):
    sizes = []

    class Sizes(Recorder):
        def on_train_batch_begin(self, batch, logs=None):
            sizes.append(batch)

    seen = []
    orig_forward = model.module.forward

    def forward(inp):
        seen.append(int(inp.shape[0]))
        return orig_forward(inp)

    model.module.forward = forward
    history = model.fit(x, y, callbacks=[Sizes()], verbose=0, **fit_kwargs)
    model.module.forward = orig_forward
    return seen, history


def test_default_batch_size_is_32_and_partial_batch_counted():  # F3, D1
    x, y = make_classification(70)
    seen, history = batch_sizes(classifier(), x, y)
    assert seen == [32, 32, 6]
    assert history.params["steps"] == 3


def test_batch_size_from_steps_per_epoch():  # F3: n=100, steps 3 -> 34, 34, 32
    x, y = make_classification(100)
    seen, _ = batch_sizes(classifier(), x, y, steps_per_epoch=3)
    assert seen == [34, 34, 32]


def test_steps_per_epoch_continues_through_the_data():  # F13: 5 batches, steps 2 -> 2, 2, 1, 2
    x, y = make_classification(10)
    model = classifier()
    per_epoch = []

    class Count(Recorder):
        def on_epoch_begin(self, epoch, logs=None):
            per_epoch.append(0)

        def on_train_batch_end(self, batch, logs=None):
            per_epoch[-1] += 1

    with pytest.warns(UserWarning, match="ran out of data"):
        model.fit(x, y, batch_size=2, steps_per_epoch=2, epochs=4, shuffle=False, callbacks=[Count()], verbose=0)
    assert per_epoch == [2, 2, 1, 2]


def test_history_params_epoch_and_keys():  # H2-H4
    x, y = make_classification(20)
    history = classifier().fit(x, y, batch_size=8, epochs=3, validation_split=0.25, verbose=0)
    assert history.params == {"verbose": 0, "epochs": 3, "steps": 2}
    assert history.epoch == [0, 1, 2]
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in history.history.values())


def test_validation_split_takes_the_tail_before_shuffling():  # F7
    x = np.arange(10, dtype="float32")[:, None]
    y = np.arange(10, dtype="float32")[:, None]
    model = ew.Model(nn.Linear(1, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    seen = []

    class Val(Recorder):
        def on_test_batch_begin(self, batch, logs=None):
            seen.append(batch)

    orig = model.module.forward
    inputs = []
    model.module.forward = lambda t: (inputs.append(t.clone()), orig(t))[1]
    model.fit(x, y, epochs=1, batch_size=100, validation_split=0.3, callbacks=[Val()], verbose=0)
    train_in, val_in = inputs
    assert sorted(train_in.flatten().tolist()) == [0, 1, 2, 3, 4, 5, 6]
    assert val_in.flatten().tolist() == [7, 8, 9]


def test_validation_split_rounding():  # F7: n=1000, s=0.33 -> 669 / 331
    from epochwise.data import ArrayData

    data = ArrayData(np.zeros((1000, 1), "float32"), np.zeros(1000, "float32"))
    train, val = data.split_tail(0.33)
    assert (train.n, val.n) == (669, 331)


def test_validation_data_overrides_split_and_uses_batch_sizes():  # F8, F15
    x, y = make_classification(20)
    xv, yv = make_classification(10, seed=3)
    sizes = []

    class Val(Recorder):
        def on_test_batch_end(self, batch, logs=None):
            sizes.append(batch)

    classifier().fit(x, y, batch_size=4, epochs=1, validation_split=0.5, validation_data=(xv, yv),
                     callbacks=[Val()], verbose=0)
    assert len(sizes) == 3  # 10 validation samples at batch 4
    sizes.clear()
    classifier().fit(x, y, batch_size=4, epochs=1, validation_data=(xv, yv), validation_batch_size=10,
                     callbacks=[Val()], verbose=0)
    assert len(sizes) == 1


def test_validation_steps_caps_each_pass():  # F14
    x, y = make_classification(20)
    count = []

    class Val(Recorder):
        def on_test_batch_end(self, batch, logs=None):
            count.append(batch)

    classifier().fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), validation_steps=2, callbacks=[Val()],
                     verbose=0)
    assert count == [0, 1, 0, 1]


def test_validation_steps_start_each_pass_at_the_beginning():  # F14: every validated epoch, the same batches
    x = np.arange(10, dtype="float32")[:, None]
    y = np.zeros((10, 1), dtype="float32")
    model = ew.Model(nn.Linear(1, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    orig = model.module.forward
    seen = []
    model.module.forward = lambda t: ((seen.append(t.flatten().tolist()) if not model.module.training else None),
                                      orig(t))[1]
    model.fit(x, y, batch_size=10, epochs=3, validation_data=(x, y), validation_batch_size=2, validation_steps=2,
              verbose=0)
    assert seen == [[0, 1], [2, 3]] * 3


@pytest.mark.parametrize("shuffle", [True, False, "batch"])
def test_shuffle_modes(shuffle):  # F9
    x = np.arange(12, dtype="float32")[:, None]
    y = np.zeros((12, 1), dtype="float32")
    model = ew.Model(nn.Linear(1, 1), device="cpu", seed=5)
    model.compile(optimizer="sgd", loss="mse")
    orig = model.module.forward
    seen = []
    model.module.forward = lambda t: (seen.append(t.flatten().tolist()), orig(t))[1]
    model.fit(x, y, batch_size=4, epochs=2, shuffle=shuffle, verbose=0)
    epoch1, epoch2 = sum(seen[:3], []), sum(seen[3:], [])
    assert sorted(epoch1) == list(range(12)) and sorted(epoch2) == list(range(12))
    if shuffle is False:
        assert epoch1 == epoch2 == list(range(12))
    elif shuffle == "batch":
        for chunk in range(3):
            assert sorted(seen[chunk]) == list(range(chunk * 4, chunk * 4 + 4))
    else:
        assert epoch1 != list(range(12)) and epoch1 != epoch2


def test_seed_makes_data_order_and_weights_reproducible():
    x, y = make_classification(30)

    def run():
        torch.manual_seed(123)
        net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3))
        model = ew.Model(net, device="cpu", seed=7)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=3, verbose=0)
        return model.get_weights()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_class_weight_scales_the_loss():  # F10, LO2
    x, y = make_classification(16, classes=2)
    plain = classifier(classes=2, optimizer="sgd")
    plain.optimizer.learning_rate = 1e-12
    w0 = plain.get_weights()
    logs_plain = plain.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"][0]
    weighted = classifier(classes=2, optimizer="sgd")
    weighted.set_weights(w0)
    weighted.optimizer.learning_rate = 1e-12
    logs_cw = weighted.fit(x, y, batch_size=16, epochs=1, class_weight={0: 3.0}, verbose=0).history["loss"][0]
    per_sample = torch.nn.functional.cross_entropy(weighted.module(torch.from_numpy(x)), torch.from_numpy(y),
                                                   reduction="none").detach()
    weights = torch.where(torch.from_numpy(y) == 0, 3.0, 1.0)
    assert logs_plain == pytest.approx(float(per_sample.mean()), rel=1e-4)
    assert logs_cw == pytest.approx(float((per_sample * weights).sum() / 16), rel=1e-4)  # LO2: / n, not / sum(w)


def test_sample_weight_and_weighted_metrics():  # F11, ME2
    x, y = make_regression(10)
    model = regressor(metrics=["mae"], weighted_metrics=["mae"])
    model.optimizer.learning_rate = 1e-12
    sw = np.array([1, 0] * 5, dtype="float32")
    history = model.fit(x, y, sample_weight=sw, batch_size=10, epochs=1, verbose=0)
    pred = model.module(torch.from_numpy(x)).detach().numpy()
    err = np.abs(pred - y)[:, 0]
    assert history.history["mae"][0] == pytest.approx(err.mean(), rel=1e-4)
    assert history.history["weighted_mae"][0] == pytest.approx((err * sw).sum() / sw.sum(), rel=1e-4)
    assert history.history["loss"][0] == pytest.approx(((err**2) * sw).sum() / 10, rel=1e-4)


def test_validation_split_splits_sample_weight_and_ignores_class_weight_for_validation():  # F7, F10
    x, y = make_regression(10)
    model = regressor()
    model.optimizer.learning_rate = 1e-12
    sw = np.arange(10, dtype="float32")
    history = model.fit(x, y, sample_weight=sw, validation_split=0.2, batch_size=10, epochs=1, verbose=0)
    pred = model.module(torch.from_numpy(x[8:])).detach().numpy()
    sq = ((pred - y[8:]) ** 2)[:, 0]
    assert history.history["val_loss"][0] == pytest.approx((sq * sw[8:]).sum() / 2, rel=1e-4)


def test_float64_is_cast_and_integer_labels_kept():  # F18
    x, y = make_classification(8)
    history = classifier().fit(x.astype("float64"), y.astype("int32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_training_reduces_the_loss():
    x, y = make_regression(64)
    model = regressor(optimizer=ew.optimizers.SGD(learning_rate=0.05))
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0)
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]


def test_shuffle_warning_only_when_asked_for_dataloader():  # §14 on F9
    import warnings

    from torch.utils.data import DataLoader, TensorDataset

    x, y = make_classification(8)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classifier().fit(loader, epochs=1, verbose=0)
    with pytest.warns(UserWarning, match="shuffle=True is ignored"):
        classifier().fit(loader, epochs=1, shuffle=True, verbose=0)
