"""The benchmark's one command runs end to end on tiny data and writes a table that adds up.

Times are not asserted (a benchmark measures, tests do not time); what is asserted is that every
runner trains the same model on the same batches to the same place, that the harness flushes
denormals in every runner process, and that the report's ratios are the median of the paired
ratios in the raw figures.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import _common  # noqa: E402
import report  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(BENCH), "--quick", "--threads", "1", "--runners", "floor", "epochwise",
           "--n-train", "300", "--n-val", "60", "--output", str(out / "RESULTS.md"), "--json", str(out / "raw.json"),
           "--logs", str(out / "logs")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return (out / "RESULTS.md").read_text(), json.loads((out / "raw.json").read_text())


def _row(text: str, batch: int, name: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[0] == str(batch) and cells[1] == name:
            return cells
    raise AssertionError(f"no row for batch {batch} / {name} in\n{text}")


def test_every_runner_and_the_pairs_ran_every_batch_size(quick_run):
    text, raw = quick_run
    got = {(r["runner"], r["batch_size"]) for r in raw["rows"] if r["results"]}
    assert got == {(name, b) for name in ("floor", "epochwise") for b in (32, 250)}
    assert all(r["missing"] is None for r in raw["rows"])
    assert sorted(p["batch_size"] for p in raw["pairs"]) == [32, 250]
    assert "python benchmarks/bench.py --quick" in text  # the command that produced the table is quoted


def test_denormals_are_flushed_in_every_runner_process(quick_run):
    _, raw = quick_run
    flags = [r["flush_denormal"] for row in raw["rows"] for r in row["results"]] + [p["flush_denormal"] for p in
                                                                                   raw["pairs"]]
    expected = bool(torch.set_flush_denormal(True))  # what this CPU supports
    torch.set_flush_denormal(False)  # this process's setting is put back
    assert flags and all(f is expected for f in flags)
    assert "set_flush_denormal(True)" in quick_run[0]


def test_epochwise_trains_exactly_like_the_floor(quick_run):
    """Same data, same initial weights, same batches: the same weights, in one process and in two."""
    _, raw = quick_run
    for pair in raw["pairs"]:
        assert pair["max_weight_diff"] <= 1e-5
        assert pair["val_accuracy"] == pytest.approx(pair["floor_val_accuracy"], abs=1e-6)
        assert pair["evaluate_loss_diff"] <= 1e-5
    acc = {(r["runner"], r["batch_size"]): r["results"][0]["val_accuracy"] for r in raw["rows"]}
    for batch in (32, 250):
        assert acc["epochwise", batch] == pytest.approx(acc["floor", batch], abs=1e-6)


def test_ratios_are_medians_of_the_raw_pairs(quick_run):
    text, raw = quick_run
    for pair in raw["pairs"]:
        b = pair["batch_size"]
        fit = [pair["fit_seconds"][i] / statistics.mean(pair["floor_seconds"][max(i - 1, 0): i + 1])
               for i in range(pair["warmup"], len(pair["fit_seconds"]))]
        ev = [t / statistics.mean(pair["floor_evaluate_seconds"][i: i + 2])
              for i, t in enumerate(pair["evaluate_seconds"])]
        assert float(_row(text, b, "fit, one epoch")[4]) == pytest.approx(statistics.median(fit), abs=1e-3)
        assert float(_row(text, b, "evaluate (300)")[4]) == pytest.approx(statistics.median(ev), abs=1e-3)
    for row in raw["rows"]:
        cells = _row(text, row["batch_size"], row["runner"])
        assert float(cells[3]) == pytest.approx(statistics.median(row["ratios"]), abs=0.006)
        if row["runner"] == "floor":
            assert row["ratios"] == [1.0]


def test_targets_section_judges_each_target(quick_run):
    text, _ = quick_run
    section = text.split("## Targets", 1)[1]
    verdicts = re.findall(r"\|\s*(met|\*\*missed\*\*|not measured[^|]*)\s*\|", section)
    assert len(verdicts) >= 8, section
    for goal in ("fit <= 1.05x the floor, batch 32", "evaluate <= 1.10x the floor, batch 32",
                 "evaluate <= 1.05x the floor, batch 250", "predict <= 1.05x", "peak RSS <= floor + 10 %"):
        assert goal in section


def test_bad_arguments_are_refused_before_any_run(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--batch-sizes", "32", "64", "--counted", "1", "2", "3",
                           "--output", str(tmp_path / "r.md")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "--counted needs one number per batch size" in proc.stderr
    assert not (tmp_path / "r.md").exists()


# --- in this process: the data order and the round layout ---------------------------------------
def test_every_order_is_the_one_fit_draws_from_its_seed():
    """The floor's permutation, the DataLoader sampler's and epochwise's own batches, epoch by epoch."""
    import epochwise as ew
    from epochwise.callbacks import Callback

    n, seed, epochs = 12, 7, 3
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    seen: list[list[int]] = []

    class Record(torch.nn.Module):  # the module sees the batches: which samples, in which order
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def forward(self, xb: torch.Tensor) -> torch.Tensor:
            if self.training:
                seen[-1].extend(int(v) for v in xb[:, 0])
            return self.lin(xb)

    class NewEpoch(Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            seen.append([])

    model = ew.Model(Record())
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x, batch_size=5, epochs=epochs, seed=seed, verbose=0, callbacks=[NewEpoch()])
    gen = torch.Generator().manual_seed(seed)
    floor = [_common.data_order(n, gen).tolist() for _ in range(epochs)]
    sampler = _common.epoch_orders(n, seed)
    assert seen == floor == [list(iter(sampler)) for _ in range(epochs)]
    assert len({tuple(o) for o in floor}) == epochs  # a new permutation every epoch


