"""Real multi-process runs on CPU (gloo, 2 processes through torchrun), each with a timeout so a hang
fails the test instead of CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "distributed" / "ddp_script.py"
TIMEOUT = 180


def torchrun(out, *args, nproc=2, check=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(SCRIPT), "--out", str(out), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def single(out, *args):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(Path(f"{out}.0.json").read_text())


def ranks(out, n=2):
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(n)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return single(tmp_path_factory.mktemp("single") / "s", "--batch-size", "16", "--tiny-eval")


def close(a, b, tol=1e-5):
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=tol, atol=tol)


def test_two_processes_match_one_at_the_same_global_batch(tmp_path, reference):
    torchrun(tmp_path / "d", "--batch-size", "8")
    r0, r1 = ranks(tmp_path / "d")
    assert r0["world"] == 2
    assert r0["history"] == r1["history"]  # logs identical on every rank
    for key in reference["history"]:  # loss trajectory and metrics equal the 1-process run
        assert close(r0["history"][key], reference["history"][key]), key
    for key in reference["weights"]:
        assert close(r0["weights"][key], reference["weights"][key])
    # exact validation: 21 samples split 11 + 10, sums and counts reduced, no duplicate counted
    assert close(r0["history"]["val_accuracy"], reference["history"]["val_accuracy"], 1e-7)
    assert close(r0["evaluate"]["loss"], reference["evaluate"]["loss"])
    assert r0["evaluate"]["accuracy"] == pytest.approx(reference["evaluate"]["accuracy"], abs=1e-7)
    assert r0["prediction"] == r1["prediction"] and len(r0["prediction"]) == 21  # gathered in order
    assert close(r0["prediction"], reference["prediction"])
    assert r0["module_type"] == "Sequential" and r0["keys"] == reference["keys"]  # model.module unwrapped


def test_accumulation_with_no_sync_and_clipping_match_one_process(tmp_path):
    ref = single(tmp_path / "s", "--batch-size", "16", "--clip", "0.5")
    torchrun(tmp_path / "d", "--batch-size", "4", "--accumulate", "2", "--clip", "0.5")
    r0, r1 = ranks(tmp_path / "d")
    assert r0["weights"] == r1["weights"]
    for key in ref["weights"]:  # 2 ranks x 4 samples x 2 accumulated batches = one update of 16
        assert close(r0["weights"][key], ref["weights"][key])
    assert close(r0["history"]["loss"], ref["history"]["loss"])


def test_dataloader_gets_a_shard_sampler(tmp_path):
    torchrun(tmp_path / "d", "--mode", "loader", "--batch-size", "8")
    r0, r1 = ranks(tmp_path / "d")
    assert r0["history"] == r1["history"] and r0["weights"] == r1["weights"]
    assert len(r0["history"]["loss"]) == 3


def test_a_stop_decided_by_one_rank_stops_all(tmp_path):
    torchrun(tmp_path / "d", "--mode", "stop")  # finishing at all (within the timeout) is the point
    r0, r1 = ranks(tmp_path / "d")
    assert r0["epoch"] == r1["epoch"] == [0, 1]  # rank 1 asked to stop in epoch 2: both stopped there
    assert r0["weights"] == r1["weights"]


def test_only_rank_zero_writes(tmp_path):
    folder = tmp_path / "files"
    torchrun(tmp_path / "d", "--mode", "files", "--folder", str(folder))
    r0, r1 = ranks(tmp_path / "d")
    assert r0["writes"] and r1["writes"] == []
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "final.pt", "log.csv"]
    assert (folder / "log.csv").read_text().count("\n") == 4  # one header, 3 epochs, written once


def test_resume_after_a_kill_with_two_processes(tmp_path):
    torchrun(tmp_path / "ref", "--mode", "resume", "--folder", str(tmp_path / "ref-backup"))
    backup = tmp_path / "backup"
    crashed = torchrun(tmp_path / "d", "--mode", "resume", "--folder", str(backup), "--crash-at", "7", check=False)
    assert crashed.returncode != 0 and (backup / "backup.pt").exists()
    torchrun(tmp_path / "d", "--mode", "resume", "--folder", str(backup))
    (a0, a1), (b0, _) = ranks(tmp_path / "d"), ranks(tmp_path / "ref")
    assert a0["history"] == b0["history"] and a0["weights"] == b0["weights"] and a1["weights"] == a0["weights"]


@pytest.mark.parametrize("save_freq", ["epoch", "3"])
def test_backups_add_no_barrier_per_batch(tmp_path, save_freq):
    """3 epochs of 4 batches: one barrier after each epoch (rank 0 wrote its files), none per batch, with
    backups every epoch or every 3 batches (the capture itself is a collective; nothing reads the file
    until the next fit, which comes after the epoch's barrier)."""
    torchrun(tmp_path / "d", "--mode", "resume", "--folder", str(tmp_path / "b"), "--save-freq", save_freq)
    r0, r1 = ranks(tmp_path / "d")
    assert r0["fit_barriers"] == r1["fit_barriers"] == 3
    assert r0["weights"] == r1["weights"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_fewer_samples_than_processes_neither_fails_nor_hangs(tmp_path, reference, strategy):
    """evaluate / predict on 1 sample with 2 processes: rank 1's shard is empty; both ranks get the result."""
    torchrun(tmp_path / "t", "--batch-size", "8", "--tiny-eval", "--strategy", strategy)
    r0, r1 = ranks(tmp_path / "t")
    assert r0["tiny_evaluate"] == r1["tiny_evaluate"] and r0["tiny_prediction"] == r1["tiny_prediction"]
    assert close(r0["tiny_evaluate"]["loss"], reference["tiny_evaluate"]["loss"])
    assert len(r0["tiny_prediction"]) == 1 and close(r0["tiny_prediction"], reference["tiny_prediction"])

