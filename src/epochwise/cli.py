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
    n_all = len(x_train) + len(x_val) + len(x_test)
    print(f"scikit-learn's digits: {n_all:,} 8x8 images, shuffled and split {len(x_train):,} train / "
          f"{len(x_val):,} validation / {len(x_test):,} test (the test set is held out until the end)")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model = ew.Model(build_demo_module(), device=args.device, seed=args.seed)
    model.compile(
        optimizer=ew.optimizers.Adam(learning_rate=args.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = ew.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best_weights=True)
    best = ew.callbacks.ModelCheckpoint(str(out / "best-model.pt"), monitor="val_loss", save_best_only=True)
    callbacks = [stop, best]
    history = model.fit(
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
    print(f"Test on the {len(x_test):,} held-out samples: loss {test_loss:.4f} - accuracy {test_acc:.4f}")
    print(f"Weights saved to {weights}")
    _save_learning_curves(history, out / "learning-curves.png", stop)
    return 0


def _save_learning_curves(history, path: Path, stop) -> None:
    """The demo's learning curves, when matplotlib is installed (the ``demo`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("Learning curves not drawn: pip install 'epochwise[plot]' for them")
        return
    from .insight.plots import plot_history

    plot_history(history, path, early_stopping=stop, title="epochwise demo: MLP on scikit-learn digits")
    print(f"Learning curves saved to {path}")


def run_plot(args: argparse.Namespace) -> int:
    """``epochwise plot history.csv -o curves.png``: learning curves from a CSVLogger file."""
    from .insight.plots import plot_history

    source = Path(args.csv)
    output = Path(args.output) if args.output else source.with_suffix(".png")
    try:
        plot_history(source, output, title=args.title)
    except ImportError as err:
        raise SystemExit(f"epochwise plot: {err}") from None
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"epochwise plot: {err}") from None
    print(f"Learning curves saved to {output}")
    return 0


def _import_function(spec: str, flag: str):
    """``package.module:function`` -> the function, with an error that says what to write."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"{flag} {spec!r}: write it as module:function, e.g. {flag} mypkg.models:build")
    if "" not in sys.path:
        sys.path.insert(0, "")  # let a module in the current folder be found, as python -m does
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        raise SystemExit(f"{flag} {spec!r}: cannot import {module_name!r} ({err})") from None
    except AttributeError:
        raise SystemExit(f"{flag} {spec!r}: {module_name!r} has no {attr!r}") from None
    if not callable(function):
        raise SystemExit(f"{flag} {spec!r}: {attr!r} is not a function")
    return function


def run_sweep(args: argparse.Namespace) -> int:
    """``epochwise sweep``: the batch-size explorer on the demo model and digits, or your factory and data."""
    from .insight.explorer import explore_batch_sizes

    try:
        sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(
            f"--batch-sizes {args.batch_sizes!r}: give integers separated by commas, e.g. 16,64,256"
        ) from None
    if args.data:
        loaded = _import_function(args.data, "--data")()
        if not isinstance(loaded, tuple) or len(loaded) not in (2, 3):
            raise SystemExit("--data must name a function returning (x, y) or (x, y, (x_val, y_val))")
        x, y, validation = (*loaded, None)[:3]
    else:
        (x, y), validation, _ = load_digits_split(args.seed)
    if args.factory:
        build = _import_function(args.factory, "--factory")
    else:
        import epochwise as ew

        def build():
            model = ew.Model(build_demo_module(), device=args.device, seed=args.seed)
            model.compile(
                optimizer=ew.optimizers.Adam(learning_rate=args.learning_rate),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            return model

    explore_batch_sizes(
        build,
        x,
        y,
        sizes,
        epochs=args.epochs,
        validation_data=validation,
        seed=args.seed,
        output_dir=args.output,
    )
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
    demo.add_argument(
        "--output", default="epochwise-demo",
        help="folder for the weights and the learning curves (default: ./epochwise-demo, git-ignored in a clone)"
    )
    plot = sub.add_parser("plot", help="draw learning curves from a CSVLogger file")
    plot.add_argument("csv", help="the CSV file CSVLogger wrote")
    plot.add_argument(
        "-o", "--output", help="image to write, .png or .svg (default: the CSV's name with .png)"
    )
    plot.add_argument("--title", default=None, help="a title above the panels")
    sweep = sub.add_parser(
        "sweep", help="train at several batch sizes and tabulate time, memory and accuracy"
    )
    sweep.add_argument(
        "--batch-sizes", default="16,32,64,128,256,512,1024", help="comma-separated (default 16,...,1024)"
    )
    sweep.add_argument("--epochs", type=int, default=5, help="epochs per batch size (default 5)")
    sweep.add_argument(
        "--learning-rate", type=float, default=0.001, help="Adam learning rate of the demo model"
    )
    sweep.add_argument(
        "--seed", type=int, default=1234, help="seed for the split, the weights and the data order"
    )
    sweep.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (demo model)")
    sweep.add_argument(
        "--factory", help="module:function returning a fresh compiled ew.Model (default: the demo MLP)"
    )
    sweep.add_argument(
        "--data", help="module:function returning (x, y) or (x, y, (x_val, y_val)) (default: bundled digits)"
    )
    sweep.add_argument("--output", default="epochwise-sweep", help="folder for the table and the figure")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    if args.command == "plot":
        return run_plot(args)
    if args.command == "sweep":
        return run_sweep(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
