"""train_on_batch / test_on_batch / predict_on_batch (P5): fit's step on one batch, values of that batch
alone, returned as evaluate returns them (E4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_classification
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import epochwise as ew

X, Y = make_classification(40)  # 4 features, 3 classes
B = 8
BATCHES = [(X[i : i + B], Y[i : i + B]) for i in range(0, len(X), B)]


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def model(seed: int = 0, **compile_kwargs) -> ew.Model:
    m = ew.Model(net(seed), device="cpu")
    kwargs = {"optimizer": ew.optimizers.Adam(ew.schedules.ExponentialDecay(0.05, 3, 0.5)),
              "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    m.compile(**{**kwargs, **compile_kwargs})
    return m


def assert_same_weights(a: ew.Model, b: ew.Model) -> None:
    for (k, p), q in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        assert torch.equal(p, q), k


def test_a_loop_of_train_on_batch_is_fit_bit_for_bit():  # P5
    fitted, looped = model(), model()
    fitted.fit(X, Y, batch_size=B, epochs=2, shuffle=False, verbose=0)
    for _ in range(2):
        for x, y in BATCHES:
            looped.train_on_batch(x, y)
    assert_same_weights(fitted, looped)
    assert looped.optimizer.iterations == fitted.optimizer.iterations == 10
    assert looped.optimizer.learning_rate == fitted.optimizer.learning_rate  # the schedule advanced alike


def test_accumulation_steps_every_kth_call_like_fit():
    fitted, looped = model(accumulate_steps=2), model(accumulate_steps=2)
    fitted.fit(X[:32], Y[:32], batch_size=B, epochs=1, shuffle=False, verbose=0)  # 4 batches: 2 updates
    before = {k: v.clone() for k, v in looped.module.state_dict().items()}
    looped.train_on_batch(*BATCHES[0])
    assert looped.optimizer.iterations == 0  # the first call of a group does not step
    assert all(torch.equal(before[k], v) for k, v in looped.module.state_dict().items())
    for x, y in BATCHES[1:4]:
        looped.train_on_batch(x, y)
    assert looped.optimizer.iterations == fitted.optimizer.iterations == 2
    assert_same_weights(fitted, looped)


def test_return_values_are_that_batch_alone_against_torch():  # P5, E4
    m = model()
    reference = net()
    for x, y in BATCHES[:2]:  # metrics are reset on every call: the second call reports its batch only
        with torch.no_grad():  # L5: the values come from the forward before the update
            logits = reference(torch.from_numpy(x))
        expected_loss = F.cross_entropy(logits, torch.from_numpy(y)).item()
        expected_acc = (logits.argmax(-1) == torch.from_numpy(y)).float().mean().item()
        loss, acc = m.train_on_batch(x, y)
        assert loss == pytest.approx(expected_loss, rel=1e-6)
        assert acc == pytest.approx(expected_acc)
        reference.load_state_dict(m.module.state_dict())
    logs = m.test_on_batch(*BATCHES[2], return_dict=True)
    with torch.no_grad():
        logits = reference(torch.from_numpy(BATCHES[2][0]))
    assert logs == pytest.approx({"accuracy": (logits.argmax(-1) == torch.from_numpy(BATCHES[2][1])).float().mean().item(),
                                  "loss": F.cross_entropy(logits, torch.from_numpy(BATCHES[2][1])).item()}, rel=1e-6)
    assert list(logs) == ["accuracy", "loss"]
    only_loss = model(metrics=None)
    assert isinstance(only_loss.train_on_batch(*BATCHES[0]), float)  # E4: a bare float
    assert isinstance(only_loss.test_on_batch(*BATCHES[0]), float)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)

    def forward(self, x):
        return self.a(x), self.b(x)


@pytest.mark.parametrize("metrics", [None, [["mae"], ["mae"]]])
def test_one_named_loss_applies_to_each_output_as_in_fit(metrics):  # G5: the loss is applied per output
    targets = [X[:, :1] * 2, X[:, 1:2] - 1]
    fitted, single = (ew.Model(TwoHeads(), device="cpu") for _ in range(2))
    for m in (fitted, single):
        m.compile(optimizer="sgd", loss="mse", metrics=metrics)
    history = fitted.fit(X, targets, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    logs = single.train_on_batch(X, targets, return_dict=True)
    assert logs == {k: v[0] for k, v in history.history.items()}
    assert logs["loss"] == pytest.approx(logs["output_0_loss"] + logs["output_1_loss"])
    with torch.no_grad():
        fresh = TwoHeads()
        first = F.mse_loss(fresh(torch.from_numpy(X))[0], torch.from_numpy(targets[0])).item()
    assert logs["output_0_loss"] == pytest.approx(first)  # the step's loss: the weights before the update
    assert_same_weights(fitted, single)
    assert single.test_on_batch(X, targets, return_dict=True) == fitted.evaluate(X, targets, batch_size=len(X),
                                                                                 verbose=0, return_dict=True)


def test_test_on_batch_changes_nothing():
    m = model()
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    m.test_on_batch(*BATCHES[0])
    assert m.optimizer.iterations == 0
    assert all(torch.equal(before[k], v) for k, v in m.module.state_dict().items())


def test_class_weight_and_sample_weight_against_a_hand_weighted_loss():
    class_weight = {0: 1.0, 1: 3.0, 2: 0.5}
    x, y = BATCHES[0]
    weights = np.array([class_weight[int(c)] for c in y], "float32")
    with torch.no_grad():
        per_sample = F.cross_entropy(net()(torch.from_numpy(x)), torch.from_numpy(y), reduction="none")
    expected = (per_sample * torch.from_numpy(weights)).sum().item() / len(y)  # sum_over_batch_size (LO2)
    by_class, by_sample, by_hand = model(optimizer="sgd"), model(optimizer="sgd"), net()
    loss, _ = by_class.train_on_batch(x, y, class_weight=class_weight)
    loss_sw, _ = by_sample.train_on_batch(x, y, sample_weight=weights)
    assert loss == pytest.approx(expected, rel=1e-6) and loss_sw == pytest.approx(expected, rel=1e-6)
    assert_same_weights(by_class, by_sample)
    opt = torch.optim.SGD(by_hand.parameters(), lr=0.01)  # Keras's SGD default rate
    (F.cross_entropy(by_hand(torch.from_numpy(x)), torch.from_numpy(y), reduction="none")
     * torch.from_numpy(weights)).mean().backward()
    opt.step()
    for p, q in zip(by_hand.parameters(), by_class.module.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_predict_on_batch_equals_predict_and_modes_are_restored():
    m = model()
    m.module.train()
    out = m.predict_on_batch(X[:5])
    assert isinstance(out, np.ndarray) and np.array_equal(out, m.predict(X[:5], verbose=0))
    assert m.module.training

    seen = []
    dropout = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    dropout.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    d = ew.Model(dropout, device="cpu")
    d.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    d.module.eval()
    d.train_on_batch(*BATCHES[0])
    d.test_on_batch(*BATCHES[0])
    d.predict_on_batch(X[:4])
    assert seen == [True, False, False]  # train mode for the training step only
    assert not d.module.training  # the module's own mode comes back
    assert np.array_equal(d.predict_on_batch(X[:4]), d.predict_on_batch(X[:4]))  # no dropout in predict


def test_nested_inputs_and_float64_arrays():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

        def forward(self, a, b):
            return self.a(a) + self.b(b)

    m = ew.Model(TwoInputs(), device="cpu")
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    extra = np.random.default_rng(0).normal(size=(B, 2))  # float64: cast to float32 as fit does (F18)
    assert np.isfinite(m.train_on_batch((X[:B], extra), Y[:B]))
    assert m.predict_on_batch((X[:B], extra)).shape == (B, 3)


@pytest.mark.parametrize("call, kwargs, message", [
    ("train_on_batch", {"x": DataLoader(TensorDataset(torch.zeros(4, 4))), "y": None}, r"one batch of arrays .* fit"),
    ("train_on_batch", {"x": X[:8]}, r"got no y; pass the batch's targets as y="),
    ("train_on_batch", {"x": X[:8], "y": Y[:7]}, r"cardinality .*x: \[8\], y: \[7\]"),
    ("train_on_batch", {"x": np.full((8, 4), np.nan, "float32"), "y": Y[:8]},
     r"x contains 32 NaN .*check_finite=False"),
    ("train_on_batch", {"x": X[:8], "y": Y[:8], "sample_weight": np.ones(8), "class_weight": {0: 2.0}},
     r"cannot be combined with sample_weight"),
    ("train_on_batch", {"x": X[:8], "y": Y[:8], "class_weight": [1.0, 2.0]}, r"class_weight must be a dict"),
    ("train_on_batch", {"x": X[:8], "y": Y[:8], "sample_weight": -np.ones(8)}, r"sample_weight"),
    ("train_on_batch", {"x": X[:8], "y": Y[:8] + 5}, r"y: .*class"),
    ("test_on_batch", {"x": X[:0], "y": Y[:0]}, r"x holds 0 samples"),
    ("predict_on_batch", {"x": [1, 2, 3]}, r"one batch of arrays .* predict"),
])
def test_bad_input_is_a_clear_error_before_any_update(call, kwargs, message):
    m = model()
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        getattr(m, call)(**kwargs)
    assert m.optimizer.iterations == 0
    assert all(torch.equal(before[k], v) for k, v in m.module.state_dict().items())


def test_before_compile_is_an_error():  # F17
    m = ew.Model(net(), device="cpu")
    for call in ("train_on_batch", "test_on_batch"):
        with pytest.raises(ValueError, match=rf"compile\(.*\) before model.{call}\(\)"):
            getattr(m, call)(X[:4], Y[:4])
    assert m.predict_on_batch(X[:4]).shape == (4, 3)  # predict needs no compile, as predict()


DDP_SCRIPT = """
import json, sys
import numpy as np, torch
from torch import nn
import epochwise as ew

