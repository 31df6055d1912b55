"""Running logs: the means of the loss and the compiled metrics over an epoch, kept on the device, and
their exact reduction over processes under torchrun."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .. import distributed
from ..metrics.base import require_declared_state

_CHUNK = 1024  # per-batch loss values stacked into one tensor every this many steps


class Tracker:
    """Running means of the loss (LO5) and the compiled metrics (ME3), kept on the device."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.metrics = list(model.compiled_metrics)
        self.n_plain = len(model._metrics)
        if distributed.is_distributed():
            require_declared_state(self.metrics)  # before the first step, not at the first epoch's end
        self.total: torch.Tensor | None = None
        self.count = 0
        self.steps = 0
        self.track_nonfinite = False
        self._clear_nonfinite(None, 0)

    def _clear_nonfinite(self, first_bad: int | None, offset: int) -> None:
        # The per-batch loss values of this epoch, kept (in chunks) only to name the first non-finite batch
        # when the epoch's loss is not finite: no work and no host sync per step.
        self.first_bad, self._offset = first_bad, offset
        self._values: list[torch.Tensor] = []
        self._chunks: list[torch.Tensor] = []

    def reset(self) -> None:
        self.total, self.count, self.steps = None, 0, 0
        self._clear_nonfinite(None, 0)
        for m in self.metrics:
            m.reset_state()

    def update(self, loss: torch.Tensor, y: Any, y_pred: Any, sw: torch.Tensor | None, n: int) -> None:
        value = loss.detach().float() * n
        if self.track_nonfinite and self.first_bad is None:
            self._values.append(value)
            if len(self._values) == _CHUNK:
                self._chunks.append(torch.stack(self._values))
                self._values = []
        self.total = value if self.total is None else self.total + value
        self.count += n
        self.steps += 1
        if y is None:
            return
        pred = y_pred.detach() if isinstance(y_pred, torch.Tensor) else y_pred
        for i, m in enumerate(self.metrics):
            m.update_state(y, pred, None if i < self.n_plain else sw)

    def logs(self) -> dict[str, float]:
        """Sorted float logs (G2): one host sync for all values; under torchrun, exact over all ranks
        (sums and counts reduced, not averages of averages)."""
        if distributed.is_distributed():
            return _reduced_logs(self)
        return self.local_logs()

    def local_logs(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        names = ["loss"] + [m.name for m in self.metrics]
        values = [self.total / self.count] + [m.result().detach().float().reshape(()) for m in self.metrics]
        device = values[0].device
        floats = torch.stack([v.to(device) for v in values]).tolist()
        return dict(sorted(zip(names, floats)))

    def first_nonfinite_batch(self) -> int | None:
        """The epoch's first batch whose loss was NaN or inf (one host sync; called when the epoch's loss
        is not finite, and when a backup is taken)."""
        if self.first_bad is not None:
            return self.first_bad
        parts = self._chunks + ([torch.stack(self._values)] if self._values else [])
        if not parts:
            return None
        bad = (~torch.isfinite(torch.cat(parts))).nonzero()
        return None if bad.numel() == 0 else self._offset + int(bad[0, 0])

    def state_dict(self) -> dict[str, Any]:
        return {
            "total": None if self.total is None else self.total.detach().to("cpu").clone(),
            "count": self.count,
            "steps": self.steps,
            "first_bad": self.first_nonfinite_batch(),
            "metrics": [m.state_dict() for m in self.metrics],
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.total = None if state["total"] is None else state["total"].to(device)
        self.count, self.steps = int(state["count"]), int(state["steps"])
        self._clear_nonfinite(None if state["first_bad"] is None else int(state["first_bad"]), self.steps)
        for m, ms in zip(self.metrics, state["metrics"]):
            m.load_state_dict(ms, device)


def _reduced_logs(tracker: Tracker) -> dict[str, float]:
    """The loss sum and count added across ranks, and each metric's declared state combined by its
    reduction (``Metric.sync``), then every value computed once, on all the data."""
    device = tracker.model.device
    total = tracker.total if tracker.total is not None else torch.zeros((), device=device)
    loss_sum, count = distributed.sum_numbers([total.detach().float(), float(tracker.count)], device)
    if float(count) == 0:  # the same on every rank: no rank enters the metrics' collectives
        return {}
    names = ["loss"] + [m.name for m in tracker.metrics]
    with contextlib.ExitStack() as synced:
        for m in tracker.metrics:
            synced.enter_context(m.sync(device))
        values = [loss_sum / count] + [m.result().detach().float().reshape(()) for m in tracker.metrics]
        floats = torch.stack([v.to(device=device, dtype=torch.float64) for v in values]).tolist()
    return dict(sorted(zip(names, floats)))
