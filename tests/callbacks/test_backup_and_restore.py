"""BackupAndRestore's cleanup (BR5) and its backups on a real full disk and from unreadable files.

The exact resume itself is tested in tests/test_resume.py and tests/test_faults.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import classifier, make_classification
from torch import nn

import epochwise as ew
from epochwise.callbacks import BackupAndRestore, Callback, CSVLogger, ModelCheckpoint

X, Y = make_classification(16)


class Crash(Callback):
    """Raises after the n-th training batch (a stand-in for a kill)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("crash")


def _unmount(folder):
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # busy: detach it anyway


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB tmpfs (root only; skipped otherwise)."""
    if getattr(os, "geteuid", lambda: 1)() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        _unmount(folder)


def _files(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# --- BR5: cleanup deletes only the callback's own files ---------------------------------------------
def test_cleanup_keeps_the_other_files_of_a_shared_folder(tmp_path, capsys):  # BR5
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.py").write_text("print('my script')\n")
    backup = BackupAndRestore(run, save_freq=1, double_checkpoint=True)
    callbacks = [ModelCheckpoint(str(run / "best.pt"), monitor="loss", save_best_only=True),
                 CSVLogger(run / "log.csv"), backup]
    classifier().fit(X, Y, batch_size=8, epochs=2, verbose=2, callbacks=callbacks)
    assert _files(run) == ["best.pt", "log.csv", "train.py"]
    assert (run / "train.py").read_text() == "print('my script')\n"
    said = f"removed the backup (backup.pt, backup.pt.bkp) from {run}"
    assert backup.summary() == said  # the folder was the user's: it stays
    assert said in capsys.readouterr().out  # the end-of-fit summary line


def test_backup_dir_dot_keeps_the_working_directory(tmp_path, monkeypatch):  # BR5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("x = 1\n")
    backup = BackupAndRestore(".")
    classifier().fit(X, Y, epochs=2, verbose=0, callbacks=[backup])
    assert _files(tmp_path) == ["train.py"]
    assert backup.removed == ["backup.pt"] and not backup.removed_dir


def test_a_folder_it_created_goes_when_empty(tmp_path):  # BR5
    backup = BackupAndRestore(tmp_path / "new" / "backup")
    classifier().fit(X, Y, epochs=2, verbose=0, callbacks=[backup])
    assert _files(tmp_path) == ["new"]  # only the folder it created, not the parent it made on the way
    assert backup.summary() == f"removed the backup (backup.pt) from {tmp_path / 'new' / 'backup'} and the folder, now empty"


@pytest.mark.parametrize("user_file", [False, True])
def test_after_a_crash_the_resumed_run_knows_who_made_the_folder(tmp_path, user_file):  # BR4, BR5
    folder = tmp_path / "b"
    with pytest.raises(RuntimeError, match="crash"):
        classifier().fit(X, Y, batch_size=4, epochs=2, verbose=0,
                         callbacks=[BackupAndRestore(folder, save_freq=1), Crash(3)])
    assert _files(folder) == ["backup.pt"]
    if user_file:
        (folder / "notes.txt").write_text("run 1 crashed\n")
    backup = BackupAndRestore(folder, save_freq=1)
    history = classifier().fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[backup])
    assert backup.resumed_from == (0, 2) and history.epoch == [0, 1]
    if user_file:
        assert _files(folder) == ["notes.txt"]
    else:
        assert not folder.exists()


def test_delete_checkpoint_false_keeps_the_backup(tmp_path):  # BR5
    backup = BackupAndRestore(tmp_path / "b", delete_checkpoint=False)
    classifier().fit(X, Y, epochs=1, verbose=0, callbacks=[backup])
    assert _files(tmp_path / "b") == ["backup.pt"] and backup.summary() is None


# --- a full disk: a periodic backup warns once and training goes on -------------------------------------
def test_periodic_backup_on_a_full_disk_warns_once_and_trains_on(full_disk):
    model = ew.Model(nn.Linear(100, 200), device="cpu")  # a backup of about 80 KB: more than the disk
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((16, 100), "float32"), np.zeros((16, 200), "float32")
    backup = BackupAndRestore(full_disk / "b", save_freq=1)
    with pytest.warns(UserWarning, match="could not write its backup") as record:
        history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[backup])
    # torch raises RuntimeError("[enforce fail at inline_container.cc] ... unexpected pos") here, not OSError
    assert history.epoch == [0, 1, 2]
    messages = [str(w.message) for w in record if "could not write" in str(w.message)]
    assert len(messages) == 1  # once per fit, not at each of the 12 batches
    assert "No space left on device" in messages[0] and repr(str(full_disk / "b" / "backup.pt")) in messages[0]
    assert ".tmp" not in messages[0]
    assert _files(full_disk) == []  # no temporary file left; the empty folder it made is gone


class FillDisk(Callback):
    """At the end of epoch ``at``, keeps a copy of the backup on disk, then fills the disk."""

    def __init__(self, backup, at: int) -> None:
        super().__init__()
        self.backup, self.at, self.kept = backup, at, None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            self.kept = self.backup.path.read_bytes()
            with open(self.backup.backup_dir / "filler", "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\0" * 1024)
                except OSError:
                    pass


def test_the_previous_backup_survives_a_disk_that_fills_up(full_disk):
    backup = BackupAndRestore(full_disk / "b", delete_checkpoint=False)  # a small model's backup fits
    fill = FillDisk(backup, at=1)
    with pytest.warns(UserWarning, match="No space left on device"):
        history = classifier().fit(X, Y, epochs=3, verbose=0, callbacks=[fill, backup])
    assert history.epoch == [0, 1, 2] and backup.saves == 1  # only the first epoch's backup fitted
    assert backup.path.read_bytes() == fill.kept  # untouched by the two failed writes
    assert _files(full_disk / "b") == ["backup.pt", "filler"]
    (full_disk / "b" / "filler").unlink()
    again = BackupAndRestore(full_disk / "b")
    classifier().fit(X, Y, epochs=3, verbose=0, callbacks=[again])
    assert again.resumed_from == (1, 0)  # it is a readable backup taken after epoch 1


# --- an unreadable backup says what it is (BR4: then the .bkp copy, else a fresh start) ------------------
@pytest.mark.parametrize(("content", "what"), [(b"", "is empty"), (None, "is truncated")])
def test_unreadable_backup_says_what_the_file_is(tmp_path, content, what):  # BR4
    folder = tmp_path / "b"
    classifier().fit(X, Y, epochs=1, verbose=0, callbacks=[BackupAndRestore(folder, delete_checkpoint=False)])
    data = (folder / "backup.pt").read_bytes()
    (folder / "backup.pt").write_bytes(data[: len(data) // 2] if content is None else content)
    backup = BackupAndRestore(folder)
    with pytest.warns(UserWarning, match=re.escape(f"could not read {str(folder / 'backup.pt')!r}") + f".*{what}"):
        history = classifier().fit(X, Y, epochs=2, verbose=0, callbacks=[backup])
    assert backup.resumed_from is None and history.epoch == [0, 1]  # a fresh start
