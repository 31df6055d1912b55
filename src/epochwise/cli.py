"""The ``epochwise`` command line: ``epochwise demo`` runs the tutorial's MLP on bundled digits."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_demo_module(n_inputs: int = 64, n_classes: int = 10):
    """Flatten -> Dense 300 -> 200 -> 100 -> 10 with ReLU: the tutorial's MNIST MLP."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_inputs, 300),
        nn.ReLU(),
        nn.Linear(300, 200),
        nn.ReLU(),
        nn.Linear(200, 100),
        nn.ReLU(),
        nn.Linear(100, n_classes),
    )


def load_digits_split(seed: int = 1234):
    """scikit-learn's bundled 8x8 digits as (train, validation, test), scaled to [0, 1] by the training set."""
    import numpy as np

    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - the demo extra is missing
        raise SystemExit("the demo needs scikit-learn: pip install 'epochwise[demo]'") from err
    digits = load_digits()
    x = digits.images.astype("float32")
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = n_val = len(x) // 5
    x_test, y_test = x[:n_test], y[:n_test]
    x_val, y_val = x[n_test : n_test + n_val], y[n_test : n_test + n_val]
    x_train, y_train = x[n_test + n_val :], y[n_test + n_val :]
    lo, hi = (
        x_train.min(),
        x_train.max(),
    )  # min-max scaling with the training set's range, as the tutorial does
    scale = lambda a: (a - lo) / (hi - lo)  # noqa: E731
    return (scale(x_train), y_train), (scale(x_val), y_val), (scale(x_test), y_test)


def run_demo(args: argparse.Namespace) -> int:
    import torch

    import epochwise as ew

    torch.manual_seed(args.seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_digits_split(args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model = ew.Model(build_demo_module(), device=args.device, seed=args.seed)
    model.compile(
        optimizer=ew.optimizers.Adam(learning_rate=args.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = []
    cb = ew.callbacks
    if hasattr(cb, "EarlyStopping"):
        callbacks.append(
            cb.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best_weights=True)
        )
    if hasattr(cb, "ModelCheckpoint"):
        callbacks.append(
            cb.ModelCheckpoint(str(out / "best-model.pt"), monitor="val_loss", save_best_only=True)
        )
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=(x_val, y_val),
        callbacks=callbacks,
        verbose=args.verbose,
    )
    test_loss, test_acc = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    weights = out / "demo-weights.safetensors"
    model.save_weights(weights)
    print(f"Test on {len(x_test):,} samples: loss {test_loss:.4f} - accuracy {test_acc:.4f}")
    print(f"Weights saved to {weights}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="epochwise", description="Keras-style training for PyTorch modules")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train the tutorial's MLP on scikit-learn's bundled digits")
    demo.add_argument("--batch-size", type=int, default=64, help="samples per iteration (default 64)")
    demo.add_argument("--epochs", type=int, default=30, help="epochs at most; early stopping may end sooner")
    demo.add_argument("--learning-rate", type=float, default=0.001, help="Adam learning rate (default 0.001)")
    demo.add_argument(
        "--patience", type=int, default=3, help="EarlyStopping patience on val_loss (default 3)"
    )
    demo.add_argument(
        "--seed", type=int, default=1234, help="seed for the split, the weights and the data order"
    )
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    demo.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    demo.add_argument("--output", default="epochwise-demo", help="folder for the weights files")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
