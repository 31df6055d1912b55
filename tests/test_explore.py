"""The batch-size explorer, the largest-batch search and the learning-rate range test (docs/batch-size.md)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_classification
from torch import nn

import epochwise as ew
from epochwise import cli
from epochwise.engine.step import StepRunner
from epochwise.explore import explore_batch_sizes, find_learning_rate, find_max_batch_size
from epochwise.insight import explorer as explore
from epochwise.insight import lr_range as _lr_range
from epochwise.insight import probe as _probe

X, Y = make_classification(n=60, features=4, classes=3)
XV, YV = make_classification(n=20, features=4, classes=3, seed=1)


def _builder(optimizer=lambda: ew.optimizers.Adam(learning_rate=0.01)):
    """Each call builds a module with different random weights: only the explorer's copy makes them equal."""
    counter = itertools.count()

    def build():
        torch.manual_seed(100 + next(counter))
        model = ew.Model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), device="cpu")
        model.compile(optimizer=optimizer(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    return build


def _state(model) -> dict[str, torch.Tensor]:
    """Every tensor a run can change: weights, gradients, optimizer state, RNG."""
    out = {f"module.{k}": v.clone() for k, v in model.module.state_dict().items()}
    out.update(
        {f"grad.{k}": p.grad.clone() for k, p in model.module.named_parameters() if p.grad is not None}
    )
    for i, (pid, state) in enumerate(model.optimizer.torch_optimizer.state_dict()["state"].items()):
        out.update({f"opt.{i}.{pid}.{k}": v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)})
    out["rng"] = torch.get_rng_state()
    return out


def _assert_bitwise_equal(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


# --- explore_batch_sizes -----------------------------------------------------------------------------
def test_one_row_per_batch_size_with_consistent_numbers(capsys):
    rows = explore_batch_sizes(_builder(), X, Y, [8, 16, 64], epochs=3, validation_data=(XV, YV), seed=0)
    assert [r["batch_size"] for r in rows] == [8, 16, 64]
    for r in rows:
        assert r["iterations_per_epoch"] == math.ceil(60 / r["batch_size"])  # D1: the partial batch counts
        assert r["samples_per_second"] == pytest.approx(60 / r["seconds_per_epoch"], rel=1e-12)
        assert r["oom"] is False and r["error"] == "" and r["peak_memory_mib"] > 0
        assert 1 <= r["best_val_loss_epoch"] <= 3 and 1 <= r["best_val_accuracy_epoch"] <= 3
    assert rows.metric == "accuracy" and rows.memory_kind == "rss"
    out = capsys.readouterr().out
    assert "batch 8 (8 iterations/epoch)" in out and "| batch_size | iterations_per_epoch |" in out


def test_every_batch_size_starts_from_the_first_models_weights():
    build = _builder()
    rows = explore_batch_sizes(build, X, Y, [8, 32], epochs=3, validation_data=(XV, YV), seed=5, verbose=0)
    first = _builder()()  # the same first model: same seed in a fresh counter
    initial = {k: v.clone() for k, v in first.module.state_dict().items()}
    for row in rows:  # a reference run from those weights reproduces the row's best values exactly
        ref = _builder()()
        ref.module.load_state_dict(initial)
        history = ref.fit(
            X, Y, batch_size=row["batch_size"], epochs=3, validation_data=(XV, YV), seed=5, verbose=0
        )
        val = history.history["val_loss"]
        assert row["best_val_loss"] == min(val) and row["best_val_loss_epoch"] == val.index(min(val)) + 1
        assert row["best_val_accuracy"] == max(history.history["val_accuracy"])


def test_first_epoch_is_warm_up_and_left_out(monkeypatch):
    ticks = iter([0.0, 10.0, 10.0, 12.0, 12.0, 16.0])  # epochs of 10 s, 2 s and 4 s
    monkeypatch.setattr(explore, "_clock", lambda: next(ticks))
    (row,) = explore_batch_sizes(_builder(), X, Y, [30], epochs=3, verbose=0)
    assert row["first_epoch_seconds"] == 10.0 and row["seconds_per_epoch"] == 3.0
    assert row["samples_per_second"] == 20.0
    assert "best_loss" in row and "best_val_loss" not in row  # no validation: training values


def test_validation_time_is_not_training_time(monkeypatch):
    calls = []
    monkeypatch.setattr(explore, "_clock", lambda: calls.append(len(calls)) or float(len(calls)))
    (row,) = explore_batch_sizes(_builder(), X, Y, [60], epochs=1, validation_split=0.25, verbose=0)
    assert len(calls) == 2 and row["seconds_per_epoch"] == 1.0  # read at epoch begin and validation begin
    assert row["iterations_per_epoch"] == 1 and row["samples_per_second"] == 45.0  # F7: floor(60 * 0.75)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
    ],
)
def test_out_of_memory_is_a_row_not_a_crash(monkeypatch, error):
    real_fit = ew.Model.fit

    def fit(self, *args, **kwargs):
        if kwargs["batch_size"] == 32:
            raise error
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(ew.Model, "fit", fit)
    rows = explore_batch_sizes(_builder(), X, Y, [16, 32, 60], epochs=1, validation_data=(XV, YV), verbose=0)
    assert [r["oom"] for r in rows] == [False, True, False]
    failed = rows[1]
    assert failed["error"].startswith(type(error).__name__) and failed["seconds_per_epoch"] is None
    assert list(failed) == list(rows[0])  # the same columns, so the CSV stays rectangular


