"""BackupAndRestore: run the same script again after a kill and it continues, bit for bit."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from .. import distributed
from ..io import files as _io
from ..io import training_state as _resume
from ..text import is_int
from .callback import Callback

__all__ = ["BackupAndRestore"]

_FILE = "backup.pt"
_PREVIOUS = "backup.pt.bkp"  # double_checkpoint's copy of the previous backup


class BackupAndRestore(Callback):
    """Back up everything a run's future depends on, and resume from it when fit starts again (BR1-BR7).

    The backup (``<backup_dir>/backup.pt``) holds the module, the optimizer (with the schedule's step),
    the grad scaler, the epoch and the batch within it, every RNG, the running loss and metrics of the
    epoch, the state of every callback and the History so far; see ``docs/reliability.md``. It is
    written atomically after all callbacks have seen the epoch end (``save_freq="epoch"``) or every
    ``save_freq`` batches, and when a Ctrl-C / SIGTERM ends the run. Calling fit again with the same
    callbacks continues where the backup was taken, mid-epoch included. When fit ends normally its own
    files are deleted (``delete_checkpoint=True``), and the folder too if this callback created it and
    nothing else is in it; other files in the folder are never touched. After a crash the backup stays.

    Example::

        model.fit(x, y, epochs=100, callbacks=[ew.callbacks.BackupAndRestore("backup")])
        # killed at epoch 37? run the same line again: it continues at epoch 37

    Differences from Keras (BR6, BR7): ``save_freq`` must be "epoch" or a positive int (Keras saves every
    batch for ``False`` or 0); the resume point is exact to the batch (Keras restarts the epoch), History
    covers the whole run, and nothing leaks into a later fit without the callback.
    """

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True, double_checkpoint: bool = False) -> None:
        super().__init__()
        if not backup_dir:
            raise ValueError("BackupAndRestore needs backup_dir, a folder for the backup, e.g. 'backup'")  # BR1
        if save_freq != "epoch" and not is_int(save_freq):
            raise ValueError(f"save_freq must be 'epoch' or a positive number of batches, got {save_freq!r}")
        self.backup_dir = Path(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self.double_checkpoint = bool(double_checkpoint)
        self.batches_seen = 0
        self.saves = 0
        self.resumed_from: tuple[int, int] | None = None
        self.created_dir = False  # this callback made backup_dir (kept in the backup, for a resumed run)
        self.removed: list[str] = []  # the files the last normal end of fit deleted
        self.removed_dir = False  # and whether it deleted backup_dir
        self._failed_warned = False
        self._interrupted = False

    @property
    def path(self) -> Path:
        return self.backup_dir / _FILE

    @property
    def previous_path(self) -> Path:
        return self.backup_dir / _PREVIOUS

    def state_dict(self) -> dict[str, Any]:
        return {"batches_seen": self.batches_seen, "created_dir": self.created_dir}

    def state_detail(self) -> str:
        return str(self.backup_dir)

    def resume_state(self) -> tuple[dict, str] | None:
        """The newest readable backup in ``backup_dir`` (BR4: else the previous one), to continue from."""
        self.resumed_from = None
        for candidate in (self.path, self.previous_path):
            if not candidate.exists():
                continue
            try:
                payload = _io.load_file(candidate)
            except (OSError, RuntimeError, ValueError) as err:  # BR4: fall back to the previous backup
                warnings.warn(f"BackupAndRestore: could not read {str(candidate)!r} ({err}); trying the next",
                              UserWarning, stacklevel=2)
                continue
            if _resume.is_training_state(payload):
                self.resumed_from = (int(payload["epoch"]), int(payload["batch"]))
                return payload, repr(str(candidate))
        return None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._interrupted = self._failed_warned = False
        self.removed, self.removed_dir = [], False
        if self.resumed_from is None:
            self.batches_seen = 0
            self.created_dir = False

    def after_train_batch(self, batch: int) -> None:
        if self.save_freq == "epoch":
            return
        self.batches_seen += 1
        if self.batches_seen % self.save_freq == 0:
            self._save()

    def after_epoch(self, epoch: int) -> None:
        if self.save_freq == "epoch":
            self._save()

    def on_interrupt(self, signum: int) -> None:
        self._interrupted = True
        self._save()  # Ctrl-C / SIGTERM mid-epoch: where we are, before on_train_end restores any weights

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._interrupted:
            return  # keep the backup (taken at the interruption or at the last save) to resume from
        if self.delete_checkpoint and distributed.is_main_process():  # BR5
            self._remove_own_files()

    def _remove_own_files(self) -> None:
        """Delete what this callback writes (the backup, its .bkp copy, their temporary files), and the
        folder if this callback created it and it is now empty; never anything else."""
        folder = self.backup_dir
        if not folder.is_dir():
            return
        own = [self.path, self.previous_path, *sorted(folder.glob(f".{_FILE}.*.tmp"))]
        for path in own:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                warnings.warn(f"BackupAndRestore could not remove {str(path)!r} ({err}); delete it by hand.",
                              UserWarning, stacklevel=3)
                continue
            self.removed.append(path.name)
        if self.created_dir:
            try:
                folder.rmdir()  # only when empty
                self.removed_dir = True
            except OSError:
                pass

    def _save(self) -> None:
        """A periodic save that fails warns and training goes on; the previous backup stays intact."""
        if not self.backup_dir.exists():
            self.created_dir = True  # before the save: the backup records it
        try:
            if self.double_checkpoint and self.path.exists():
                _io.atomic_write(self.previous_path, lambda tmp: shutil.copyfile(self.path, tmp))
            self.model.save(self.path, training_state=True)
            self.saves += 1
        except OSError as err:  # io.files turns any failed write (a full disk too) into an OSError naming it
            if not self._failed_warned:
                self._failed_warned = True
                warnings.warn(f"BackupAndRestore could not write its backup: {err}. Training goes on; it tries "
                              "again at the next save (this warning is shown once per fit).",
                              UserWarning, stacklevel=2)

    def summary(self) -> str | None:
        parts = []
        if self.resumed_from is not None:
            epoch, batch = self.resumed_from
            where = f"epoch {epoch + 1}" if batch == 0 else f"batch {batch + 1} of epoch {epoch + 1}"
            parts.append(f"resumed from {self.path} at {where}")
        if self.removed:
            text = f"removed the backup ({', '.join(self.removed)}) from {self.backup_dir}"
            parts.append(text + (" and the folder, now empty" if self.removed_dir else ""))
        return "; ".join(parts) or None
