"""TerminateOnNaN catching a diverging learning rate (diabetes regression, SGD, mse).

1. A learning rate far too large: without TerminateOnNaN every remaining epoch runs on a NaN loss;
   with it, training stops after the first batch whose loss is NaN or infinite.
2. A learning rate that doubles every epoch (a crude learning-rate range test): TerminateOnNaN stops
   the run when it finally diverges, and EarlyStopping(restore_best_weights=True), which still runs
   at the end of training, puts back the weights of the best epoch, so the model is usable.

    python examples/terminate_on_nan.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
import torch.nn as nn

import epochwise as ew
import epochwise.datasets as ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs: runs in seconds")
    parser.add_argument(
        "--output",
        default="example-output/terminate_on_nan",
        help="accepted like the other examples; this one writes no files",
    )
    args = parser.parse_args()
    epochs = 20 if args.quick else 50

    x, y = ds.load_diabetes()  # x is already centred and scaled; standardise the target too
    y = (y - y.mean()) / y.std()
    x_train, x_val, y_train, y_val = ds.train_test_split(x, y, test_size=0.2, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
    initial = copy.deepcopy(net.state_dict())

    def model_with(learning_rate: float) -> ew.Model:
        net.load_state_dict(initial)
        model = ew.Model(net, seed=0)
        model.compile(optimizer=ew.optimizers.SGD(learning_rate=learning_rate), loss="mse")
        return model

    print(f"== 1. SGD(learning_rate=5.0) for {epochs} epochs")
    for callbacks in ([], [ew.callbacks.TerminateOnNaN()]):
        history = model_with(5.0).fit(x_train, y_train, batch_size=32, epochs=epochs, callbacks=callbacks,
                                       validation_data=(x_val, y_val), verbose=0)  # fmt: skip
        losses = history.history["loss"]
        bad = sum(not math.isfinite(v) for v in losses)
        label = "with TerminateOnNaN" if callbacks else "without callbacks"
        print(f"  {label:<20} epochs run: {len(losses):>3}, of which {bad} with a NaN/inf loss; "
              f"last loss {losses[-1]}")  # fmt: skip

    print("\n== 2. the learning rate doubles every epoch, from 0.001")
    model = model_with(0.001)
    early_stopping = ew.callbacks.EarlyStopping(
        monitor="val_loss", patience=epochs, restore_best_weights=True
    )
    history = model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=epochs,
        validation_data=(x_val, y_val),
        callbacks=[
            ew.callbacks.LearningRateScheduler(lambda epoch, lr: 0.001 * 2**epoch),
            ew.callbacks.TerminateOnNaN(),
            early_stopping,
        ],
        verbose=2,
    )
    h = history.history
    print(f"\nepochs run: {len(h['loss'])} of {epochs}; last learning rate {h['learning_rate'][-1]:g}, "
          f"last loss {h['loss'][-1]}")  # fmt: skip
    best = early_stopping.best_epoch
    print(
        f"best epoch: {best + 1}, learning rate {h['learning_rate'][best]:g}, val_loss {early_stopping.best:.4f}"
    )
    after = model.evaluate(x_val, y_val, verbose=0)
    print(f"val_loss of the model after fit: {after:.4f} (the best epoch's weights, restored)")


if __name__ == "__main__":
    main()