def test_each_runner_of_a_round_sits_next_to_a_floor_run():
    import bench

    runners = ["floor", "a", "b", "c", "d", "e"]
    for rnd in (0, 1):
        seq = bench.round_order(runners, rnd)
        names = [name for name, _ in seq]
        assert sorted(n for n in names if n != "floor") == ["a", "b", "c", "d", "e"]
        for i, (name, floor_at) in enumerate(seq):
            if name != "floor":
                assert names[floor_at] == "floor" and abs(floor_at - i) == 1
    assert [n for n, _ in bench.round_order(runners, 1)][1] == "e"  # reversed every other round


def test_pair_ratios_divide_by_the_neighbouring_floor_runs():
    pair = _common.Pair(32, 1, fit_seconds=[9.0, 2.0, 3.0], floor_seconds=[1.0, 2.0, 4.0], val_accuracy=[],
                        floor_val_accuracy=[], max_weight_diff=0.0, evaluate_seconds=[3.0, 6.0],
                        floor_evaluate_seconds=[1.0, 3.0, 5.0])
    assert report.fit_ratios(pair) == [2.0 / 1.5, 3.0 / 3.0]  # the warm-up epoch is left out
    assert report.pair_ratios(pair, "evaluate") == [3.0 / 2.0, 6.0 / 4.0]
    assert report.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)


# --- the GPU list (benchmarks/gpu_list.sh), checked here on the CPU -------------------------------
def test_gpu_list_script_parses():
    proc = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_list.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_gpu_list_torchrun_check_compares_a_real_torchrun_run_with_one_process(tmp_path):
    """The script's torchrun stage on the CPU (gloo instead of NCCL): one torchrun process with a process
    group the script opened ends exactly as one plain process, and the comparison says so."""
    script = str(ROOT / "tests" / "distributed" / "ddp_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, script, "--out", str(tmp_path / "single"), "--batch-size", "8"],
                            capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", script,
                          "--out", str(tmp_path / "run"), "--batch-size", "8", "--init-group"],
                         capture_output=True, text=True, timeout=180, env=env)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    compare = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_compare.py"),
                              str(tmp_path / "single.0.json"), str(tmp_path / "run.0.json")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert compare.returncode == 0, compare.stdout
    assert "backend gloo, world 1" in compare.stdout
    assert "weights: 147 values, largest difference from one process 0.00e+00" in compare.stdout
    record = json.loads((tmp_path / "run.0.json").read_text())
    record["weights"][next(iter(record["weights"]))][0][0] += 1e-3  # a real difference is reported and fails
    (tmp_path / "run.0.json").write_text(json.dumps(record))
    compare = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_compare.py"),
                              str(tmp_path / "single.0.json"), str(tmp_path / "run.0.json")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert compare.returncode == 1 and "largest difference from one process 1.00e-03" in compare.stdout
