"""What every runner shares: the data, the module, the epoch clock and the memory readings.

Each runner runs in its own process (see ``bench.py``), so everything here is built fresh in that
process from fixed seeds: every runner sees the same samples, the same initial weights and the same
thread count.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SIDE = 28  # MNIST-shaped: 28 x 28 pixels in [0, 1], 10 classes
PIXELS = SIDE * SIDE
CLASSES = 10
LEARNING_RATE = 0.005  # the tutorial's Adam(0.005)
EPSILON = 1e-7  # Keras's Adam epsilon, used by every runner so the optimizers match


@dataclass
class Spec:
    """One runner's job, as the parent process hands it over (JSON on the command line)."""

    runner: str
    batch_size: int
    epochs: int  # warm-up epochs included
    warmup: int
    n_train: int
    n_val: int
    device: str
    threads: int
    eval_repeats: int
    result_path: str
    seed: int = 0


@dataclass
class Result:
    """What a runner measured; written as JSON for the parent."""

    runner: str
    batch_size: int
    epoch_seconds: list[float]
    warmup: int
    val_accuracy: float
    rss_before_mib: float  # after imports, data and model, before training
    peak_rss_mib: float  # the process's high-water mark, training included
    evaluate_sps: float | None = None  # samples per second
    predict_sps: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def counted(self) -> list[float]:
        return self.epoch_seconds[self.warmup :] or self.epoch_seconds

    @property
    def seconds_per_epoch(self) -> float:
        return statistics.median(self.counted)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def make_data(n_train: int, n_val: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``x_train, y_train, x_val, y_val``: MNIST-shaped float32 images in [0, 1] and int64 labels.

    Each class has a random "stroke" pattern (10 % of the pixels); a sample shows 30 % of its class's
    pattern on top of 20 % random pixels, with random intensities, so the task is learnable but not
    trivial (about 0.9 validation accuracy after one epoch): the accuracy column shows that every
    runner really trains. Written chunk by chunk into one array, so no temporary copy of the data
    set inflates the peak memory.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    patterns = rng.random((CLASSES, PIXELS), dtype=np.float32) < 0.1
    y = rng.integers(0, CLASSES, n).astype(np.int64)
    x = np.empty((n, SIDE, SIDE), dtype=np.float32)
    flat = x.reshape(n, PIXELS)
    for start in range(0, n, 4096):
        labels = y[start : start + 4096]
        shape = (len(labels), PIXELS)
        lit = (patterns[labels] & (rng.random(shape, dtype=np.float32) < 0.3)) | (
            rng.random(shape, dtype=np.float32) < 0.2
        )
        flat[start : start + 4096] = lit * rng.random(shape, dtype=np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def make_module(seed: int = 0) -> Any:
    """The tutorial's MLP, 784 -> 300 -> 200 -> 100 -> 10 with ReLU, returning logits."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(PIXELS, 300),
        nn.ReLU(),
        nn.Linear(300, 200),
        nn.ReLU(),
        nn.Linear(200, 100),
        nn.ReLU(),
        nn.Linear(100, CLASSES),
    )


def rss_mib() -> float:
    """The current resident set size, from /proc (Linux); the high-water mark elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class EpochClock:
    """Epoch boundaries: ``start()`` before training, ``tick()`` after each epoch's validation.

    An epoch's time is the wall time between consecutive boundaries, so it holds everything the
    framework does in an epoch: shuffling, training steps, validation, logging and progress output.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.marks: list[float] = []

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        self.marks = [self._now()]

    def tick(self) -> None:
        self.marks.append(self._now())

    def epoch_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def median_throughput(fn: Any, samples: int, repeats: int, device: str) -> float:
    """Samples per second of ``fn()``: the median over ``repeats`` calls."""
    clock = EpochClock(device)
    clock.start()
    for _ in range(repeats):
        fn()
        clock.tick()
    return samples / statistics.median(clock.epoch_seconds())


def environment_threads(threads: int) -> dict[str, str]:
    """Environment for a runner process: the same thread count for torch, OpenMP and BLAS."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env
