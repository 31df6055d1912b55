"""A training run for the fault-injection tests: BackupAndRestore every batch, results to --out.

Prints ``STEP <epoch> <batch>`` after each batch so the test knows where the run is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

import epochwise as ew
from epochwise.io import files


def _pause_before_replace(target):
    """With the new file written but not yet renamed into place: say so, and wait to be killed there."""
    print(f"EPOCHWISE-WRITING {target.name}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ["EPOCHWISE_TEST_WRITE_PAUSE"]))


if os.environ.get("EPOCHWISE_TEST_WRITE_PAUSE"):
    files.before_replace = _pause_before_replace


class Announce(ew.callbacks.Callback):
    epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        print(f"STEP {self.epoch} {batch}", flush=True)

    def on_train_end(self, logs=None):
        print("TRAIN-END", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backup", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--save-freq", default="1")
    parser.add_argument("--csv", default=None)
    parser.add_argument("--slow", type=float, default=0.0, help="seconds to sleep per batch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.25), nn.ReLU(), nn.Linear(16, 3))
    model = ew.Model(net, device="cpu", seed=11)
    model.compile(optimizer=ew.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], accumulate_steps=2)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(72, 6)).astype("float32")
    y = rng.integers(0, 3, 72)
    save_freq = "epoch" if args.save_freq == "epoch" else int(args.save_freq)
    callbacks = [
        ew.callbacks.EarlyStopping(monitor="val_loss", patience=20, restore_best_weights=True),
        ew.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
        ew.callbacks.BackupAndRestore(args.backup, save_freq=save_freq),
        Announce(),
    ]
    if args.csv:
        callbacks.append(ew.callbacks.CSVLogger(args.csv))
    if args.slow:
        import time

        callbacks.append(ew.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: time.sleep(args.slow)))
    history = model.fit(x, y, batch_size=8, epochs=5, validation_split=0.25, callbacks=callbacks, verbose=0)
    model.save_weights(args.out + ".pt")
    with open(args.out + ".json", "w") as fh:
        json.dump({"history": history.history, "epoch": history.epoch}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
