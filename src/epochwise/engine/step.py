"""The one training step (fit, the LR range test and the batch-size probes all use it), and its settings:
mixed precision, torch.compile and gradient accumulation."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import distributed
from ..text import is_int

PRECISIONS: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


@dataclass
class StepSettings:
    """How compile asked every step to run, and the modules the steps call (built once).

    ``gathered``: under FSDP, the full parameters are held on every rank for evaluation.
    """

    precision: str = "32"
    dtype: torch.dtype | None = None
    accumulate: int = 1
    compile_args: dict | None = None
    gathered: bool = False
    ddp_module: Any = None
    compiled: dict = field(default_factory=dict)

    @classmethod
    def from_compile(cls, precision: Any, compile: Any, accumulate_steps: Any) -> StepSettings:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if not is_int(accumulate_steps):
            raise ValueError(
                f"accumulate_steps must be a positive integer (1 = no accumulation), got {accumulate_steps!r}")
        if not isinstance(compile, (bool, dict)):
            raise ValueError(f"compile must be True, False or a dict of torch.compile arguments, got {compile!r}")
        compile_args = ({} if compile is True else compile) if compile else None
        return cls(str(precision), PRECISIONS[str(precision)], accumulate_steps, compile_args)

    def forward_module(self, module: torch.nn.Module, device: torch.device, training: bool) -> torch.nn.Module:
        """What fit / evaluate / predict call: DDP's wrapper for training under torchrun (FSDP shards the
        module itself), and torch.compile's when asked for. The user's module stays as it is."""
        if training and distributed.is_distributed() and not distributed.is_sharded(module):
            if self.ddp_module is None:
                self.ddp_module = distributed.wrap_module(module, device)
            module = self.ddp_module
        if self.compile_args is None:
            return module
        if id(module) not in self.compiled:
            self.compiled[id(module)] = torch.compile(module, **self.compile_args)
        return self.compiled[id(module)]

    def describe(self, module: torch.nn.Module) -> list[str]:
        """The run plan's words for these settings."""
        parts = [self.precision] if self.dtype is not None else []
        if self.accumulate > 1:
            parts.append(f"{self.accumulate} batches per optimizer step")
        if self.compile_args is not None:
            parts.append("torch.compile")
        if distributed.is_sharded(module):
            parts.append("FSDP")
        return parts


def call_module(module: torch.nn.Module, x: Any) -> Any:
    """A tuple of inputs goes in as positional arguments, a dict as keyword arguments."""
    if isinstance(x, (tuple, list)):
        return module(*x)
    if isinstance(x, dict):
        return module(**x)
    return module(x)


class StepRunner:
    """Forward passes under autocast, and the optimizer step every ``accumulate_steps`` batches.

    With accumulation each batch's loss is divided by ``accumulate_steps`` so the applied gradient
    is the mean over the group (as Keras's ``gradient_accumulation_steps``); a group cut short by the
    end of an epoch is rescaled to the mean of the batches it holds and applied then. With
    ``"16-mixed"`` a ``GradScaler`` scales the loss and skips steps whose gradients overflow.

    Under FSDP an evaluation runner gathers the full parameters on every rank (shards of the evaluation
    data may hold different numbers of batches, so no collective may run per batch); the next training
    step shards them again.
    """

    def __init__(self, model: Any, training: bool = False) -> None:
        self.model = model
        self.settings = settings = model._settings
        device, dtype = model.device, settings.dtype
        self.autocast_args = {"device_type": device.type, "dtype": dtype} if dtype is not None else None
        self.scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
        self.accumulate = settings.accumulate
        self.pending = 0
        self.forward_module = settings.forward_module(model.module, device, training)
        self.ddp = self.forward_module if hasattr(self.forward_module, "no_sync") else None
        self.fsdp = model.module if distributed.is_sharded(model.module) else None
        if self.fsdp is not None and not training:
            distributed.gather_for_eval(self.fsdp)
            settings.gathered = True

    def train_step(self, x: Any, y: Any, sw: Any, check_first: Any = None) -> tuple[torch.Tensor, Any]:
        """Fit's one training step: forward under autocast, loss, backward; the optimizer steps (and the
        gradients are cleared) every ``accumulate_steps`` batches. ``check_first(y, y_pred)`` runs between
        the forward pass and the loss (the first batch's checks). Returns the loss and the outputs."""
        with self.sync_context():
            with self.autocast():
                y_pred = call_module(self.forward_module, x)
                if check_first is not None:
                    check_first(y, y_pred)
                loss = self.model._loss(y, y_pred, sw)
            self.backward(loss)
        return loss, y_pred

    def test_step(self, x: Any, y: Any, sw: Any, check_first: Any = None) -> tuple[torch.Tensor, Any]:
        """Forward and loss under autocast (the caller holds inference_mode)."""
        with self.autocast():
            y_pred = call_module(self.forward_module, x)
            if check_first is not None:
                check_first(y, y_pred)
            loss = self.model._loss(y, y_pred, sw)
        return loss, y_pred

    def predict_step(self, x: Any) -> Any:
        with self.autocast():
            return call_module(self.forward_module, x)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_args is None:
            return contextlib.nullcontext()
        return torch.autocast(**self.autocast_args)

    def sync_context(self) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` (FSDP's ``set_requires_gradient_sync(False)``) on the batches of an
        accumulation group that do not step (forward and backward)."""
        if self.fsdp is not None:
            if self.settings.gathered:
                distributed.reshard_for_training(self.fsdp)
                self.settings.gathered = False
            return distributed.gradient_sync(self.fsdp, self.pending + 1 >= self.accumulate)
        if self.ddp is not None and self.pending + 1 < self.accumulate:
            return self.ddp.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        if self.accumulate > 1:
            loss = loss / self.accumulate
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()
        self.pending += 1
        if self.pending == self.accumulate:
            self._apply()

    def flush(self) -> None:
        """Apply a partial group at the end of an epoch."""
        if self.pending:
            with torch.no_grad():
                factor = self.accumulate / self.pending
                if self.fsdp is not None:  # held back under no sync: reduce-scattered (averaged) now
                    distributed.reduce_held_gradients(self.fsdp)
                grads = [p.grad for p in self.model.module.parameters() if p.grad is not None]
                if self.ddp is not None:  # accumulated under no_sync: average across ranks here
                    import torch.distributed as dist

                    for g in grads:
                        dist.all_reduce(g)
                    factor /= dist.get_world_size()
                for g in grads:
                    g.mul_(factor)
            self._apply()

    def _apply(self) -> None:
        optimizer = self.model.optimizer
        optimizer.step(self.scaler)
        optimizer.zero_grad()
        self.pending = 0
