"""Mixed precision, torch.compile, gradient accumulation and clipping change what they should."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import make_classification, make_regression
from torch import nn

import epochwise as ew


def linear_model(**compile_kwargs):
    torch.manual_seed(0)
    model = ew.Model(nn.Linear(3, 1), device="cpu")
    kwargs = {"optimizer": ew.optimizers.SGD(learning_rate=0.1), "loss": "mse"}
    kwargs.update(compile_kwargs)
    model.compile(**kwargs)
    return model


@pytest.mark.parametrize("precision,dtype", [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)])
def test_mixed_precision_runs_forward_under_autocast(precision, dtype):
    x, y = make_classification(32)
    seen = []
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    net[2].register_forward_hook(lambda mod, inp, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))
    model = ew.Model(net, device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], precision=precision)
    history = model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0)
    assert seen and all(enabled and out_dtype == dtype for enabled, out_dtype in seen)
    assert np.isfinite(history.history["loss"]).all()
    assert net[0].weight.dtype == torch.float32  # master weights stay float32
    assert model.predict(x, verbose=0).dtype == np.float32
    assert model.precision == precision


def test_fp16_uses_a_grad_scaler():
    from epochwise.engine.step import StepRunner

    model = linear_model(precision="16-mixed")
    assert StepRunner(model).scaler is not None
    assert StepRunner(linear_model(precision="bf16-mixed")).scaler is None


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision must be one of"):
        linear_model(precision="fp8")


def test_compile_keeps_the_users_module():
    x, y = make_regression(16)
    model = linear_model(compile={"backend": "eager"})
    keys = list(model.module.state_dict())
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    from epochwise.engine.step import StepRunner

    assert isinstance(StepRunner(model).forward_module, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(model.module, nn.Linear) and list(model.module.state_dict()) == keys
    assert history.history["loss"][1] < history.history["loss"][0]
    np.testing.assert_allclose(model.predict(x, verbose=0), model.module(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5)


def test_accumulation_equals_one_step_on_the_joined_batch():
    x, y = make_regression(16)
    a = linear_model(accumulate_steps=2)
    b = linear_model()
    b.set_weights(a.get_weights())
    a.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # 4 batches -> 2 updates
    b.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)  # 2 batches of 8 -> 2 updates
    assert a.optimizer.iterations == b.optimizer.iterations == 2
    for k, v in a.get_weights().items():
        torch.testing.assert_close(v, b.get_weights()[k], rtol=1e-5, atol=1e-6)


def test_partial_accumulation_group_applied_at_epoch_end():
    x, y = make_regression(12)
    model = linear_model(accumulate_steps=2)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # 3 batches -> groups of 2 and 1
    assert model.optimizer.iterations == 2
    with pytest.raises(ValueError, match="accumulate_steps"):
        linear_model(accumulate_steps=0)


@pytest.mark.parametrize("clip", [{"clipvalue": 0.01}, {"clipnorm": 0.01}, {"global_clipnorm": 0.01}])
def test_clipping_bounds_the_update(clip):
    x, y = make_regression(8)
    y = y * 1000  # a huge gradient
    model = linear_model(optimizer=ew.optimizers.SGD(learning_rate=1.0, **clip))
    before = copy.deepcopy(model.get_weights())
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    deltas = {k: (v - before[k]).abs() for k, v in model.get_weights().items()}
    if "clipvalue" in clip:
        assert all(float(d.max()) <= 0.01 + 1e-7 for d in deltas.values())
    elif "clipnorm" in clip:
        assert all(float(d.norm()) <= 0.01 + 1e-6 for d in deltas.values())
    else:
        total = torch.sqrt(sum((d**2).sum() for d in deltas.values()))
        assert float(total) <= 0.01 + 1e-6
    unclipped = linear_model()
    unclipped.optimizer.learning_rate = 1.0
    unclipped.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert float((unclipped.get_weights()["weight"] - before["weight"]).abs().max()) > 1.0


def test_schedule_learning_rate_is_logged_each_epoch():  # the LR actually used appears in History (G6)
    from epochwise.optim.schedules import ExponentialDecay

    x, y = make_regression(16)
    schedule = ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    model = linear_model(optimizer=ew.optimizers.SGD(learning_rate=schedule))
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0)  # 4 steps per epoch
    assert history.history["learning_rate"] == pytest.approx([schedule(3), schedule(7), schedule(11)])
    assert "learning_rate" in model.expected_log_keys