def test_other_errors_are_not_swallowed(monkeypatch):
    monkeypatch.setattr(
        ew.Model, "fit", lambda self, *a, **k: (_ for _ in ()).throw(ValueError("bad labels"))
    )
    with pytest.raises(ValueError, match="bad labels"):
        explore_batch_sizes(_builder(), X, Y, [16], verbose=0)


def test_saves_csv_markdown_and_figure(tmp_path):
    rows = explore_batch_sizes(
        _builder(), X, Y, [16, 60], epochs=1, validation_data=(XV, YV), verbose=0, output_dir=tmp_path
    )
    table = pd.read_csv(tmp_path / "batch-sizes.csv", keep_default_na=False)  # error: ""
    pd.testing.assert_frame_equal(table, rows.to_dataframe(), check_dtype=False)
    assert (tmp_path / "batch-sizes.md").read_text().startswith("| batch_size |")
    assert (tmp_path / "batch-sizes.png").read_bytes()[:4] == b"\x89PNG"
    fig = rows.plot()
    assert [ax.get_title() for ax in fig.axes] == [
        "seconds per epoch",
        "best_val_accuracy",
        "peak memory (MiB)",
    ]
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [16, 60] and list(line.get_ydata()) == [
        r["seconds_per_epoch"] for r in rows
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_sizes": []}, "at least one"),
        ({"batch_sizes": [8, 8]}, "once"),
        ({"batch_sizes": [0]}, "positive"),
        ({"epochs": 0}, "epochs"),
        ({"metric": "acuracy"}, "Did you mean 'accuracy'"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        explore_batch_sizes(_builder(), X, Y, **{"batch_sizes": [8], **kwargs}, verbose=0)


def test_build_model_must_return_a_compiled_model_of_one_architecture():
    with pytest.raises(TypeError, match="compiled epochwise Model"):
        explore_batch_sizes(lambda: nn.Linear(4, 3), X, Y, [8], verbose=0)
    sizes = iter([8, 9])

    def build():
        model = ew.Model(nn.Linear(4, next(sizes)), device="cpu")
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    with pytest.raises(ValueError, match="same architecture"):
        explore_batch_sizes(build, X, Y, [8, 16], epochs=1, verbose=0)


def test_cli_sweep_with_a_factory(tmp_path, monkeypatch, capsys):
    (tmp_path / "sweepfactory.py").write_text(
        "import numpy as np, torch, epochwise as ew\n"
        "def build():\n"
        "    m = ew.Model(torch.nn.Linear(3, 2), device='cpu')\n"
        "    m.compile(optimizer='sgd', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n"
        "    return m\n"
        "def data():\n"
        "    rng = np.random.default_rng(0)\n"
        "    return rng.normal(size=(40, 3)).astype('float32'), rng.integers(0, 2, 40), "
        "(rng.normal(size=(10, 3)).astype('float32'), rng.integers(0, 2, 10))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "sweep"
    code = cli.main(
        [
            "sweep",
            "--factory",
            "sweepfactory:build",
            "--data",
            "sweepfactory:data",
            "--batch-sizes",
            "8,40",
            "--epochs",
            "1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    assert list(pd.read_csv(out / "batch-sizes.csv")["iterations_per_epoch"]) == [5, 1]
    assert "Saved batch-sizes.csv, batch-sizes.md, batch-sizes.png" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="module:function"):
        cli.main(["sweep", "--factory", "sweepfactory.build"])


# --- find_max_batch_size -----------------------------------------------------------------------------
def test_doubling_then_bisection_finds_the_threshold():
    calls = []
    best, trials = _probe._largest_fitting(lambda s: calls.append(s) or s <= 300, limit=10_000)
    assert best == 300
    assert calls[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]  # doubling until the first failure
    assert [s for s, ok in trials if not ok][0] == 512 and len(calls) <= 10 + 8  # then log2(256) bisections
    assert _probe._largest_fitting(lambda s: True, limit=100)[0] == 100


def test_gpu_method_recovers_from_each_simulated_oom_and_restores_the_model(monkeypatch, capsys):
    model = _builder()()
    model.fit(X, Y, epochs=1, verbose=0)  # optimizer state exists and must come back
    before = _state(model)
    real_step = StepRunner.train_step
    failures = []

    def step(runner, x, y, sw, check_first=None):
        if x.shape[0] > 300:
            failures.append(x.shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_step(runner, x, y, sw, check_first)

    monkeypatch.setattr(StepRunner, "train_step", step)
    assert find_max_batch_size(model, X, Y, method="oom", max_batch_size=4096) == 300
    assert failures[0] == 512 and len(failures) > 1
    assert "(out of memory)" in capsys.readouterr().out
    _assert_bitwise_equal(before, _state(model))


def test_allocation_counter_counts_new_storages_once_and_frees_them():
    with _probe._AllocationCounter() as counter:
        a = torch.ones(1000)  # 4,000 bytes
        view = a.view(10, 100)  # a view: no new storage
        a.add_(1)  # in place: none
        b = torch.zeros(500, dtype=torch.float64)  # 4,000 bytes
        del b
        c = view * 2  # 4,000 bytes, after b was freed
    assert counter.peak == 8_000 and counter.live == 8_000
    del a, view, c
    assert counter.live == 0


def test_budget_search_on_a_convex_piecewise_linear_step():  # the chord argument of docs/batch-size.md
    measured = []

    def measure(size):
        measured.append(size)
        return max(1_000 + 2 * size, 50 * size - 5_000)

    best, _ = _probe._within_budget(measure, 100_000, limit=1_000_000)
    assert best == 2_100 and len(measured) < 20
    assert max(measure(s) for s in measured[:-1] if s <= best) <= 100_000
    assert _probe._within_budget(measure, 100_000, limit=1_000)[0] == 1_000


def test_cpu_budget_gives_the_largest_batch_within_it():
    model = _builder()()
    before = _state(model)
    runner = StepRunner(model, training=True)
    data = _probe._arrays(X, Y, "test")

    def total(size):  # what the search counts: the step's peak plus the batch, above weights and state
        batch = _probe._batch(data, size, model.device)
        with _probe._AllocationCounter() as counter:
            runner.train_step(*batch)
        return counter.peak + sum(t.numel() * t.element_size() for t in (batch[0], batch[1]))

    runner.train_step(*_probe._batch(data, 1, model.device))
    resident = _probe._resident_bytes(model)
    budget = resident + total(150) + 10
    model.module.load_state_dict({k[7:]: v for k, v in before.items() if k.startswith("module.")})
    best = find_max_batch_size(model, X, Y, max_batch_size=5_000, memory_budget_bytes=budget, verbose=0)
    assert 150 <= best < 5_000
    assert resident + total(best) <= budget < resident + total(best + 1)
    with pytest.raises(ValueError, match="too small"):
        find_max_batch_size(model, X, Y, memory_budget_bytes=resident, verbose=0)


def test_cpu_budget_capped_by_the_number_of_samples(capsys):
    model = _builder()()
    before = _state(model)
    assert find_max_batch_size(model, X, Y) == 60  # 25% of the RAM holds far more than 60 samples
    assert "the largest batch within budget is 60 (the limit, max_batch_size)" in capsys.readouterr().out
    _assert_bitwise_equal(before, _state(model))


def test_find_max_batch_size_argument_errors():
    model = _builder()()
    with pytest.raises(ValueError, match="method"):
        find_max_batch_size(model, X, Y, method="guess")
    with pytest.raises(ValueError, match="needs max_batch_size"):
        find_max_batch_size(model, X, Y, method="oom")  # a CPU out of memory is not an exception
    with pytest.raises(TypeError, match="compiled epochwise Model"):
        find_max_batch_size(nn.Linear(4, 3), X, Y)
    with pytest.raises(TypeError, match="in-memory arrays"):
        find_max_batch_size(model, [(X, Y)], None)


# --- find_learning_rate ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: ew.optimizers.Adam(learning_rate=0.01),
        lambda: ew.optimizers.SGD(learning_rate=0.1, momentum=0.9),
        lambda: ew.optimizers.SGD(learning_rate=ew.schedules.ExponentialDecay(0.1, 10, 0.5)),
    ],
)
def test_range_test_restores_weights_and_optimizer_bitwise(optimizer):
    model = _builder(optimizer)()
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    before, iterations, lr = _state(model), model.optimizer.iterations, model.optimizer.learning_rate
    schedule = model.optimizer.schedule
    result = find_learning_rate(model, X, Y, num_steps=40, verbose=0)
    assert len(result.lrs) > 5
    _assert_bitwise_equal(before, _state(model))
    assert model.optimizer.iterations == iterations and model.optimizer.learning_rate == lr
    assert model.optimizer.schedule is schedule and model.module.training


def test_learning_rates_rise_exponentially_and_each_step_uses_its_own(monkeypatch):
    model = _builder()()
    torch_opt = model.optimizer.torch_optimizer
    used = []
    real_step = torch_opt.step
    monkeypatch.setattr(
        torch_opt, "step", lambda *a, **k: used.append(torch_opt.param_groups[0]["lr"]) or real_step(*a, **k)
    )
    result = find_learning_rate(
        model, X, Y, start_lr=1e-5, end_lr=1.0, num_steps=11, diverge_factor=1e9, verbose=0
    )
    expected = [1e-5 * 10 ** (i / 2) for i in range(11)]
    np.testing.assert_allclose(result.lrs, expected, rtol=1e-12)
    np.testing.assert_allclose(used, expected, rtol=1e-12)
    average, smoothed = 0.0, []  # bias-corrected exponential moving average, beta = 0.98
    for i, value in enumerate(result.raw_losses):
        average = 0.98 * average + 0.02 * value
        smoothed.append(average / (1 - 0.98 ** (i + 1)))
    np.testing.assert_allclose(result.losses, smoothed, rtol=1e-12)


def test_stops_when_the_smoothed_loss_diverges():
    model = _builder(lambda: ew.optimizers.SGD(learning_rate=0.1))()
    result = find_learning_rate(
        model, X * 100, Y, start_lr=1e-3, end_lr=1e4, num_steps=60, smoothing=0.5, verbose=0
    )
    assert result.stopped_early and len(result.lrs) < 60
    last = result.losses[-1]
    assert not math.isfinite(last) or last > 4 * min(result.losses[:-1])
    assert all(v <= 4 * min(result.losses[: i + 1]) for i, v in enumerate(result.losses[:-1]))


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = list(np.logspace(-6, 0, 61))  # 10 points per decade
    loss = [
        2.0 - math.tanh(2 * (math.log10(lr) + 3)) + (0.5 * (math.log10(lr) + 1) ** 2 if lr > 0.1 else 0)
        for lr in lrs
    ]
    at = _lr_range._suggest(lrs, loss)
    assert lrs[at] == pytest.approx(1e-3)  # tanh falls fastest at its centre
    assert _lr_range._suggest([*lrs, 2.0], [*loss, math.inf]) == at  # a diverged last step is ignored
    assert _lr_range._suggest(lrs[:4], loss[:4]) is None


def test_result_plot_marks_the_suggestion(tmp_path):
    model = _builder()()
    result = find_learning_rate(model, X, Y, num_steps=60, verbose=0)
    fig = result.plot(tmp_path / "lr.svg")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[:2] == ["loss (per step)", "smoothed loss"] and fig.axes[0].get_xscale() == "log"
    if result.suggestion is not None:
        assert f"suggestion {result.suggestion:.2e}" in labels
    assert "<svg" in (tmp_path / "lr.svg").read_text()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 1}, "at least 2"),
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr < end_lr"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"diverge_factor": 1.0}, "diverge_factor"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_range_test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_learning_rate(_builder()(), X, Y, verbose=0, **kwargs)
