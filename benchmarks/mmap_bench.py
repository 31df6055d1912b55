"""Fit on a memory-mapped file several times larger than a memory budget, against the same data in memory.

A standalone script (not run in CI). It writes an MNIST-shaped float32 file (784 features, values in
[0, 1], labels from a fixed linear teacher) of ``--gb`` gigabytes, then runs the tutorial MLP
(784-300-200-100-10, Adam(0.005)) in fresh processes, alternating the two inputs round by round:

- ``mmap``: ``x = np.load(path, mmap_mode="r")``, read per batch;
- ``memory``: ``x = np.load(path)``, the whole array in memory (skipped when RAM is short).

Every process uses the same seed (same initial weights and data order), one thread count and flushed
denormals; it times ``--steps`` shuffled training steps after ``--warmup`` steps (shuffled indices reach
the whole file, so s/step is what an epoch costs per step) and samples RssAnon (/proc/self/status)
after every batch; then it times making ``--steps`` shuffled batches alone, without training
(``batch_ms``: the input path's own cost per step). The report gives the median of the paired mmap / memory ratios and their spread.

    python benchmarks/mmap_bench.py --gb 3 --rounds 3 --steps 300 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES, CLASSES = 784, 10


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def make_file(path: Path, gb: float) -> int:
    """The data file, written in slices (never whole in memory); returns the number of rows."""
    n = int(gb * 1e9) // (FEATURES * 4)
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, FEATURES):
        return n
    out = np.lib.format.open_memmap(path, mode="w+", dtype="float32", shape=(n, FEATURES))
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(FEATURES, CLASSES)).astype("float32")
    labels = np.empty(n, dtype="int64")
    for start in range(0, n, 65536):
        stop = min(start + 65536, n)
        rows = rng.random((stop - start, FEATURES), dtype="float32")
        out[start:stop] = rows
        labels[start:stop] = (rows @ teacher).argmax(1)
    out.flush()
    del out
    np.save(path.with_suffix(".labels.npy"), labels)
    return n


def worker(args: argparse.Namespace) -> dict:
    import torch
    from torch import nn

    import epochwise as ew
    from epochwise.data.arrays import ArrayData

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    path = Path(args.path)
    before_data = rss_anon()
    x = np.load(path, mmap_mode="r") if args.worker == "mmap" else np.load(path)
    y = np.load(path.with_suffix(".labels.npy"))
    loaded = rss_anon()

    class Clock(ew.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.start = self.stop = 0.0
            self.peak = 0

        def on_train_batch_begin(self, batch, logs=None):
            if batch == args.warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.peak = max(self.peak, rss_anon())
            self.stop = time.perf_counter()

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(FEATURES, 300), nn.ReLU(), nn.Linear(300, 200), nn.ReLU(),
                           nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, CLASSES))
    model = ew.Model(module, device="cpu")
    model.compile(optimizer=ew.optimizers.Adam(learning_rate=0.005, epsilon=1e-7),
                  loss="sparse_categorical_crossentropy")
    clock = Clock()
    started = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=1, steps_per_epoch=args.warmup + args.steps,
                        seed=1, verbose=0, callbacks=[clock])
    batches_per_epoch = -(-len(x) // args.batch_size)
    step = (clock.stop - clock.start) / args.steps
    # the batches alone (shuffled gather, float32 tensors), without training: the input path's own cost
    from epochwise.data.arrays import ArrayBatches

    batches = ArrayBatches(ArrayData(x, y), args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(2))
    it = iter(batches)
    for _ in range(args.warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        next(it)
    batch_s = (time.perf_counter() - t0) / args.steps
    return {"mode": args.worker, "s_per_step": step, "s_per_epoch": step * batches_per_epoch, "batch_ms": batch_s * 1e3,
            "prepare_and_warmup_s": clock.start - started, "loss": history.history["loss"][-1],
            "data_in_anon_mib": (loaded - before_data) / 2**20, "peak_rss_anon_mib": clock.peak / 2**20,
            "storage": ArrayData(x, y).describe() or ["x: in memory"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=3.0, help="size of the float32 file")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the file is written")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default="mmap,memory")
    parser.add_argument("--keep", action="store_true", help="keep the data file afterwards")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    path = Path(args.dir) / f"mmap_bench_{args.gb:g}gb.npy"
    t0 = time.perf_counter()
    n = make_file(path, args.gb)
    size = path.stat().st_size
    print(f"data: {path} ({size / 1e9:.2f} GB, {n:,} rows x {FEATURES}) in {time.perf_counter() - t0:.0f}s",
          flush=True)
    modes = args.modes.split(",")
    if "memory" in modes and available_memory() < 2 * size + (2 << 30):
        print(f"only {available_memory() / 2**30:.1f} GiB available: the in-memory run is skipped", flush=True)
        modes = [m for m in modes if m != "memory"]
    runs: list[dict] = []
    for r in range(args.rounds):
        for mode in modes if r % 2 == 0 else modes[::-1]:  # interleaved, the order alternating
            cmd = [sys.executable, __file__, "--worker", mode, "--path", str(path), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--threads",
                   str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1]) | {"round": r}
            runs.append(result)
            print(json.dumps(result), flush=True)
    summary = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
                          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM",
               "file_gb": size / 1e9, "rows": n, "batch_size": args.batch_size, "threads": args.threads,
               "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "runs": runs}
    for mode in modes:
        mine = [run for run in runs if run["mode"] == mode]
        summary[mode] = {"median_s_per_epoch": statistics.median(run["s_per_epoch"] for run in mine),
                         "median_s_per_step": statistics.median(run["s_per_step"] for run in mine),
                         "median_batch_ms": statistics.median(run["batch_ms"] for run in mine),
                         "max_peak_rss_anon_mib": max(run["peak_rss_anon_mib"] for run in mine)}
    if len(modes) == 2:
        ratios = [a["s_per_step"] / b["s_per_step"] for a, b in zip(
            [run for run in runs if run["mode"] == "mmap"], [run for run in runs if run["mode"] == "memory"])]
        summary["mmap_over_memory"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if not args.keep:
        path.unlink()
        path.with_suffix(".labels.npy").unlink()


if __name__ == "__main__":
    main()
