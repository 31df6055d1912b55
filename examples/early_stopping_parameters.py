"""EarlyStopping's parameters, one run each: monitor, min_delta, patience, mode (and restore_best_weights).

``EarlyStopping(monitor='val_loss', min_delta=0, patience=0, mode='auto')`` are Keras's defaults.
Every run below starts from the same weights and sees the batches in the same order, so each one
is a prefix of one reference run without early stopping. The script therefore also works out from
the reference curve, by Keras's rule, where each run must stop, and prints both.

Keras's rule, per epoch: ``wait += 1``; an improvement (more than ``min_delta`` better than the best
so far, in the direction of ``mode``) resets ``wait`` to 0; otherwise training stops once
``wait >= patience`` (never at the first epoch), so ``patience=0`` acts like ``patience=1``.

    python examples/early_stopping_parameters.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
import torch.nn as nn

import epochwise as ew
import epochwise.datasets as ds

RUNS = [  # (label, EarlyStopping arguments)
    ("defaults", {}),
    ("patience=5", {"patience": 5}),
    ("patience=5, min_delta=0.02", {"patience": 5, "min_delta": 0.02}),
    ("monitor='val_accuracy', patience=5", {"monitor": "val_accuracy", "patience": 5}),
    (
        "monitor='val_accuracy', patience=5, mode='min'",
        {"monitor": "val_accuracy", "patience": 5, "mode": "min"},
    ),
    ("patience=5, restore_best_weights=True", {"patience": 5, "restore_best_weights": True}),
]


def expected_stop(
    values: list[float], *, min_delta: float = 0.0, patience: int = 0, mode: str = "min"
) -> int | None:
    """The 1-based epoch at which Keras's EarlyStopping stops on this curve, or None if it never does."""
    sign = 1 if mode == "max" else -1
    best, wait = -math.inf, 0
    for epoch, value in enumerate(values):
        wait += 1
        if sign * value - min_delta > best:  # better by more than min_delta
            best, wait = sign * value, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch + 1
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs: runs in seconds")
    parser.add_argument(
        "--output",
        default="example-output/early_stopping_parameters",
        help="accepted like the other examples; this one writes no files",
    )
    args = parser.parse_args()
    epochs = 15 if args.quick else 60

    # a small training set and a wide network: validation loss soon turns up again (overfitting)
    x, y = ds.load_digits(flatten=True)
    x = x / 16.0
    x_train, x_val, y_train, y_val = ds.train_test_split(x, y, test_size=0.3, seed=0, stratify=y)
    x_train, y_train = x_train[:300], y_train[:300]

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    initial = copy.deepcopy(net.state_dict())

    def run(callbacks):
        net.load_state_dict(initial)
        model = ew.Model(net, seed=0)
        model.compile(optimizer=ew.optimizers.Adam(learning_rate=0.003), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])  # fmt: skip
        history = model.fit(x_train, y_train, batch_size=32, epochs=epochs, validation_data=(x_val, y_val),
                            callbacks=callbacks, verbose=0)  # fmt: skip
        return model, history.history

    _, reference = run([])
    print(f"reference run, {epochs} epochs without early stopping:")
    print("  val_loss     " + " ".join(f"{v:.3f}" for v in reference["val_loss"]))
    print("  val_accuracy " + " ".join(f"{v:.3f}" for v in reference["val_accuracy"]))

    print(f"\n{'EarlyStopping(...)':<48} {'epochs run':>10} {'expected':>9} {'best epoch':>10} {'best':>8}")
    for label, kwargs in RUNS:
        stop = ew.callbacks.EarlyStopping(**kwargs)
        model, history = run([stop])
        monitor = kwargs.get("monitor", "val_loss")
        mode = kwargs.get("mode", "max" if monitor == "val_accuracy" else "min")
        curve = reference[monitor]
        expected = expected_stop(
            curve, min_delta=kwargs.get("min_delta", 0.0), patience=kwargs.get("patience", 0), mode=mode
        )
        ran = len(history["loss"])
        print(f"{label:<48} {ran:>10} {expected or epochs:>9} {stop.best_epoch + 1:>10} {stop.best:>8.4f}")
        if kwargs.get("restore_best_weights"):
            now = model.evaluate(x_val, y_val, return_dict=True, verbose=0)["loss"]
            print(
                f"{'':<48} after fit the model scores val_loss {now:.4f}: the best epoch's weights are back"
            )

    print(f"\n'expected' is where Keras's rule stops on the reference curve ({epochs} = it never stops).")
    print("mode='min' on val_accuracy counts a rising accuracy as no progress and stops after `patience` "
          "epochs without a fall, the opposite of what was meant; mode='auto' takes the direction from "
          "the metric (accuracy goes up, loss goes down).")  # fmt: skip


if __name__ == "__main__":
    main()
