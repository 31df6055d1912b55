"""Every script in examples/ runs with --quick, offline, writing only under --output; its numbers make sense.

The scripts start together in subprocesses (as many at a time as there are CPU cores, one torch thread
each), once per test session; each test then checks one script's output.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "sklearn", reason="the examples use scikit-learn's bundled data: pip install 'epochwise[demo]'"
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("*.py"))


class Run:
    def __init__(self, proc: subprocess.CompletedProcess, output: Path, cwd: Path) -> None:
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.output, self.cwd = output, cwd

    def number(self, pattern: str) -> float:
        match = re.search(pattern, self.stdout)
        assert match, f"{pattern!r} not found in:\n{self.stdout}"
        return float(match.group(1))


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("examples")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               EPOCHWISE_DATA_DIR=str(root / "empty-cache"))  # fmt: skip

    mnist = root / "fake-mnist"  # MNIST's shapes, random pixels, fewer images: the example's MNIST branch
    mnist.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("train-images-idx3-ubyte", (6000, 28, 28)), ("train-labels-idx1-ubyte", (6000,)),
                        ("t10k-images-idx3-ubyte", (500, 28, 28)), ("t10k-labels-idx1-ubyte", (500,))):  # fmt: skip
        values = rng.integers(0, 256 if len(shape) == 3 else 10, size=shape, dtype=np.uint8)
        header = bytes([0, 0, 0x08, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
        (mnist / name).write_bytes(header + values.tobytes())
    jobs = {name: [f"{name}.py"] for name in SCRIPTS}
    jobs["mnist_mlp_on_mnist"] = ["mnist_mlp.py", "--data", "mnist", "--mnist-path", str(mnist)]

    def run(job: str) -> tuple[str, Run]:
        cwd, output = root / job / "cwd", root / job / "output"
        cwd.mkdir(parents=True)
        script, *args = jobs[job]
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / script), *args, "--quick", "--output", str(output)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        return job, Run(proc, output, cwd)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(pool.map(run, jobs))


def test_every_example_is_checked_here():
    checked = {name.removeprefix("test_") for name, value in globals().items() if callable(value)}
    assert set(SCRIPTS) <= checked, f"examples without their own test: {sorted(set(SCRIPTS) - checked)}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_runs_quick_and_writes_only_under_output(runs, name):
    run = runs[name]
    assert run.returncode == 0, f"{name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert list(run.cwd.iterdir()) == [], f"{name} wrote outside --output: {list(run.cwd.iterdir())}"
    assert "Traceback" not in run.stderr


def test_mnist_mlp(runs):
    run = runs["mnist_mlp"]
    assert "MNIST is not at hand" in run.stdout  # nothing cached, offline: the digits stand in
    assert "== digits: 1,150 training, 287 validation, 360 test images" in run.stdout
    assert (
        "batch 105 -> 11 iterations/epoch | 8 epochs -> 88 iterations" in run.stdout
    )  # 11 steps, as 55,000/5,000
    assert re.search(r"^\s+32\s+36\s+72\s", run.stdout, re.M)  # ceil(1150 / 32) = 36 per epoch, 2 epochs
    assert re.search(r"^\s+105\s+11\s+22\s", run.stdout, re.M)
    assert run.number(r"test: loss [\d.]+ - accuracy ([\d.]+)") > 0.85
    rows = (run.output / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(rows) == 1 + 8


def test_mnist_mlp_on_mnist(runs):
    """With MNIST at hand (here MNIST-shaped random images) the course's exact settings apply."""
    run = runs["mnist_mlp_on_mnist"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "== MNIST: 1,000 training, 5,000 validation, 500 test images" in run.stdout
    assert "Train on 1,000 samples, validate on 5,000 | batch 5,000 -> 1 iteration/epoch" in run.stdout
    assert re.search(r"^\s+32\s+32\s+64\s", run.stdout, re.M)  # ceil(1,000 / 32) = 32 per epoch


def test_binary_classification(runs):
    run = runs["binary_classification"]
    assert (run.output / "best-model.pt").is_file()
    restored = run.number(r"restored model:\s+([\d.]+)")
    from_file = run.number(r"read from the file:\s+([\d.]+)")
    best = run.number(r"recorded by ModelCheckpoint: ([\d.]+)")
    assert restored == from_file == best  # ES6 restore, MC save_best_only, the same epoch's weights
    assert run.number(r"best epoch: \d+ with val_loss ([\d.]+)") == best
    assert run.number(r"test: loss [\d.]+ - accuracy ([\d.]+)") > 0.9


def test_early_stopping_parameters(runs):
    run = runs["early_stopping_parameters"]
    rows = re.findall(r"^(\S.*?)\s{2,}(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)$", run.stdout, re.M)
    assert len(rows) == 6, run.stdout
    for label, ran, expected, _, _ in rows:
        assert ran == expected, f"{label}: ran {ran} epochs, Keras's rule says {expected}"  # ES4
    by_label = {label: int(ran) for label, ran, *_ in rows}
    assert by_label["defaults"] < by_label["patience=5"]  # patience=0 stops at the first non-improvement
    epochs = int(run.number(r"reference run, (\d+) epochs"))
    assert by_label["monitor='val_accuracy', patience=5, mode='min'"] < epochs
    restored = run.number(r"scores val_loss ([\d.]+)")
    assert restored == float(rows[-1][4])  # ES6


def test_sparse_vs_categorical(runs):
    run = runs["sparse_vs_categorical"]
    assert run.number(r"between the two runs: ([\d.e+-]+)") < 1e-5
    assert "with one-hot targets: ValueError" in run.stdout and "use 'categorical_crossentropy'" in run.stdout
    assert (
        "with integer labels: ValueError" in run.stdout
        and "use 'sparse_categorical_crossentropy'" in run.stdout
    )


def test_learning_rate_schedules(runs):
    run = runs["learning_rate_schedules"]
    assert "learning rate before fit: 0.01\n" in run.stdout
    assert "learning rate after 15 epochs: 0.00607\n" in run.stdout  # Keras's documented result, LS1
    rates = [float(v) for v in re.search(r"rate used in each epoch: (.*)", run.stdout).group(1).split()]
    assert rates == pytest.approx([0.01] * 10 + [0.01 * math.exp(-0.1 * k) for k in range(1, 6)], abs=5e-6)
    table = {m.group(1).strip(): [float(v) for v in m.group(2).split()]
             for m in re.finditer(r"^(\D[^\d\n]*?)\s+([\d.]+(?:\s+[\d.]+){5})$", run.stdout, re.M)}  # fmt: skip
    assert table["constant"][:5] == [0.1] * 5
    epochs = int(run.number(r"decay schedules over (\d+) epochs"))
    steps = [int(m) - 1 for m in re.findall(r"lr@(\d+)", run.stdout)]  # the table's 1-based epochs
    expected = [0.05 * (1 + math.cos(math.pi * t / epochs)) for t in steps]  # CosineDecay(0.1, epochs), SC5
    assert table["cosine"][:5] == pytest.approx(expected, abs=5e-5)
    png = run.output / "schedules.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_terminate_on_nan(runs):
    run = runs["terminate_on_nan"]
    without = run.number(r"without callbacks\s+epochs run:\s+(\d+)")
    with_cb = run.number(r"with TerminateOnNaN\s+epochs run:\s+(\d+)")
    assert without == 20 and with_cb < without  # TN1: stops at the first bad batch
    assert re.search(r"Invalid loss \((nan|inf)\) at batch \d+ of epoch \d+", run.stdout + run.stderr)
    assert run.number(r"epochs run: (\d+) of 20; last learning rate") < 20
    best = run.number(r"best epoch: \d+, learning rate [\d.e-]+, val_loss ([\d.]+)")
    assert run.number(r"val_loss of the model after fit: ([\d.]+)") == best  # TN2 + ES6


def test_dropout_batchnorm_eval(runs):
    run = runs["dropout_batchnorm_eval"]

    def loss(label: str) -> float:
        return run.number(re.escape(label) + r"\s+loss ([\d.]+)")

    reference = loss("model.evaluate:")
    assert loss("eval() + no_grad(), call 1:") == loss("eval() + no_grad(), call 2:") == reference
    assert loss("eval() + no_grad(), batches of 16:") == reference  # eval-mode BatchNorm ignores the batch
    assert loss("no_grad() only (train mode), call 1:") != loss("no_grad() only (train mode), call 2:")
    assert run.number(r"running mean moved by up to ([\d.]+)") > 0
    assert "after fit the module is in training mode" in run.stdout  # L4
    assert "same outputs: True" in run.stdout and "requires_grad=True" in run.stdout
    assert "Expected more than 1 value per channel" in run.stdout


def test_custom_callback(runs):
    run = runs["custom_callback"]
    reached = int(run.number(r"val_accuracy reached 0.9 at epoch (\d+)"))
    assert reached < 20  # stop_training set from on_epoch_end ends the run there
    assert "'epoch_seconds'" in run.stdout  # G6/G7: a key added by a callback reaches History
    rows = (run.output / "batch-losses.csv").read_text().splitlines()
    assert len(rows) == 1 + reached * math.ceil(1437 / 64)
    assert "the epoch's logged loss" in run.stdout and run.stdout.count(": True") >= 1
    header = (run.output / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,accuracy,epoch_seconds,loss,val_accuracy,val_loss"


def test_ddp_torchrun(runs):
    """Without torchrun the distributed example is an ordinary single-process run."""
    run = runs["ddp_torchrun"]
    assert "batch 32 -> 34 iterations/epoch | 2 epochs -> 68 iterations" in run.stdout  # ceil(1,079 / 32)
    assert run.number(r"test accuracy ([\d.]+)") > 0.7
    assert (run.output / "ddp-weights.safetensors").is_file()
