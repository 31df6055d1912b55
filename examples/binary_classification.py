"""Binary classification as the student project does it: RMSprop, binary cross-entropy, ModelCheckpoint, EarlyStopping.

The Keras program compiles with ``optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"]``,
fits with ``epochs=100, batch_size=64, validation_data=(x_val, y_val)`` and the callbacks
``ModelCheckpoint('best-model.h5')`` and ``EarlyStopping(patience=3, restore_best_weights=True)``.
Here the data is scikit-learn's breast-cancer set (offline), and the checkpoint is a PyTorch file.
At the end the best model is read back from ``best-model.pt`` into a fresh module and evaluated:
it scores exactly what the restored model and the callbacks report.

    python examples/binary_classification.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn as nn

import epochwise as ew
import epochwise.datasets as ds


def build() -> ew.Model:
    # keras.Sequential([Dense(16, "relu", input_shape=(30,)), Dense(8, "relu"), Dense(1, "sigmoid")])
    net = nn.Sequential(
        nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid()
    )
    model = ew.Model(net, seed=0)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="at most 15 epochs: runs in seconds")
    parser.add_argument(
        "--output", default="example-output/binary_classification", help="folder for best-model.pt"
    )
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    x, y = ds.load_breast_cancer()  # 569 tumours, 30 measurements, y = 1 for benign
    x_train, x_test, y_train, y_test = ds.train_test_split(x, y, test_size=0.2, seed=0, stratify=y)
    x_train, x_val, y_train, y_val = ds.train_test_split(
        x_train, y_train, test_size=0.2, seed=0, stratify=y_train
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)  # standardise with the training set's statistics
    x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))

    torch.manual_seed(0)
    model = build()
    # The course writes ModelCheckpoint('best-model.h5'), which saves every epoch: the file then holds the
    # *last* epoch. save_best_only=True keeps the best one, which is what the name promises.
    checkpoint = ew.callbacks.ModelCheckpoint(str(out / "best-model.pt"), save_best_only=True)
    early_stopping = ew.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    history = model.fit(
        x_train,
        y_train,
        epochs=15 if args.quick else 100,
        batch_size=64,
        validation_data=(x_val, y_val),
        callbacks=[checkpoint, early_stopping],
        verbose=2,
    )

    ran = len(history.epoch)
    print(
        f"\nepochs run: {ran} of {history.params['epochs']}; stopped_epoch (0-based): {early_stopping.stopped_epoch}"
    )
    print(f"best epoch: {early_stopping.best_epoch + 1} with val_loss {early_stopping.best:.6f}")

    restored = model.evaluate(x_val, y_val, return_dict=True, verbose=0)
    fresh = build()
    saved = fresh.load(out / "best-model.pt")  # weights and optimizer state; returns the saved extra
    from_file = fresh.evaluate(x_val, y_val, return_dict=True, verbose=0)
    print(f"val_loss of the restored model:            {restored['loss']:.6f}")
    print(
        f"val_loss of the model read from the file:  {from_file['loss']:.6f} (saved after epoch {saved['epoch']})"
    )
    print(f"best val_loss recorded by ModelCheckpoint: {checkpoint.best:.6f}")
    test = fresh.evaluate(x_test, y_test, return_dict=True, verbose=0)
    print(f"test: loss {test['loss']:.4f} - accuracy {test['accuracy']:.4f}")
    probabilities = fresh.predict(x_test[:5], verbose=0).ravel()
    print(
        "first five test tumours, P(benign):",
        " ".join(f"{p:.3f}" for p in probabilities),
        "- labels:",
        y_test[:5],
    )


if __name__ == "__main__":
    main()
