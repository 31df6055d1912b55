"""The learning-rate range test (``docs/batch-size.md``): exponentially rising rate, smoothed loss, exact restore."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import data as _data
from ..engine.step import StepRunner
from .probe import _any_rank, _arrays, _check_model, _positive, _Snapshot, _update

__all__ = ["LRFinderResult", "find_learning_rate"]


@dataclass
class LRFinderResult:
    """The range test's curve: ``lrs`` and ``losses`` (smoothed), ``raw_losses``, and ``suggestion``."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float | None
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)

    def plot(self, path: str | os.PathLike | None = None) -> Any:
        """The curve with the suggestion marked, as a matplotlib Figure (saved to ``path`` if given)."""
        from .plots import plot_lr_finder

        return plot_lr_finder(self, path)


def _suggest(lrs: list[float], losses: list[float]) -> int | None:
    """Index of the steepest descent of the smoothed loss against log10(lr), before its minimum."""
    finite = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    lrs, losses = lrs[:finite], losses[:finite]  # a diverged last step is not part of the curve
    if len(lrs) < 5:
        return None
    slope = np.gradient(np.asarray(losses), np.log10(np.asarray(lrs)))
    skip = max(1, len(lrs) // 10)  # the smoothing is still warming up
    end = int(np.argmin(losses)) + 1
    if end - skip < 2:
        return None
    return skip + int(np.argmin(slope[skip:end]))


def find_learning_rate(
    model: Any,
    x: Any,
    y: Any,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 200,
    batch_size: int = 32,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    seed: int = 0,
    verbose: int = 1,
) -> LRFinderResult:
    """The learning-rate range test (Smith 2017, as in fastai): train with an exponentially rising rate.

    Step ``i`` of ``num_steps`` uses ``start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``; the
    loss is smoothed with an exponential moving average (``smoothing``, bias-corrected) and the test
    stops once the smoothed loss exceeds ``diverge_factor`` times its minimum, or is not finite. The
    suggestion is the rate where the smoothed loss falls fastest against log10(lr), looking only
    before its minimum and after the first 10% of steps. Each step is one optimizer update through fit's
    own step: with ``accumulate_steps=k`` it trains ``k`` batches and records their mean loss; the
    model's precision, gradient clipping, DDP wrapper and ``torch.compile`` apply as in fit; a step that
    ``precision="16-mixed"``'s grad scaler skips applies no rate and is not a point of the curve. Afterwards
    the module's weights and gradients, the optimizer's state (and its learning rate or schedule) and
    torch's RNG state are put back exactly.

    Example::

        result = ew.find_learning_rate(model, x_train, y_train)
        result.plot("lr-range.png")
        model.optimizer.learning_rate = result.suggestion
    """
    who = "find_learning_rate"
    _check_model(model, who)
    data = _arrays(x, y, who)
    _positive(num_steps, "num_steps", who)
    _positive(batch_size, "batch_size", who)
    if num_steps < 2:
        raise ValueError(
            f"{who}(num_steps={num_steps}): the range test needs at least 2 steps (a few hundred is usual)"
        )
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise ValueError(f"{who}: need 0 < start_lr < end_lr, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"{who}(smoothing={smoothing!r}): smoothing must be in [0, 1), e.g. 0.98")
    if not diverge_factor > 1:
        raise ValueError(f"{who}(diverge_factor={diverge_factor!r}): must be > 1, e.g. 4")
    ratio = end_lr / start_lr
    schedule = [start_lr * ratio ** (i / (num_steps - 1)) for i in range(num_steps)]
    runner = StepRunner(model, training=True)  # fit's step: precision, accumulation, DDP, torch.compile
    snapshot = _Snapshot.take(model, runner)
    optimizer = model.optimizer
    first = optimizer.iterations
    generator = torch.Generator().manual_seed(seed)
    batches = _data.ArrayBatches(data, batch_size, shuffle=True, generator=generator, device=model.device)
    lrs: list[float] = []
    raw: list[float] = []
    smooth: list[float] = []
    stopped, average = False, 0.0
    try:

        def rate(step: int) -> float:  # the optimizer's schedule while the test runs
            return schedule[min(step - first, num_steps - 1)]

        optimizer.learning_rate = rate

        def endless() -> Iterator[tuple[Any, Any, Any]]:  # reshuffled at the end of each pass
            while True:
                yield from batches

        model.module.train()
        stream = endless()
        attempts = 0
        while len(lrs) < num_steps and attempts < 2 * num_steps + 32:
            attempts += 1
            applied = optimizer.iterations
            value = float(_update(runner, stream))
            if optimizer.iterations == applied:
                continue  # a step GradScaler skipped (fp16 overflow) applied no rate: it is not a point
            i = len(lrs)
            average = smoothing * average + (1 - smoothing) * value
            smoothed = average / (1 - smoothing ** (i + 1))
            lrs.append(rate(applied))
            raw.append(value)
            smooth.append(smoothed)
            diverged = not math.isfinite(smoothed) or smoothed > diverge_factor * min(smooth)
            if _any_rank(diverged, model.device):  # under torchrun every rank stops together
                stopped = True
                break
    finally:
        snapshot.restore(model, runner)
    notes = []
    if attempts > len(lrs):
        notes.append(f"{attempts - len(lrs)} step(s) skipped by the fp16 grad scaler (overflow) are not points")
    if not lrs:
        raise RuntimeError(f"{who}: every one of {attempts} steps overflowed in float16 and was skipped; "
                           "use precision='bf16-mixed' or '32', or a smaller start_lr")
    if stopped:
        notes.append(f"stopped at lr {lrs[-1]:.3g}: the smoothed loss diverged")
    at = _suggest(lrs, smooth)
    result = LRFinderResult(lrs, smooth, raw, None if at is None else lrs[at], stopped, notes)
    if at is None:
        result.notes.append("no suggestion: too few steps before the loss stopped falling; widen the range")
    if verbose:
        found = f"suggested learning rate {result.suggestion:.3g}" if result.suggestion else result.notes[-1]
        print(f"{who}: {len(lrs)} steps from {lrs[0]:.3g} to {lrs[-1]:.3g}; {found}", flush=True)
    return result
