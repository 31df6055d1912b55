"""The Keras course's MNIST MLP, line for line: Flatten -> 300 -> 200 -> 100 -> 10, Adam(0.005), batch 5,000.

Data: MNIST when it is at hand (already cached, ``--data mnist`` to download 11 MB, or ``--mnist-path``
for a Keras ``mnist.npz`` or a folder of IDX files); otherwise scikit-learn's bundled 8x8 digits stand
in, offline, with the large batch scaled so that an epoch still takes 11 iterations, as 55,000 / 5,000
does in the course. Afterwards the course's timing comparison: the same epochs at the default batch
size (32) and at the large one.

    python examples/mnist_mlp.py            # the course's settings: 100 epochs
    python examples/mnist_mlp.py --quick    # a few epochs, seconds
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import epochwise as ew
import epochwise.datasets as ds


def load(args: argparse.Namespace):
    """(x_train, y_train), (x_test, y_test) and the data set's name."""
    if args.data != "digits":
        try:
            download = args.data == "mnist"
            return ds.mnist.load_data(path=args.mnist_path, download=download), "MNIST"
        except OSError as err:  # not cached (FileNotFoundError) or no network (DownloadError)
            if args.data == "mnist":
                raise
            print(f"MNIST is not at hand ({type(err).__name__}); using scikit-learn's 8x8 digits instead.")
            print("  (run with --data mnist to download it, or --mnist-path for a file you have)")
    x, y = ds.load_digits()
    x_train, x_test, y_train, y_test = ds.train_test_split(x, y, test_size=0.2, seed=1234)
    return ((x_train, y_train), (x_test, y_test)), "digits"


def build(n_pixels: int) -> nn.Module:
    # keras.Sequential([Flatten(input_shape=(28, 28)), Dense(300, "relu"), Dense(200, "relu"),
    #                   Dense(100, "relu"), Dense(10, "softmax")])
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_pixels, 300),
        nn.ReLU(),
        nn.Linear(300, 200),
        nn.ReLU(),
        nn.Linear(200, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
        nn.Softmax(dim=1),  # as in Keras; epochwise sees it and treats the outputs as probabilities
    )


def compiled(n_pixels: int, seed: int) -> ew.Model:
    torch.manual_seed(seed)
    model = ew.Model(build(n_pixels), seed=seed)
    model.compile(
        optimizer=ew.optimizers.Adam(learning_rate=0.005),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs: runs in seconds")
    parser.add_argument("--data", choices=("auto", "mnist", "digits"), default="auto")
    parser.add_argument("--mnist-path", default=None, help="a Keras mnist.npz or a folder of the IDX files")
    parser.add_argument("--output", default="example-output/mnist_mlp", help="folder for history.csv")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    epochs, timing_epochs = (8, 2) if args.quick else (100, 100)

    ((train_images, train_labels), (test_images, test_labels)), name = load(args)
    n_val = 5000 if name == "MNIST" else len(train_images) // 5
    big_batch = 5000 if name == "MNIST" else math.ceil((len(train_images) - n_val) / 11)

    # hold out n_val random training images for validation, as the course does
    np.random.seed(1234)
    index = np.random.choice(len(train_images), n_val, replace=False)
    keep = np.setdiff1d(np.arange(len(train_images)), index)
    val_images, val_labels = train_images[index], train_labels[index]
    train_images, train_labels = train_images[keep], train_labels[keep]

    # min-max scaling with the training set's min and max
    lo, hi = train_images.min(), train_images.max()
    train_images, val_images, test_images = (
        (a - lo) / (hi - lo) for a in (train_images, val_images, test_images)
    )
    n_pixels = int(np.prod(train_images.shape[1:]))

    print(
        f"\n== {name}: {len(train_images):,} training, {n_val:,} validation, {len(test_images):,} test images"
    )
    model = compiled(n_pixels, seed=1234)
    history = model.fit(
        train_images,
        train_labels,
        epochs=epochs,
        batch_size=big_batch,
        validation_data=(val_images, val_labels),
        callbacks=[ew.callbacks.CSVLogger(str(out / "history.csv"))],
        verbose=2,
    )
    h = history.history
    best = int(np.argmin(h["val_loss"]))
    print(
        f"lowest val_loss {h['val_loss'][best]:.4f} at epoch {best + 1}; at the last epoch loss {h['loss'][-1]:.4g}, "
        f"accuracy {h['accuracy'][-1]:.4f}, val_loss {h['val_loss'][-1]:.4f}, val_accuracy {h['val_accuracy'][-1]:.4f}"
    )
    if best + 1 < len(h["val_loss"]) and h["val_loss"][-1] > h["val_loss"][best]:
        print("val_loss rose after its lowest point while the training loss kept falling: overfitting, which "
              "EarlyStopping(patience=3, restore_best_weights=True) would have cut short")  # fmt: skip
    test_loss, test_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    print(f"test: loss {test_loss:.4f} - accuracy {test_accuracy:.4f}")

    print(f"\n== timing: {timing_epochs} epochs at the default batch size and at {big_batch:,}")
    rows = []
    for batch_size in (None, big_batch):  # None: Keras's default of 32
        timed = compiled(n_pixels, seed=1234)
        start = time.perf_counter()
        run = timed.fit(
            train_images,
            train_labels,
            epochs=timing_epochs,
            batch_size=batch_size,
            validation_data=(val_images, val_labels),
            verbose=0,
        )
        seconds = time.perf_counter() - start
        steps = run.params["steps"]
        rows.append(
            (batch_size or 32, steps, steps * timing_epochs, seconds, run.history["val_accuracy"][-1])
        )
    print(f"{'batch':>7} {'iterations/epoch':>17} {'iterations':>11} {'seconds':>8} {'val_accuracy':>13}")
    for batch_size, steps, total, seconds, accuracy in rows:
        print(f"{batch_size:>7,} {steps:>17,} {total:>11,} {seconds:>8.2f} {accuracy:>13.4f}")
    print(f"the large batch took {rows[1][3] / rows[0][3]:.2f} times as long as batch 32 "
          f"(the course measured 1.0 min against 6.39 min for 100 MNIST epochs on its machine)")  # fmt: skip
    print(f"wrote {out / 'history.csv'}")


if __name__ == "__main__":
    main()
