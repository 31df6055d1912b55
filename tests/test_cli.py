"""`epochwise demo`: the tutorial's run on bundled digits, end to end."""

from __future__ import annotations

import subprocess
import sys

from epochwise import cli


def test_demo_runs_and_reports_test_accuracy(tmp_path, capsys):
    code = cli.main(["demo", "--epochs", "3", "--batch-size", "128", "--verbose", "2", "--output", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "Train on 1,079 samples, validate on 359" in out
    assert "batch 128 -> 9 iterations/epoch" in out
    assert "split 1,079 train / 359 validation / 359 test" in out and "Test on the 359 held-out samples" in out
    accuracy = float(out.split("accuracy ")[-1].split()[0])
    assert accuracy > 0.5
    assert (tmp_path / "demo-weights.safetensors").exists()


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "epochwise.cli", "demo", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--batch-size" in result.stdout
