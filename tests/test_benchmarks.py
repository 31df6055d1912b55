"""The benchmark's one command runs end to end on tiny data and writes a table that adds up.

Times are not asserted (a benchmark measures, tests do not time); what is asserted is that every
runner trains the same model on the same data to the same place, and that the report's ratios are
computed from the figures in the same table.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(BENCH), "--quick", "--threads", "1", "--runners", "floor", "epochwise", "dataloader",
           "--n-train", "300", "--n-val", "60", "--output", str(out / "RESULTS.md"), "--json", str(out / "raw.json"),
           "--logs", str(out / "logs")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return (out / "RESULTS.md").read_text(), json.loads((out / "raw.json").read_text())


def _row(text: str, batch: int, runner: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[0] == str(batch) and cells[1] == runner:
            return cells
    raise AssertionError(f"no row for batch {batch} / {runner} in\n{text}")


def test_every_runner_ran_every_batch_size(quick_run):
    text, raw = quick_run
    got = {(r["runner"], r["batch_size"]) for r in raw if r["results"]}
    assert got == {(name, b) for name in ("floor", "epochwise", "dataloader") for b in (32, 250)}
    assert all(r["missing"] is None for r in raw)
    assert "python benchmarks/bench.py --quick" in text  # the command that produced the table is quoted


def test_epochwise_trains_exactly_like_the_floor(quick_run):
    """Same data, same initial weights, same batches: the validation accuracy matches the floor's."""
    _, raw = quick_run
    acc = {(r["runner"], r["batch_size"]): r["results"][0]["val_accuracy"] for r in raw}
    for batch in (32, 250):
        assert acc["epochwise", batch] == pytest.approx(acc["floor", batch], abs=1e-6)


def test_ratios_are_the_table_own_figures(quick_run):
    text, raw = quick_run
    for batch in (32, 250):
        floor, ours = _row(text, batch, "floor"), _row(text, batch, "epochwise")
        assert float(floor[3]) == 1.0
        assert float(ours[3]) == pytest.approx(float(ours[2]) / float(floor[2]), abs=0.02)
    seconds = [s for r in raw for s in r["results"][0]["epoch_seconds"]]
    assert all(s > 0 for s in seconds)


def test_targets_section_judges_each_target(quick_run):
    text, _ = quick_run
    section = text.split("## Targets", 1)[1]
    verdicts = re.findall(r"\|\s*(met|\*\*missed\*\*|not measured[^|]*)\s*\|", section)
    assert verdicts, section
    assert "1.05x the floor, batch 32" in section


def test_bad_arguments_are_refused_before_any_run(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--batch-sizes", "32", "64", "--counted", "1", "2", "3",
                           "--output", str(tmp_path / "r.md")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "--counted needs one number per batch size" in proc.stderr
    assert not (tmp_path / "r.md").exists()
