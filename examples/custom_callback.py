"""Writing your own callback: subclass ``ew.callbacks.Callback`` and override the hooks you need.

Three small callbacks on the digits data:

- ``StopAtAccuracy``: stop as soon as ``val_accuracy`` reaches a target (sets ``model.stop_training``)
  and report it in the end-of-fit summary line (``summary()``);
- ``EpochTime``: add ``epoch_seconds`` to each epoch's logs; History, the progress line and CSVLogger,
  which come after it, all see the new key;
- ``BatchLosses``: batch-end logs hold the *running mean* of the epoch so far (as in Keras); this one
  recovers each batch's own loss from the running means and writes them to ``batch-losses.csv``.

    python examples/custom_callback.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch
import torch.nn as nn

import epochwise as ew
import epochwise.datasets as ds


class StopAtAccuracy(ew.callbacks.Callback):
    def __init__(self, target: float) -> None:
        super().__init__()
        self.target = target
        self.reached_at: int | None = None

    def on_train_begin(self, logs=None):
        self.reached_at = None

    def on_epoch_end(self, epoch, logs=None):
        if logs.get("val_accuracy", 0.0) >= self.target:
            self.reached_at = epoch
            self.model.stop_training = True

    def summary(self):
        if self.reached_at is None:
            return None
        return f"val_accuracy reached {self.target} at epoch {self.reached_at + 1}"


class EpochTime(ew.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.start


class BatchLosses(ew.callbacks.Callback):
    """Each batch's own loss: mean_b * seen_b - mean_(b-1) * seen_(b-1), divided by the batch's size."""

    def __init__(self, n_samples: int, batch_size: int) -> None:
        super().__init__()
        self.n_samples, self.batch_size = n_samples, batch_size
        self.rows: list[tuple[int, int, float, float]] = []  # (epoch, batch, running mean, batch loss)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.seen, self.previous = epoch, 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        size = min(self.batch_size, self.n_samples - self.seen)  # the last batch may be smaller
        total = logs["loss"] * (self.seen + size)
        self.rows.append((self.epoch, batch, logs["loss"], (total - self.previous) / size))
        self.seen, self.previous = self.seen + size, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs: runs in seconds")
    parser.add_argument("--output", default="example-output/custom_callback", help="folder for the CSV files")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    x, y = ds.load_digits(flatten=True)
    x_train, x_val, y_train, y_val = ds.train_test_split(x / 16.0, y, test_size=0.2, seed=0, stratify=y)
    torch.manual_seed(0)
    model = ew.Model(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    batch_size = 64
    stop = StopAtAccuracy(0.9 if args.quick else 0.97)
    batches = BatchLosses(len(x_train), batch_size)
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=20 if args.quick else 100,
        validation_data=(x_val, y_val),
        callbacks=[stop, EpochTime(), batches, ew.callbacks.CSVLogger(str(out / "history.csv"))],
        verbose=2,
    )

    print(
        f"\nStopAtAccuracy: reached at epoch {stop.reached_at + 1 if stop.reached_at is not None else None}"
    )
    print("History keys:", sorted(history.history))
    print("epoch_seconds:", " ".join(f"{s:.3f}" for s in history.history["epoch_seconds"]))

    with open(out / "batch-losses.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "batch", "running_mean", "batch_loss"])
        writer.writerows(batches.rows)
    last_epoch = [row for row in batches.rows if row[0] == history.epoch[-1]]
    sizes = [min(batch_size, len(x_train) - batch_size * b) for _, b, _, _ in last_epoch]
    weighted = sum(s * row[3] for s, row in zip(sizes, last_epoch)) / sum(sizes)
    print(f"last epoch: {len(last_epoch)} batches, own losses from {min(r[3] for r in last_epoch):.4f} "
          f"to {max(r[3] for r in last_epoch):.4f}")  # fmt: skip
    print(f"their size-weighted mean {weighted:.6f} = the epoch's logged loss {history.history['loss'][-1]:.6f}: "
          f"{math.isclose(weighted, history.history['loss'][-1], rel_tol=1e-4)}")  # fmt: skip
    print(f"wrote {out / 'batch-losses.csv'} and {out / 'history.csv'}")


if __name__ == "__main__":
    main()
