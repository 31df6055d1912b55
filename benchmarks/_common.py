"""What every runner shares: the data, the data order, the module, the epoch clock and the memory readings.

Each runner runs in its own process (see ``bench.py``), so everything here is built fresh in that
process from fixed seeds: every runner sees the same samples, the same initial weights, the same
thread count, denormals flushed (``harness_settings``) and, where its library takes one, the same
data order (``data_order``, the permutation ``epochwise.Model.fit(seed=...)`` draws).
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
    pairs: int = 0  # the in-process runner: (epochwise, floor) evaluate and predict pairs


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
    flush_denormal: bool | None = None  # whether torch.set_flush_denormal(True) took effect here

    @property
    def counted(self) -> list[float]:
        return self.epoch_seconds[self.warmup :] or self.epoch_seconds

    @property
    def seconds_per_epoch(self) -> float:
        return statistics.median(self.counted)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Pair:
    """The in-process runner: epochwise and the floor alternating, epoch by epoch and call by call.

    ``fit_seconds[i]`` / ``floor_seconds[i]``: epochwise's epoch ``i`` and the floor epoch run right
    after it; ``evaluate``/``predict``: alternating calls, the floor first and last.
    """

    batch_size: int
    warmup: int
    fit_seconds: list[float]
    floor_seconds: list[float]
    val_accuracy: list[float]  # epochwise's, per epoch
    floor_val_accuracy: list[float]
    max_weight_diff: float  # max |w_epochwise - w_floor| after the last epoch: 0 when the batches are the same
    evaluate_seconds: list[float] = field(default_factory=list)
    floor_evaluate_seconds: list[float] = field(default_factory=list)
    predict_seconds: list[float] = field(default_factory=list)
    floor_predict_seconds: list[float] = field(default_factory=list)
    evaluate_loss_diff: float | None = None  # |loss(epochwise.evaluate) - loss(floor)|
    n_train: int = 0
    flush_denormal: bool | None = None

    runner = "epochwise+floor"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def harness_settings(threads: int) -> bool:
    """What every runner process sets first: denormals flushed, ``threads`` torch threads.

    Adam's running averages of gradients that stay zero (always-dark pixels, dead ReLU units) decay
    into the denormal range, where some CPUs compute many times slower; how many there are depends
    on the data order, so without this two runners can differ for that alone. Set before torch
    starts its thread pool (new threads inherit the setting). Returns whether the CPU supports it.
    """
    import torch

    flushed = bool(torch.set_flush_denormal(True))
    torch.set_num_threads(threads)
    return flushed


def data_order(n: int, generator: Any) -> Any:
    """One epoch's order: exactly what epochwise's array batches draw each epoch from fit's ``seed``
    (``torch.randperm(n, generator=torch.Generator().manual_seed(seed))``, one call per epoch)."""
    import torch

    return torch.randperm(n, generator=generator)


def epoch_orders(n: int, seed: int) -> Any:
    """A ``torch.utils.data.Sampler`` yielding, at each epoch (each ``iter``), the next ``data_order``
    from one generator seeded with ``seed``: a DataLoader with it sees epochwise's batches."""
    import torch
    from torch.utils.data import Sampler

    class EpochOrders(Sampler[int]):
        def __init__(self) -> None:
            self.generator = torch.Generator().manual_seed(seed)

        def __len__(self) -> int:
            return n

        def __iter__(self) -> Any:
            return iter(data_order(n, self.generator).tolist())

    return EpochOrders()


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
