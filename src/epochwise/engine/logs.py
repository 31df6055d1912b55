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
    """Running means of the loss (LO5) and the compiled metrics (ME3), kept on the device.

    With several outputs each metric reads its own output's targets, predictions and sample weights,
    and each output's ``{output}_loss`` mean is updated by the loss itself (``losses.outputs``).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        if distributed.is_distributed():
            require_declared_state(self.metrics)  # before the first step, not at the first epoch's end
        self.total: torch.Tensor | None = None
        self.count = 0
        self.steps = 0
        self.track_nonfinite = False
        self._clear_nonfinite(None, 0)

    @property
    def metrics(self) -> list[Any]:
        # read from the model each time: one loss for several outputs is bound per output at the first batch
        return list(self.model.compiled_metrics)

    def _routes(self) -> list[tuple[Any, str | None, bool]]:
        """(metric, the output it reads or None for all, weighted) for every metric the tracker updates."""
        model = self.model
        # built again only when the model's loss or metric lists change (per batch, this was a fifth of the
        # Python time of an evaluate step); the key holds the objects, so a reused id cannot match
        key = (getattr(model, "_loss", None), getattr(model, "_metric_outputs", None), model._metrics,
               model._weighted_metrics, len(model._metrics), len(model._weighted_metrics))
        cached = vars(self).get("_routes_cache")
        if cached is not None and cached[0] == key:  # identity first, element by element
            return cached[1]
        outputs = list(getattr(model, "_metric_outputs", None) or [])
        own = {id(m) for m in getattr(getattr(model, "_loss", None), "trackers", {}).values()}
        n_plain = len(model._metrics)
        routes = []
        for i, m in enumerate(model.compiled_metrics):
            if id(m) not in own:
                routes.append((m, outputs[i] if i < len(outputs) else None, i >= n_plain))
        self._routes_cache = (key, routes)
        return routes

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
        value = loss.detach() if loss.requires_grad else loss  # no dispatcher call where none is needed
        value = (value if value.dtype == torch.float32 else value.float()) * n
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
        pred = y_pred.detach() if isinstance(y_pred, torch.Tensor) and y_pred.requires_grad else y_pred
        loss_fn = self.model._loss
        for m, output, weighted in self._routes():
            if output is None:
                m.update_state(y, pred, sw if weighted else None)
                continue
            target, p = loss_fn.part(y, output), loss_fn.part(pred, output)
            if target is not None:  # an output without targets (a dict y that leaves it out) has no metrics
                p = p.detach() if isinstance(p, torch.Tensor) else p
                m.update_state(target, p, loss_fn.part(sw, output) if weighted else None)

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