x = np.random.default_rng(0).normal(size=(48, 4)).astype("float32")
y = (np.arange(48) % 3).astype("int64")
torch.manual_seed(0)
model = ew.Model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), device="cpu")
model.compile(optimizer=ew.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
world, rank = ew.distributed.world_size(), ew.distributed.rank()
logs = []
for start in range(0, 48, 16):  # global batches of 16; each process trains on its contiguous part
    part = slice(start + rank * 16 // world, start + (rank + 1) * 16 // world)
    logs.append(model.train_on_batch(x[part], y[part], return_dict=True))
weights = {k: v.tolist() for k, v in model.module.state_dict().items()}
json.dump({"logs": logs, "weights": weights}, open(f"{sys.argv[1]}.{rank}.json", "w"))
"""


def test_under_torchrun_gradients_and_values_are_those_of_the_global_batch(tmp_path, monkeypatch):  # P5, G4
    import json
    import runpy
    import subprocess
    import sys

    script = tmp_path / "ddp_on_batch.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    out.mkdir()
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(script), str(out / "two")], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    monkeypatch.setattr(sys, "argv", [str(script), str(out / "one")])
    runpy.run_path(str(script), run_name="__main__")  # the same script in this one process
    single = json.loads((out / "one.0.json").read_text())
    ranks = [json.loads((out / f"two.{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        for got, expected in zip(r["logs"], single["logs"], strict=True):  # loss, accuracy over both halves
            assert got == pytest.approx(expected, rel=1e-6)
        for k, v in single["weights"].items():
            np.testing.assert_allclose(r["weights"][k], v, rtol=1e-5, atol=1e-6)
