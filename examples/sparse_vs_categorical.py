"""Sparse vs categorical cross-entropy: the same loss for integer labels and for one-hot targets.

``sparse_categorical_crossentropy`` takes integer class labels ``y`` of shape ``(n,)``;
``categorical_crossentropy`` takes one-hot rows of shape ``(n, classes)``. On the same data, from the
same weights and with the same batch order, the two runs give the same numbers at every epoch.
Mixing them up is an error that says which loss fits which targets.

    python examples/sparse_vs_categorical.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
import torch.nn as nn

import epochwise as ew
import epochwise.datasets as ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs: runs in seconds")
    parser.add_argument(
        "--output",
        default="example-output/sparse_vs_categorical",
        help="accepted like the other examples; this one writes no files",
    )
    args = parser.parse_args()
    epochs = 5 if args.quick else 20

    x, labels = ds.load_digits(flatten=True)
    x = x / 16.0
    onehot = np.eye(10, dtype=np.float32)[labels]  # keras.utils.to_categorical(labels, 10)
    print(f"integer labels: shape {labels.shape}, first five {labels[:5].tolist()}")
    print(f"one-hot targets: shape {onehot.shape}, first row {onehot[0].astype(int).tolist()}\n")

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    initial = copy.deepcopy(net.state_dict())
    histories = {}
    for loss, y in (("sparse_categorical_crossentropy", labels), ("categorical_crossentropy", onehot)):
        net.load_state_dict(initial)
        model = ew.Model(net, seed=0)
        model.compile(
            optimizer="adam", loss=loss, metrics=["accuracy"]
        )  # "accuracy" follows the targets (ME1)
        histories[loss] = model.fit(
            x, y, batch_size=64, epochs=epochs, validation_split=0.2, verbose=0
        ).history

    sparse, categorical = histories["sparse_categorical_crossentropy"], histories["categorical_crossentropy"]
    print(
        f"{'epoch':>5} {'sparse loss':>12} {'categorical loss':>17} {'sparse val_acc':>15} {'categ. val_acc':>15}"
    )
    for e in range(epochs):
        print(f"{e + 1:>5} {sparse['loss'][e]:>12.6f} {categorical['loss'][e]:>17.6f} "
              f"{sparse['val_accuracy'][e]:>15.4f} {categorical['val_accuracy'][e]:>15.4f}")  # fmt: skip
    gap = max(abs(a - b) for key in ("loss", "val_loss") for a, b in zip(sparse[key], categorical[key]))
    print(f"largest difference in loss or val_loss between the two runs: {gap:.2e}")

    print("\nmixing them up:")
    for loss, y, what in (
        ("sparse_categorical_crossentropy", onehot, "one-hot targets"),
        ("categorical_crossentropy", labels, "integer labels"),
    ):
        net.load_state_dict(initial)
        model = ew.Model(net)
        model.compile(optimizer="adam", loss=loss)
        try:
            model.fit(x, y, epochs=1, verbose=0)
            print(f"  {loss} with {what}: trained (unexpected)")
        except ValueError as err:
            print(f"  {loss} with {what}: ValueError: {err}")


if __name__ == "__main__":
    main()
