"""Two nodes on one machine: two torchrun agents (--nnodes 2, 2 processes each, 4 ranks on gloo) meeting
at a c10d rendezvous on 127.0.0.1, as two machines would. Every run has a timeout, so a hang fails the
test instead of stalling CI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "distributed" / "ddp_script.py"
TIMEOUT = 240

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gloo over the loopback device")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(out, *args, check=True):
    """Both agents of one run; returns their (returncode, output) pairs, host first."""
    endpoint, run_id = f"127.0.0.1:{_free_port()}", uuid.uuid4().hex[:8]
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    agents = []
    for host in (1, 0):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "2",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
               "--rdzv-conf", f"is_host={host}", "--local-addr", "127.0.0.1", "--max-restarts", "0",
               str(SCRIPT), "--out", str(out), *args]
        agents.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = []
    try:
        for agent in agents:
            output, _ = agent.communicate(timeout=TIMEOUT)
            results.append((agent.returncode, output))
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.communicate()
    if check:
        for code, output in results:
            assert code == 0, output[-4000:]
    return results


def single(out, *args):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(Path(f"{out}.0.json").read_text())


def ranks(out, n=4):
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(n)]


def close(a, b, tol=1e-6):
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=tol, atol=tol)


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("two-nodes") / "d"
    two_nodes(out, "--batch-size", "4")
    return ranks(out)


def test_four_ranks_on_two_nodes_match_one_process_at_the_same_global_batch(tmp_path, four_ranks):
    ref = single(tmp_path / "s", "--batch-size", "16")  # 4 ranks x batch 4 = one global batch of 16
    runs = four_ranks
    assert [r["world"] for r in runs] == [4] * 4 and sorted(r["rank"] for r in runs) == [0, 1, 2, 3]
    assert all(r["history"] == runs[0]["history"] and r["weights"] == runs[0]["weights"] for r in runs)
    for key in ref["history"]:
        assert close(runs[0]["history"][key], ref["history"][key]), key
    for key in ref["weights"]:
        assert close(runs[0]["weights"][key], ref["weights"][key]), key
    assert close(runs[0]["prediction"], ref["prediction"]) and len(runs[0]["prediction"]) == 21


def test_a_stop_decided_on_the_second_node_stops_all_four_ranks(tmp_path):
    two_nodes(tmp_path / "d", "--mode", "stop", "--stop-rank", "3", "--batch-size", "4")
    runs = ranks(tmp_path / "d")
    assert [r["epoch"] for r in runs] == [[0, 1]] * 4  # rank 3 asked in epoch 2: every rank stopped there
    assert all(r["weights"] == runs[0]["weights"] for r in runs)


def test_a_backup_written_on_one_node_resumes_on_both(tmp_path, four_ranks):
    backup = tmp_path / "backup"
    crashed = two_nodes(tmp_path / "d", "--mode", "resume", "--folder", str(backup), "--crash-at", "7",
                        "--batch-size", "4", check=False)
    assert all(code != 0 for code, _ in crashed) and (backup / "backup.pt").exists()
    two_nodes(tmp_path / "d", "--mode", "resume", "--folder", str(backup), "--batch-size", "4")
    resumed = ranks(tmp_path / "d")
    assert all(r["weights"] == resumed[0]["weights"] for r in resumed)  # every rank of both nodes
    # continued from rank 0's backup and ends where the uninterrupted 4-rank run ends: the same History
    # and weights, to the last bits gloo's 4-rank sums leave free (their order varies from run to run;
    # measured: up to 1.5e-8 in the weights, 2.3e-8 in a val_loss)
    assert resumed[0]["history"].keys() == four_ranks[0]["history"].keys()
    for key, value in four_ranks[0]["history"].items():
        assert close(resumed[0]["history"][key], value, 1e-7), key
    for key, value in four_ranks[0]["weights"].items():
        assert close(resumed[0]["weights"][key], value, 1e-7), key
