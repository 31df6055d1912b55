"""OptunaPruning: report the monitored value to an Optuna trial each epoch; stop when the pruner says so.

Optuna is imported only when the callback is built (``pip install 'epochwise[optuna]'``), so importing
epochwise never imports it.
"""

from __future__ import annotations

from typing import Any

from .. import distributed
from ._monitor import MonitorCallback, format_value

__all__ = ["OptunaPruning"]

_ERROR = 2  # broadcast by rank 0 when it rejected the trial at train begin


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as err:
        raise ImportError("OptunaPruning needs Optuna, which is not installed: pip install 'epochwise[optuna]'") from err
    return optuna


class OptunaPruning(MonitorCallback):
    """Report ``monitor`` to ``trial`` at every epoch end and stop training cleanly when it should be pruned.

    Each epoch that logs ``monitor`` is reported as ``trial.report(value, step=epoch)`` (0-based epoch);
    when ``trial.should_prune()`` answers yes, training stops after that epoch (``model.stop_training``),
    every callback's ``on_train_end`` runs and ``fit`` returns the History of the epochs that ran. Optuna
    marks a trial pruned only when the objective raises ``optuna.TrialPruned``: call :meth:`check_pruned`
    after fit, which raises it. After fit: ``pruned``, ``pruned_epoch`` (0-based, or None), ``best`` and
    ``best_epoch`` (the best reported value, by the study's direction).

    A misspelt ``monitor`` (not among the keys fit will log) is a ValueError before the first step, and so
    is a monitor that moves the other way than the study optimises (``val_loss`` in a study that
    maximises). Under torchrun pass the trial on rank 0 and None on the other ranks: only rank 0
    reports, and its decision stops every rank.

    Example::

        def objective(trial):
            model = build(learning_rate=trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True))
            pruning = ew.callbacks.OptunaPruning(trial, monitor="val_loss")
            history = model.fit(x, y, epochs=20, validation_split=0.2, callbacks=[pruning])
            pruning.check_pruned()  # raises optuna.TrialPruned if the pruner stopped this trial
            return history.history["val_loss"][-1]
    """

    skip_note = "this epoch is not reported to the trial"

    def __init__(self, trial: Any, monitor: str = "val_loss") -> None:
        _optuna()  # a clear ImportError now rather than at the first epoch
        super().__init__(monitor, "auto")
        if trial is not None and not (callable(getattr(trial, "report", None))
                                      and callable(getattr(trial, "should_prune", None))):
            raise TypeError(
                f"OptunaPruning(trial={trial!r}): trial must be the optuna.trial.Trial the objective receives "
                "(it needs report() and should_prune()); None only on the ranks other than 0 under torchrun"
            )
        self.trial = trial
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.pruned_epoch: int | None = None
        self.pruned_value: float | None = None

    @property
    def pruned(self) -> bool:
        """Whether the pruner stopped this run."""
        return self.pruned_epoch is not None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "pruned_epoch": self.pruned_epoch,
                "pruned_value": self.pruned_value}

    # --- fit ----------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._take_resume():
            self._reset()
        self.direction = None
        self._check_monitor_keys()  # the same keys on every rank: all ranks raise together
        code, error = 0, None
        if distributed.is_main_process():
            try:
                code = 1 if self._main_direction() == "max" else 0
            except ValueError as err:
                code, error = _ERROR, err
        code = distributed.broadcast_int(code)
        if error is not None:
            raise error
        if code == _ERROR:
            raise ValueError("OptunaPruning: rank 0 rejected its trial or monitor (its error says why)")
        self.direction = "max" if code == 1 else "min"

    def _check_monitor_keys(self) -> None:
        """A misspelt monitor is an error whatever the direction (``mode`` stays ``auto``)."""
        saved, self.direction = self.direction, "min"  # the direction is the study's, decided below
        try:
            self.check_monitor()
        finally:
            self.direction = saved

    def _main_direction(self) -> str:
        """Rank 0: the study's direction, checked against the way ``monitor`` should move."""
        if self.trial is None:
            raise ValueError(
                "OptunaPruning(trial=None): pass the trial the objective receives; None is only for the "
                "ranks other than 0 under torchrun"
            )
        directions = getattr(getattr(self.trial, "study", None), "directions", None) or []
        if len(directions) > 1:
            raise ValueError(
                f"OptunaPruning: the study has {len(directions)} objectives, and Optuna prunes only "
                "single-objective studies (trial.report is not supported); drop the callback or use one objective"
            )
        study = None
        if directions:
            study = "max" if getattr(directions[0], "name", "") == "MAXIMIZE" else "min"
        natural = self._natural_direction()
        if study is None and natural is None:
            raise ValueError(
                f"OptunaPruning(monitor={self.monitor!r}): the trial has no study direction and "
                f"{self.monitor!r} is neither a loss nor a compiled metric with a direction; pass the trial "
                "from study.optimize (or study.ask())"
            )
        if study is not None and natural is not None and natural != study:
            goal = {"min": "minimises", "max": "maximises"}[study]
            way = {"min": "down", "max": "up"}[natural]
            raise ValueError(
                f"OptunaPruning(monitor={self.monitor!r}): the study {goal}, but {self.monitor!r} should go "
                f"{way}, so the pruner would stop the best trials. Create the study with "
                f"direction={'minimize' if natural == 'min' else 'maximize'!r}, or monitor a value that "
                f"goes {'down' if study == 'min' else 'up'}."
            )
        return study or natural

    def _natural_direction(self) -> str | None:
        """The way ``monitor`` should move by the monitor rule (loss, or a metric's direction), else None."""
        saved, self.direction = self.direction, None
        try:
            return MonitorCallback.resolve_direction(self)
        except ValueError:
            return None
        finally:
            self.direction = saved

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self.monitor_value(logs, f"epoch {epoch + 1}")  # the same logs on every rank
        if value is None:
            return
        if self.best is None or self.is_improvement(value, self.best):
            self.best, self.best_epoch = value, epoch
        prune = 0
        if self.trial is not None:  # rank 0
            self.trial.report(value, step=epoch)
            prune = int(bool(self.trial.should_prune()))
        if distributed.broadcast_int(prune):  # rank 0 decides for every rank
            self.pruned_epoch, self.pruned_value = epoch, value
            self.model.stop_training = True

    # --- after fit ----------------------------------------------------------------------------
    def check_pruned(self) -> None:
        """Raise ``optuna.TrialPruned`` if the pruner stopped this run; call it after ``fit``."""
        if self.pruned_epoch is not None:
            number = getattr(self.trial, "number", None)
            which = f"Trial {number}" if number is not None else "The trial"
            raise _optuna().TrialPruned(
                f"{which} was pruned at epoch {self.pruned_epoch + 1} ({self.monitor} "
                f"{format_value(self.pruned_value)})"
            )

    def summary(self) -> str | None:
        if self.pruned_epoch is None:
            return None
        return (f"Optuna pruned the trial at epoch {self.pruned_epoch + 1} ({self.monitor} "
                f"{format_value(self.pruned_value)})")
