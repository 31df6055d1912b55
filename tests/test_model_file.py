"""Whole-model checkpoints: model.save stores the compile settings, ew.load_model(path, module=...) gives a
model ready to evaluate and to continue training, and the file stays plain data (no pickled code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_classification, make_regression
from torch import nn

import epochwise as ew
from epochwise.callbacks import ModelCheckpoint

X, Y = make_classification(48)


class Net(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.body(x)


def compiled(**compile_kwargs) -> ew.Model:
    model = ew.Model(Net(), device="cpu")
    kwargs = {"optimizer": ew.optimizers.Adam(ew.schedules.ExponentialDecay(0.02, 4, 0.7), global_clipnorm=1.0),
              "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy", ew.metrics.SparseTopKCategoricalAccuracy(k=2)]}
    model.compile(**{**kwargs, **compile_kwargs})
    return model


def fit(model: ew.Model, epochs: int, initial_epoch: int = 0) -> ew.callbacks.History:
    return model.fit(X, Y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch, shuffle=False, verbose=0)


def assert_close_weights(a: ew.Model, b: ew.Model, tol: float = 1e-6) -> None:
    for (k, p), q in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol, msg=k)


@pytest.mark.parametrize("extra", [{}, {"use_ema": True, "ema_momentum": 0.9}])
def test_fit_save_load_fit_equals_one_longer_fit(tmp_path, extra):
    opt = ew.optimizers.Adam(ew.schedules.ExponentialDecay(0.02, 4, 0.7), global_clipnorm=1.0, **extra)
    straight = compiled(optimizer=opt)
    fit(straight, 3)
    first = compiled(optimizer=ew.optimizers.Adam(ew.schedules.ExponentialDecay(0.02, 4, 0.7), global_clipnorm=1.0,
                                                  **extra))
    fit(first, 2)
    first.save(tmp_path / "m.pt")
    again = ew.load_model(tmp_path / "m.pt", module=Net(seed=5), device="cpu")  # other initial weights
    assert again.evaluate(X, Y, verbose=0) == first.evaluate(X, Y, verbose=0)
    assert again.metrics_names == ["loss", "accuracy", "sparse_top_k_categorical_accuracy"]
    assert again.optimizer.iterations == 12 and again.optimizer.global_clipnorm == 1.0
    fit(again, 3, initial_epoch=2)
    if not extra:  # with EMA the 2-epoch fit ended by swapping in the averages, which the 3-epoch run did not
        assert_close_weights(again, straight)
    else:
        fit(first, 3, initial_epoch=2)
        assert_close_weights(again, first)
    assert again.optimizer.learning_rate == pytest.approx(straight.optimizer.learning_rate)


def test_load_compiles_an_uncompiled_model_and_returns_extra(tmp_path):
    model = compiled(accumulate_steps=2)
    fit(model, 1)
    model.save(tmp_path / "m.pt", extra={"epoch": 1})
    fresh = ew.Model(Net(seed=3), device="cpu")
    assert fresh.load(tmp_path / "m.pt") == {"epoch": 1}
    assert fresh.compiled and fresh._settings.accumulate == 2 and fresh.precision == "32"
    assert fresh.optimizer.get_config() == model.optimizer.get_config()
    assert fresh.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)


def test_load_on_the_class_says_to_pass_the_module(tmp_path):
    compiled().save(tmp_path / "m.pt")
    with pytest.raises(TypeError, match=r"ew.load_model\('.*m.pt', module=Net\(\)\)"):
        ew.Model.load(str(tmp_path / "m.pt"))
    with pytest.raises(TypeError, match=r"load_model needs the module"):
        ew.load_model(tmp_path / "m.pt")


def my_loss(y_true, y_pred):
    return F.cross_entropy(y_pred, y_true, reduction="none")


def test_a_user_function_is_named_on_load_and_given_back_by_custom_objects(tmp_path):
    model = compiled(loss=my_loss, metrics=[lambda y, p: (p.argmax(-1) == y).float()])
    fit(model, 1)
    model.save(tmp_path / "m.pt")  # saving works
    with pytest.raises(ValueError, match=r"loss 'my_loss', metrics\[0\] \(a lambda\).*custom_objects=\{'my_loss': "
                                         r"\.\.\., 'metrics\[0\]': \.\.\.\}.*model.compile"):
        ew.load_model(tmp_path / "m.pt", module=Net())
    again = ew.load_model(tmp_path / "m.pt", module=Net(), custom_objects={
        "my_loss": my_loss, "metrics[0]": lambda y, p: (p.argmax(-1) == y).float()})
    assert again.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)
    compiled_first = ew.Model(Net(), device="cpu")  # or compile first: the file's settings are not needed
    compiled_first.compile(optimizer="adam", loss=my_loss)
    compiled_first.load(tmp_path / "m.pt")
    assert compiled_first.optimizer.iterations == model.optimizer.iterations


class ScaledMSE(ew.losses.Loss):
    def __init__(self, scale: float = 1.0, reduction="sum_over_batch_size", name="scaled_mse"):
        super().__init__(reduction, name)
        self.scale = scale

    def call(self, y_true, y_pred):
        return self.scale * ((y_true - y_pred) ** 2).mean(-1)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def test_a_user_class_is_rebuilt_from_its_config(tmp_path):
    x, y = make_regression(24)
    model = ew.Model(nn.Linear(3, 1), device="cpu")
    model.compile(optimizer="sgd", loss=ScaledMSE(scale=3.0))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"loss 'ScaledMSE'"):
        ew.load_model(tmp_path / "m.pt", module=nn.Linear(3, 1))
    again = ew.load_model(tmp_path / "m.pt", module=nn.Linear(3, 1), custom_objects={"ScaledMSE": ScaledMSE})
    assert isinstance(again.loss, ScaledMSE) and again.loss.scale == 3.0
    assert again.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("settings", [
    {"loss": ew.losses.CategoricalHinge(), "metrics": [ew.metrics.Precision(thresholds=0.3, class_id=1)]},
    {"loss": nn.CrossEntropyLoss(label_smoothing=0.1, weight=torch.tensor([1.0, 2.0, 0.5]))},
    {"loss": F.cross_entropy, "weighted_metrics": ["accuracy"]},
    {"loss": ew.losses.SparseCategoricalCrossentropy(from_logits=True), "optimizer": "nadam"},
    {"optimizer": "torch-sgd", "precision": "bf16-mixed"},
    {"optimizer": ew.optimizers.SGD(learning_rate=lambda step: 0.1 / (1 + step))},
])
def test_built_in_objects_round_trip(tmp_path, settings):
    settings = dict(settings)
    if settings.get("optimizer") == "torch-sgd":
        module = Net()
        model = ew.Model(module, device="cpu")
        settings["optimizer"] = ew.optimizers.Optimizer.wrap(
            torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9, nesterov=True), clipvalue=0.5)
        model.compile(**{"loss": "sparse_categorical_crossentropy", **settings})
    else:
        model = compiled(**settings)
    y = np.eye(3, dtype="float32")[Y] if isinstance(settings.get("loss"), ew.losses.CategoricalHinge) else Y
    model.fit(X, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain data: the safe loader reads it
    custom = {"learning_rate": settings["optimizer"].schedule} if "lambda" in repr(settings.get("optimizer")) else None
    again = ew.load_model(tmp_path / "m.pt", module=Net(seed=9), device="cpu", custom_objects=custom)
    assert again.metrics_names == model.metrics_names
    assert type(again.optimizer.torch_optimizer) is type(model.optimizer.torch_optimizer)
    assert again.optimizer.get_config() == model.optimizer.get_config()
    assert again.precision == model.precision and raw["compile"]["precision"] == model.precision
    assert repr(again.loss) == repr(model.loss)
    assert again.evaluate(X, y, verbose=0) == model.evaluate(X, y, verbose=0)
    model.fit(X, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    again.fit(X, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert_close_weights(again, model)


def test_a_torch_loss_that_cannot_be_rebuilt_is_asked_for(tmp_path):
    class Odd(nn.MSELoss):  # a subclass: not torch's own class
        pass

    x, y = make_regression(8)
    model = ew.Model(nn.Linear(3, 1), device="cpu")
    model.compile(optimizer="sgd", loss=Odd())
    model.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"loss 'Odd'"):
        ew.load_model(tmp_path / "m.pt", module=nn.Linear(3, 1))
    assert ew.load_model(tmp_path / "m.pt", module=nn.Linear(3, 1), custom_objects={"Odd": Odd()}).compiled


def test_model_checkpoint_files_load_as_models(tmp_path):
    model = compiled()
    model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[ModelCheckpoint(tmp_path / "ckpt.pt", save_weights_only=False)])
    again = ew.load_model(tmp_path / "ckpt.pt", module=Net(seed=4), device="cpu")
    assert again.optimizer.iterations == model.optimizer.iterations
    assert again.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)


def test_old_checkpoints_without_compile_settings_still_load(tmp_path):
    model = compiled()
    fit(model, 1)
    model.save(tmp_path / "m.pt", extra={"epoch": 1})
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["compile"]  # as written before the compile settings were stored
    torch.save(payload, tmp_path / "old.pt")
    weights_only = ew.Model(Net(seed=2), device="cpu")
    assert weights_only.load(tmp_path / "old.pt") == {"epoch": 1}
    assert not weights_only.compiled
    assert_close_weights(weights_only, model, tol=0)
    recompiled = compiled()
    recompiled.load(tmp_path / "old.pt")
    assert recompiled.optimizer.iterations == model.optimizer.iterations
    with pytest.raises(ValueError, match=r"call model.compile"):
        weights_only.evaluate(X, Y, verbose=0)


def test_compile_false_loads_the_weights_only(tmp_path):
    model = compiled()
    model.save(tmp_path / "m.pt")
    again = ew.load_model(tmp_path / "m.pt", module=Net(seed=1), compile=False)
    assert not again.compiled
    assert_close_weights(again, model, tol=0)
    with pytest.raises(TypeError, match="custom_objects must be a dict"):
        ew.load_model(tmp_path / "m.pt", module=Net(), custom_objects=[my_loss])


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(3, 1), nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x), self.b(x)


def test_several_outputs_keep_their_losses_weights_and_metrics(tmp_path):
    x, _ = make_regression(20)
    y = (x[:, :1] * 2, x[:, 1:])
    model = ew.Model(TwoOutputs(), device="cpu")
    model.compile("adam", loss=["mse", ew.losses.Huber(delta=0.5)], loss_weights=[1.0, 0.25], metrics=[["mae"], []])
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.pt")
    stored = torch.load(tmp_path / "m.pt", weights_only=True)["compile"]
    assert stored["loss_weights"] == [1.0, 0.25] and stored["metrics"] == [["mae"], []]
    again = ew.load_model(tmp_path / "m.pt", module=TwoOutputs(), device="cpu")
    assert again.metrics_names == model.metrics_names
    assert again.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
