"""Fault injection: SIGKILL a real training run at many points (between batches and inside the backup
write), run the same script again each time, and compare the end with a run that was never killed.

On CPU the final weights and History must be bitwise identical, every time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "faults" / "train_script.py"
TOTAL_STEPS = 35  # 54 training samples at batch 8 -> 7 batches, 5 epochs


def start(backup, out, env_extra=None, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, str(SCRIPT), "--backup", str(backup), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def kill_after(proc, marker, count, timeout=120):
    """SIGKILL the run once ``marker`` has been printed ``count`` times; False if it finished first."""
    seen = 0
    for line in proc.stdout:
        if line.startswith(marker):
            seen += 1
            if seen == count:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout)
                return True
    proc.wait(timeout)
    return False


def finish(backup, out, *extra):
    proc = start(backup, out, None, *extra)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    return output


def results(out):
    with open(str(out) + ".json") as fh:
        record = json.load(fh)
    return record, torch.load(str(out) + ".pt", weights_only=True)


def assert_same(a, b):
    (ha, wa), (hb, wb) = results(a), results(b)
    assert ha == hb  # History: every float identical
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # bitwise


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    finish(folder / "backup", folder / "ref")
    return folder / "ref"


def test_kills_between_batches_and_inside_writes(tmp_path, reference):
    backup, out = tmp_path / "backup", tmp_path / "run"
    kills = 0
    for count in (3, 1, 2, 2, 1, 3, 1, 2, 1, 2, 1, 2, 1, 2, 3):  # kill points between batches, across epochs
        if not kill_after(start(backup, out), "STEP", count):
            break
        kills += 1
    for count in (1, 2, 1, 3, 2):  # kill points inside the backup write: new file written, not yet renamed
        if not kill_after(start(backup, out, {"EPOCHWISE_TEST_WRITE_PAUSE": "0.3"}), "EPOCHWISE-WRITING", count):
            break
        kills += 1
        assert not list(backup.glob("backup.pt")) or torch.load(backup / "backup.pt", weights_only=True)
    assert kills == 20
    finish(backup, out)
    assert_same(out, reference)
    assert not backup.exists()  # BR5: a finished run removes its backup


def test_epoch_backups_replay_the_partial_epoch(tmp_path):
    folder = tmp_path / "ref"
    finish(folder / "backup", folder / "ref", "--save-freq", "epoch")
    backup, out = tmp_path / "backup", tmp_path / "run"
    kills = 0
    for count in (9, 4, 12):  # mid-epoch: the run resumes from the last epoch end and replays
        if kill_after(start(backup, out, None, "--save-freq", "epoch"), "STEP", count):
            kills += 1
    assert kills == 3
    finish(backup, out, "--save-freq", "epoch")
    assert_same(out, folder / "ref")


def test_sigint_ends_cleanly_then_resumes(tmp_path, reference):
    backup, out = tmp_path / "backup", tmp_path / "run"
    proc = start(backup, out, None, "--slow", "0.05")
    for line in proc.stdout:
        if line.startswith("STEP 1 2"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stdout.read()
    proc.wait(60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in rest
    assert "TRAIN-END" in rest  # on_train_end ran before the interrupt was re-raised
    steps_after = [line for line in rest.splitlines() if line.startswith("STEP")]
    assert len(steps_after) <= 1  # the batch in progress finished, nothing more
    assert (backup / "backup.pt").exists()
    finish(backup, out)
    assert_same(out, reference)


def test_sigterm_exits_143_and_resumes(tmp_path, reference):
    backup, out = tmp_path / "backup", tmp_path / "run"
    proc = start(backup, out, None, "--slow", "0.05")
    for line in proc.stdout:
        if line.startswith("STEP 2 4"):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stdout.read()
    proc.wait(60)
    assert proc.returncode == 143, rest
    assert "TRAIN-END" in rest
    finish(backup, out)
    assert_same(out, reference)
