"""The largest-batch search, the range test and the explorer train through fit's own step (StepRunner):
gradient accumulation, mixed precision and the grad scaler apply exactly as in fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_classification
from torch import nn

import epochwise as ew
from epochwise.insight import probe as _probe
from epochwise.insight.explorer import explore_batch_sizes, find_learning_rate, find_max_batch_size

X, Y = make_classification(n=60, features=4, classes=3)


def _model(optimizer=lambda: ew.optimizers.SGD(learning_rate=0.1), **compile_kwargs) -> ew.Model:
    torch.manual_seed(3)
    model = ew.Model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), device="cpu")
    model.compile(optimizer=optimizer(), loss="sparse_categorical_crossentropy", **compile_kwargs)
    return model


def _count(model, monkeypatch) -> dict:
    """Counts forward passes of the module and torch optimizer steps, and records each step's rate."""
    seen = {"forward": 0, "steps": 0, "lrs": [], "dtypes": set()}

    def hook(module, args, out):
        seen["forward"] += 1
        seen["dtypes"].add(out.dtype)

    model.module.register_forward_hook(hook)
    torch_opt = model.optimizer.torch_optimizer
    real_step = torch_opt.step

    def step(*args, **kwargs):
        seen["steps"] += 1
        seen["lrs"].append(torch_opt.param_groups[0]["lr"])
        return real_step(*args, **kwargs)

    monkeypatch.setattr(torch_opt, "step", step)
    return seen


def _state(model) -> dict[str, torch.Tensor]:
    out = {f"module.{k}": v.clone() for k, v in model.module.state_dict().items()}
    out.update({f"grad.{k}": p.grad.clone() for k, p in model.module.named_parameters() if p.grad is not None})
    for pid, state in model.optimizer.torch_optimizer.state_dict()["state"].items():
        out.update({f"opt.{pid}.{k}": v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)})
    out["rng"] = torch.get_rng_state()
    return out


def test_range_test_accumulates_two_batches_per_update_as_fit_does(monkeypatch):
    """accumulate_steps=2 with batches of half the data: every update is one full-batch gradient step,
    so the test's losses and the weights it reaches follow plain full-batch gradient descent in torch."""
    model = _model(accumulate_steps=2)
    reference = {k: v.clone() for k, v in model.module.state_dict().items()}
    seen = _count(model, monkeypatch)
    weights = []
    real_step = model.optimizer.torch_optimizer.step

    def step_and_record(*args, **kwargs):
        out = real_step(*args, **kwargs)
        weights.append([p.detach().clone() for p in model.module.parameters()])
        return out

    monkeypatch.setattr(model.optimizer.torch_optimizer, "step", step_and_record)
    before = _state(model)
    result = find_learning_rate(
        model, X, Y, start_lr=1e-3, end_lr=0.5, num_steps=6, batch_size=30, diverge_factor=1e9, verbose=0
    )
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.optimizer.iterations == 0
    assert seen["forward"] == 12 and seen["steps"] == 6  # two batches per optimizer step
    np.testing.assert_allclose(seen["lrs"], result.lrs, rtol=1e-12)

    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    net.load_state_dict(reference)
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    for i, lr in enumerate(result.lrs):
        loss = nn.functional.cross_entropy(net(x), y)
        assert result.raw_losses[i] == pytest.approx(loss.item(), rel=1e-5)  # the mean of the group's two
        net.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
        for got, want in zip(weights[i], net.parameters()):
            torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)


def test_largest_batch_search_probes_a_whole_accumulation_group(monkeypatch):
    model = _model(optimizer=lambda: ew.optimizers.Adam(learning_rate=0.01), accumulate_steps=2)
    before = _state(model)
    seen = _count(model, monkeypatch)
    best = find_max_batch_size(model, X, Y, verbose=0)
    assert best == 60
    assert seen["steps"] >= 2 and seen["forward"] == 2 * seen["steps"]  # each probe: 2 batches, 1 update
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_oom_search_drops_a_group_cut_short_and_restores_the_model(monkeypatch):
    model = _model(accumulate_steps=3)
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    before = _state(model)
    seen = _count(model, monkeypatch)
    calls = []

    def hook(module, args):
        calls.append(args[0].shape[0])
        if args[0].shape[0] > 20 and calls.count(args[0].shape[0]) == 2:  # the group's second batch fails
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    model.module.register_forward_pre_hook(hook)
    assert find_max_batch_size(model, X, Y, method="oom", max_batch_size=100, verbose=0) == 20
    fitting = [s for s in dict.fromkeys(calls) if s <= 20]
    assert seen["steps"] == len(fitting)  # one update per fitting size, none for a failed group
    assert all(calls.count(s) == 3 for s in fitting)
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)])
def test_mixed_precision_applies_and_the_model_is_restored_exactly(monkeypatch, precision, dtype):
    model = _model(optimizer=lambda: ew.optimizers.Adam(learning_rate=0.01), precision=precision)
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    before, iterations = _state(model), model.optimizer.iterations
    seen = _count(model, monkeypatch)
    find_learning_rate(model, X, Y, num_steps=8, batch_size=16, verbose=0)
    find_max_batch_size(model, X, Y, max_batch_size=8, verbose=0)
    assert seen["dtypes"] == {dtype}  # the forward ran under autocast, as in fit
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.optimizer.iterations == iterations


def _build():
    torch.manual_seed(7)
    model = ew.Model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_explorer_samples_memory_per_batch_only_without_a_high_water_mark(monkeypatch):
    samples = []
    real_sample = _probe._PeakMemory.sample
    monkeypatch.setattr(_probe._PeakMemory, "sample", lambda self: samples.append(1) or real_sample(self))
    memory = _probe._PeakMemory(torch.device("cpu"))
    memory.start()
    if memory.needs_sampling:
        pytest.skip("this kernel keeps no resettable high-water mark")
    samples.clear()
    rows = explore_batch_sizes(_build, X, Y, [16], epochs=2, verbose=0)
    assert samples == [] and rows[0]["peak_memory_mib"] > 0  # the kernel's mark: no per-batch hook

    real_status = _probe._proc_status
    monkeypatch.setattr(_probe, "_proc_status", lambda key: None if key == "VmHWM" else real_status(key))
    rows = explore_batch_sizes(_build, X, Y, [16], epochs=2, verbose=0)
    assert len(samples) == 2 * 4 + 1  # each of the 2 x ceil(60 / 16) batch ends, and once for the peak
    assert rows[0]["peak_memory_mib"] > 0
