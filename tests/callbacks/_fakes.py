"""A fake model and a miniature fit loop that drive callbacks with chosen log values.

The loop follows rule L1/L2 of the reference (hooks in order, ``stop_training`` checked after every
train batch end and every epoch end). During epoch ``e`` every weight of the module equals ``e``, so
after a restore the weights say which epoch they come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import save_file

from epochwise.callbacks import CallbackList


class FakeOptimizer:
    """``learning_rate`` as in the contract: settable, TypeError when a schedule drives it."""

    def __init__(self, learning_rate: float = 1.0, schedule: Any = None) -> None:
        self._lr = learning_rate
        self.schedule = schedule
        self.iterations = 0

    @property
    def learning_rate(self) -> float:
        return float(self.schedule(self.iterations)) if self.schedule is not None else self._lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.schedule is not None:
            raise TypeError("this optimizer's learning rate is driven by a schedule")
        self._lr = float(value)


class FakeModel:
    def __init__(
        self,
        expected_log_keys: list[str] | None = None,
        metrics: dict[str, str | None] | None = None,
        learning_rate: float = 1.0,
        schedule: Any = None,
    ) -> None:
        self.module = torch.nn.Linear(2, 1)
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate, schedule)
        self.compiled_metrics = [SimpleNamespace(name=n, direction=d) for n, d in (metrics or {}).items()]
        self.expected_log_keys = expected_log_keys
        self.saved: list[tuple[str, str, dict | None]] = []  # (method, path, extra)

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(weights)

    def weight_epoch(self) -> float:
        """Which epoch the current weights come from (every weight equals it)."""
        return float(self.module.weight.detach()[0, 0])

    def save_weights(self, path: str) -> None:
        self.saved.append(("save_weights", path, None))
        if path.endswith(".safetensors"):
            save_file(self.get_weights(), path)
        else:
            torch.save(self.get_weights(), path)

    def save(self, path: str, extra: dict | None = None) -> None:
        self.saved.append(("save", path, extra))
        torch.save({"module": self.get_weights(), "extra": extra or {}}, path)


@dataclass
class Run:
    epochs: list[int] = field(default_factory=list)  # epochs that ran (0-based)
    lrs: list[float] = field(default_factory=list)  # learning rate in effect during each epoch
    logs: list[dict] = field(default_factory=list)  # epoch logs after all callbacks saw them
    batches: list[tuple[int, int]] = field(default_factory=list)  # (epoch, batch) that ran


def run_fit(
    model: FakeModel,
    callbacks: list,
    epoch_logs: list[dict],
    *,
    epochs: int | None = None,
    initial_epoch: int = 0,
    batch_logs: list[list[dict]] | None = None,
    steps: int | None = None,
) -> Run:
    """Run ``epochs`` epochs; epoch ``e`` logs ``epoch_logs[e - initial_epoch]`` (and ``batch_logs``)."""
    epochs = initial_epoch + len(epoch_logs) if epochs is None else epochs
    params = {"verbose": 0, "epochs": epochs, "steps": steps}
    cbs = CallbackList(callbacks, model=model, params=params)
    run = Run()
    model.stop_training = False
    cbs.on_train_begin({})
    logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        cbs.on_epoch_begin(epoch, {})
        run.lrs.append(model.optimizer.learning_rate)
        with torch.no_grad():
            for p in model.module.parameters():
                p.fill_(epoch)
        for batch, values in enumerate(batch_logs[epoch - initial_epoch] if batch_logs else []):
            cbs.on_train_batch_begin(batch, {})
            run.batches.append((epoch, batch))
            model.optimizer.iterations += 1
            cbs.on_train_batch_end(batch, dict(values))
            if model.stop_training:
                break
        logs = dict(epoch_logs[epoch - initial_epoch])
        cbs.on_epoch_end(epoch, logs)
        run.epochs.append(epoch)
        run.logs.append(logs)
        if model.stop_training:
            break
    cbs.on_train_end(dict(logs))
    return run


def val_losses(values: list[float]) -> list[dict]:
    return [{"loss": 1.0, "val_loss": v} for v in values]
