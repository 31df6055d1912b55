"""The peers at their defaults: Keras 3 (torch backend), Lightning (with and without its progress bar), poutyne.

Each gets the same data (NumPy arrays, or a ``DataLoader(TensorDataset)`` where the framework takes
only loaders), the same initial weights (copied from the torch module for Keras), Adam with the same
learning rate and epsilon, and validation every epoch at the training batch size. Nothing is tuned:
what a user who follows each framework's tutorial gets.

Data order, where the library allows it, is the floor's (``epoch_orders``): Lightning's DataLoader
and poutyne's (``fit_generator`` with the DataLoader its ``fit(x, y)`` would build, given that sampler)
see the floor's batches. Keras shuffles arrays itself and takes no order; it is seeded
(``keras.utils.set_random_seed``) so its order is fixed from run to run, but it is not the floor's.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
from _common import (
    EPSILON,
    LEARNING_RATE,
    SIDE,
    EpochClock,
    Result,
    Spec,
    epoch_orders,
    make_module,
    peak_rss_mib,
    rss_mib,
)


# --- Keras 3, torch backend ----------------------------------------------------------------------
def run_keras(spec: Spec, data: tuple[np.ndarray, ...]) -> Result:
    os.environ["KERAS_BACKEND"] = "torch"  # the worker sets it before anything imports keras, too
    import keras
    import torch

    clock = EpochClock(spec.device)

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            clock.start()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            clock.tick()

    x, y, xv, yv = data
    keras.utils.set_random_seed(spec.seed)  # Keras's own shuffle of arrays: fixed, though not the floor's order
    model = keras.Sequential(
        [
            keras.Input((SIDE, SIDE)),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(200, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    torch_linears = [m for m in make_module(spec.seed) if isinstance(m, torch.nn.Linear)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for layer, linear in zip(dense, torch_linears):  # the same initial weights as the torch runners
        layer.set_weights([linear.weight.detach().numpy().T, linear.bias.detach().numpy()])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=EPSILON),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    before = rss_mib()
    history = model.fit(
        x,
        y,
        batch_size=spec.batch_size,
        epochs=spec.epochs,
        validation_data=(xv, yv),
        verbose=1,
        callbacks=[Clock()],
    )
    val_acc = float(history.history["val_accuracy"][-1])
    return Result(spec.runner, spec.batch_size, clock.epoch_seconds(), spec.warmup, val_acc, before, peak_rss_mib())


# --- Lightning -----------------------------------------------------------------------------------
def run_lightning(spec: Spec, data: tuple[np.ndarray, ...]) -> Result:
    """Trainer defaults (logger, checkpointing, sanity check, model summary); ``lightning-nobar`` turns
    off the progress bar only."""
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    clock = EpochClock(spec.device)

    class Clock(L.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            clock.start()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:  # after validation (Lightning 2)
            clock.tick()

    class MLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_module(spec.seed)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            xb, yb = batch
            logits = self.net(xb)
            loss = F.cross_entropy(logits, yb)
            self.log("loss", loss, prog_bar=True)
            self.log("accuracy", (logits.argmax(1) == yb).float().mean(), prog_bar=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            xb, yb = batch
            logits = self.net(xb)
            self.log("val_loss", F.cross_entropy(logits, yb), prog_bar=True)
            self.log("val_accuracy", (logits.argmax(1) == yb).float().mean(), prog_bar=True)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=LEARNING_RATE, eps=EPSILON)

    x, y, xv, yv = (torch.from_numpy(a) for a in data)
    bs = spec.batch_size
    train = DataLoader(TensorDataset(x, y), batch_size=bs, sampler=epoch_orders(len(x), spec.seed))  # the floor's order
    val = DataLoader(TensorDataset(xv, yv), batch_size=bs)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            max_epochs=spec.epochs,
            accelerator="gpu" if spec.device.startswith("cuda") else "cpu",
            devices=1,
            default_root_dir=root,
            enable_progress_bar=spec.runner == "lightning",
            callbacks=[Clock()],
        )
        model = MLP()
        before = rss_mib()
        trainer.fit(model, train, val)
        val_acc = float(trainer.callback_metrics["val_accuracy"])
    return Result(spec.runner, bs, clock.epoch_seconds(), spec.warmup, val_acc, before, peak_rss_mib())


# --- poutyne -------------------------------------------------------------------------------------
def run_poutyne(spec: Spec, data: tuple[np.ndarray, ...]) -> Result:
    import poutyne
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    clock = EpochClock(spec.device)

    class Clock(poutyne.Callback):
        def on_train_begin(self, logs: dict) -> None:
            clock.start()

        def on_epoch_end(self, epoch_number: int, logs: dict) -> None:
            clock.tick()

    x, y, xv, yv = (torch.from_numpy(a) for a in data)
    bs = spec.batch_size
    # what poutyne's fit(x, y) builds (a DataLoader over the arrays as tensors), with the floor's order
    train = DataLoader(TensorDataset(x, y), batch_size=bs, sampler=epoch_orders(len(x), spec.seed))
    val = DataLoader(TensorDataset(xv, yv), batch_size=bs)
    net = make_module(spec.seed)
    model = poutyne.Model(
        net,
        torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, eps=EPSILON),
        "cross_entropy",
        batch_metrics=["accuracy"],
        device=torch.device(spec.device),
    )
    before = rss_mib()
    history = model.fit_generator(train, val, epochs=spec.epochs, callbacks=[Clock()], verbose=True)
    val_acc = float(history[-1]["val_acc"]) / 100.0  # poutyne reports accuracy in percent
    return Result(spec.runner, spec.batch_size, clock.epoch_seconds(), spec.warmup, val_acc, before, peak_rss_mib())


RUNNERS = {
    "keras": run_keras,
    "lightning": run_lightning,
    "lightning-nobar": run_lightning,
    "poutyne": run_poutyne,
}
PACKAGES = {"keras": "keras", "lightning": "lightning", "lightning-nobar": "lightning", "poutyne": "poutyne"}
