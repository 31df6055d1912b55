"""OptunaPruning: a real Optuna study prunes the bad trials, reports what History logged, stops cleanly.

The pruning decisions are Optuna's own (MedianPruner on an in-memory study); the reported values are
checked against the History fit returned.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew
from epochwise.callbacks import BackupAndRestore, Callback, OptunaPruning

optuna = pytest.importorskip("optuna", reason="OptunaPruning needs optuna: pip install 'epochwise[optuna]'")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _quiet_and_one_thread():
    """Tiny nets: one intra-op thread is many times faster on a shared machine; Optuna's INFO lines off."""
    threads, level = torch.get_num_threads(), optuna.logging.get_verbosity()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(level)


def blobs(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 4)) * 3
    y = rng.integers(0, 3, n)
    return (centers[y] + rng.normal(size=(n, 4))).astype("float32"), y.astype("int64")


X, Y = blobs()


def net(learning_rate: float = 0.1, metrics=None) -> ew.Model:
    torch.manual_seed(0)
    model = ew.Model(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)), device="cpu")
    model.compile(optimizer=ew.optimizers.SGD(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=metrics)
    return model


def fit(model, callbacks, epochs=6, **kwargs):
    return model.fit(X, Y, epochs=epochs, batch_size=32, validation_split=0.25, callbacks=callbacks, verbose=0,
                     seed=0, **kwargs)


class PruneAtSecondReport(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return len(trial.intermediate_values) >= 2


# --- a study --------------------------------------------------------------------------------------
def test_a_study_prunes_the_bad_learning_rates_and_completes_the_good_ones():
    histories, callbacks = {}, {}

    def objective(trial):
        model = net(trial.suggest_float("learning_rate", 1e-6, 1.0, log=True))
        pruning = OptunaPruning(trial, monitor="val_loss")
        history = fit(model, [pruning])
        histories[trial.number], callbacks[trial.number] = history.history, pruning
        pruning.check_pruned()
        return history.history["val_loss"][-1]

    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for lr in (0.1, 0.05, 1e-5, 0.2, 1e-6):  # the 3rd and 5th barely learn
        study.enqueue_trial({"learning_rate": lr})
    study.optimize(objective, n_trials=5)

    states = [t.state for t in study.trials]
    done, pruned = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert states == [done, done, pruned, done, pruned]
    for trial in study.trials:
        val_loss = histories[trial.number]["val_loss"]
        # every epoch was reported, at its 0-based epoch, with History's own value
        assert trial.intermediate_values == dict(enumerate(val_loss))
        pruning = callbacks[trial.number]
        assert pruning.pruned == (trial.state == pruned)
        assert pruning.best == min(val_loss) and pruning.best_epoch == int(np.argmin(val_loss))
        if trial.state == done:
            assert len(val_loss) == 6 and trial.value == val_loss[-1]
        else:  # stopped cleanly after the epoch the pruner rejected: History holds what ran
            assert pruning.pruned_epoch == len(val_loss) - 1 < 5
            assert pruning.pruned_value == val_loss[-1]
            assert pruning.summary() == (f"Optuna pruned the trial at epoch {len(val_loss)} "
                                         f"(val_loss {val_loss[-1]:.4f})")
    assert study.best_trial.params == {"learning_rate": 0.2}


def test_pruning_stops_training_and_lets_every_callback_end():
    """The pruner says yes at the 2nd report: fit returns (no exception), on_train_end ran for all."""

    class Ends(Callback):
        ended = False

        def on_train_end(self, logs=None):
            self.ended = True

    study = optuna.create_study(pruner=PruneAtSecondReport())
    trial = study.ask()
    pruning, ends = OptunaPruning(trial), Ends()
    history = fit(net(), [pruning, ends])
    assert history.epoch == [0, 1] and ends.ended and pruning.pruned_epoch == 1
    with pytest.raises(optuna.TrialPruned, match=r"Trial 0 was pruned at epoch 2 \(val_loss "):
        pruning.check_pruned()
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED


def test_check_pruned_does_nothing_when_the_run_was_not_pruned():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    pruning = OptunaPruning(study.ask(), monitor="val_accuracy")
    history = fit(net(metrics=["accuracy"]), [pruning], epochs=3)
    pruning.check_pruned()  # no exception
    assert not pruning.pruned and pruning.summary() is None
    assert pruning.best == max(history.history["val_accuracy"])  # the study maximises: best is the largest


# --- errors before the first step -----------------------------------------------------------------
def _untrained(model):
    return {k: v.clone() for k, v in model.module.state_dict().items()}


@pytest.mark.parametrize(
    "monitor, fit_kwargs, message",
    [
        ("val_los", {}, r"OptunaPruning\(monitor='val_los'\).*Did you mean 'val_loss'"),
        ("val_loss", {"validation_split": 0.0}, r"exists only when fit validates: pass validation_data"),
    ],
)
def test_a_monitor_fit_will_not_log_is_an_error_before_training(monitor, fit_kwargs, message):
    study = optuna.create_study()
    trial = study.ask()
    model = net()
    before = _untrained(model)
    kwargs = {"validation_split": 0.25, **fit_kwargs}
    with pytest.raises(ValueError, match=message):
        model.fit(X, Y, epochs=2, verbose=0, callbacks=[OptunaPruning(trial, monitor=monitor)], **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())  # no step taken
    assert study.trials[0].intermediate_values == {}


def test_a_monitor_moving_against_the_study_is_an_error():
    study = optuna.create_study(direction="maximize")
    with pytest.raises(ValueError, match=r"the study maximises, but 'val_loss' should go down.*direction='minimize'"):
        fit(net(), [OptunaPruning(study.ask(), monitor="val_loss")], epochs=1)


def test_a_multi_objective_study_is_an_error():
    study = optuna.create_study(directions=["minimize", "minimize"])
    with pytest.raises(ValueError, match="Optuna prunes only single-objective studies"):
        fit(net(), [OptunaPruning(study.ask())], epochs=1)


def test_the_trial_argument_is_checked():
    with pytest.raises(TypeError, match=r"OptunaPruning\(trial=0.5\): trial must be the optuna.trial.Trial"):
        OptunaPruning(0.5)
    with pytest.raises(ValueError, match=r"OptunaPruning\(trial=None\): pass the trial"):
        fit(net(), [OptunaPruning(None)], epochs=1)  # one process: rank 0 needs the trial


def test_missing_optuna_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'epochwise\[optuna\]'"):
        OptunaPruning(None)


def test_importing_epochwise_imports_neither_optuna_nor_sklearn():
    code = ("import sys, epochwise as ew; ew.callbacks.OptunaPruning; "
            "print(sorted(m for m in ('optuna', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- resume --------------------------------------------------------------------------------------
class CrashAtEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("crash")


def test_backup_and_restore_resumes_the_pruning_state(tmp_path):
    """A run killed in epoch 3 resumes there (a new trial in a new process would get steps 2..5); the
    callback's best survives the resume under its state key."""
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    first, second = study.ask(), study.ask()
    pruning = OptunaPruning(first)
    assert pruning.state_key == "OptunaPruning(val_loss)"
    with pytest.raises(RuntimeError, match="crash"):
        fit(net(), [BackupAndRestore(tmp_path), pruning, CrashAtEpoch(2)])
    resumed = OptunaPruning(second)
    history = fit(net(), [BackupAndRestore(tmp_path), resumed])
    val_loss = history.history["val_loss"]
    assert len(val_loss) == 6 and history.epoch == [0, 1, 2, 3, 4, 5]
    assert study.trials[0].intermediate_values == dict(enumerate(val_loss[:2]))
    assert study.trials[1].intermediate_values == {e: val_loss[e] for e in range(2, 6)}
    assert resumed.best == min(val_loss) and resumed.best_epoch == int(np.argmin(val_loss))


# --- torchrun -----------------------------------------------------------------------------------
def test_under_torchrun_rank_zero_decides_and_every_rank_stops(monkeypatch):
    """Rank 0 then rank 1 of a 2-process run, simulated in this process: the broadcast hands rank 1 what
    rank 0 sent. Rank 1 holds no trial and stops where rank 0 pruned; both join the same collectives,
    in the same order, so neither waits forever. The real 2-process run is the test after this one."""
    sent: list[int] = []

    def rank0_broadcast(value):
        sent.append(int(value))
        return int(value)

    monkeypatch.setattr(ew.distributed, "broadcast_int", rank0_broadcast)
    study = optuna.create_study(pruner=PruneAtSecondReport())
    rank0 = OptunaPruning(study.ask())
    history0 = fit(net(), [rank0])

    received, asked = iter(sent), []

    def rank1_broadcast(value):
        asked.append(int(value))
        return next(received)

    monkeypatch.setattr(ew.distributed, "broadcast_int", rank1_broadcast)
    monkeypatch.setattr(ew.distributed, "is_main_process", lambda: False)
    rank1 = OptunaPruning(None)
    history1 = fit(net(), [rank1])

    assert len(asked) == len(sent)  # the same collectives on both ranks
    assert history0.epoch == history1.epoch == [0, 1] and rank0.pruned_epoch == rank1.pruned_epoch == 1
    assert sent[-1] == 1 and asked[-1] == 0  # rank 1 had no trial to ask; rank 0's decision stopped it
    assert history1.history["val_loss"] == history0.history["val_loss"]
    assert study.trials[0].intermediate_values == dict(enumerate(history0.history["val_loss"]))

    monkeypatch.setattr(ew.distributed, "broadcast_int", lambda value: 2)  # rank 0 rejected its arguments
    with pytest.raises(ValueError, match="rank 0 rejected its trial or monitor"):
        fit(net(), [OptunaPruning(None)], epochs=1)


def test_a_real_two_process_run_stops_both_ranks_where_rank_zero_pruned(tmp_path):
    """torchrun, 2 processes on gloo: rank 0 reports to its trial, rank 1 has none; both stop at epoch 2."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(ROOT / "tests" / "distributed" / "optuna_script.py"), "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0, rank1 = (json.loads(Path(f"{out}.{r}.json").read_text()) for r in (0, 1))
    assert rank0["epoch"] == rank1["epoch"] == [0, 1]  # 8 planned; pruned at the second report
    assert rank0["pruned"] and rank1["pruned"] and rank0["pruned_epoch"] == rank1["pruned_epoch"] == 1
    assert rank1["reported"] is None  # only rank 0 reports
    assert rank0["reported"] == {str(k): v for k, v in enumerate(rank0["val_loss"])}
    assert rank1["val_loss"] == rank0["val_loss"]  # validation is reduced over both ranks
