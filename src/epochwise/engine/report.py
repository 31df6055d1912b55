"""Text a person reads: the run plan before training, and number formats shared by the logger."""

from __future__ import annotations

import math
from typing import Any

from ..insight.overfitting import overfitting_note
from ..text import format_value as fmt_value
from ..text import plural


def verbosity(verbose: Any) -> int:
    """F5: "auto" is 1; 0 silent, 1 progress bar, 2 one line per epoch."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def fmt_step_time(seconds: float) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def fmt_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def fmt_logs(logs: dict[str, float]) -> str:
    return "".join(f" - {k}: {fmt_value(v)}" for k, v in logs.items() if isinstance(v, (int, float)))


def run_plan(
    *,
    n_train: int | None,
    n_val: int | None,
    batch_size: int | None,
    steps: int | None,
    epochs: int,
    initial_epoch: int,
    device: Any,
    loss: str,
    steps_given: bool,
    inputs: list[str] | None = None,
) -> str:
    """Batch, iteration and epoch for this run, in one or two lines.

    ``Train on 55,000 samples, validate on 5,000 | batch 5,000 -> 11 iterations/epoch | 100 epochs ->
    1,100 iterations | cpu | loss sparse_categorical_crossentropy (from logits)``

    ``inputs``: a line each on how the data is read (``x: memory-mapped (3.1 GB), read per batch``).
    """
    what = (
        f"Train on {n_train:,} samples" if n_train is not None else "Train on batches from the given source"
    )
    if n_val is not None:
        what += f", validate on {n_val:,}"
    parts = [what]
    from .. import distributed

    world = distributed.world_size()
    if batch_size and world > 1:  # batch_size is per process under torchrun
        parts.append(f"{world} processes x batch {batch_size:,} = global batch {world * batch_size:,}")
    if steps is not None:
        per = f"{plural(steps, 'iteration')}/epoch"
        per = f"batch {batch_size:,} -> {per}" if batch_size else per
    else:
        per = (
            f"batch {batch_size:,} -> iterations/epoch unknown until the first epoch ends"
            if batch_size
            else ("iterations/epoch unknown until the first epoch ends")
        )
    parts.append(per)
    n_epochs = max(epochs - initial_epoch, 0)
    span = plural(n_epochs, "epoch") if initial_epoch == 0 else f"epochs {initial_epoch + 1}-{epochs} ({plural(n_epochs, 'epoch')})"
    parts.append(f"{span} -> {plural(n_epochs * steps, 'iteration')}" if steps is not None else span)
    parts.append(str(device))
    parts.append(loss)
    lines = [" | ".join(parts)] + [f"  {line}" for line in inputs or []]
    if world > 1 and n_train is not None:
        per = math.ceil(n_train / world)
        lines.append(f"  each process trains on {per:,} of the {n_train:,} samples per epoch (the order is padded "
                     f"to {per * world:,} so every process runs the same number of steps)")
    elif n_train is not None and batch_size and not steps_given:
        full, rest = divmod(n_train, batch_size)
        if rest:
            lines.append(
                f"  {n_train:,} = {full:,} x {batch_size:,} + {rest:,}: the last batch of each epoch holds "
                f"{rest:,} samples and counts at that size"
            )
    if steps_given and n_train is not None and batch_size and steps is not None:
        available = math.ceil(n_train / batch_size)
        if steps > available:
            lines.append(
                f"  steps_per_epoch={steps} is more than the {available} batches the data holds: "
                "each epoch stops when the data runs out"
            )
        elif steps < available:
            lines.append(
                f"  steps_per_epoch={steps} of {available} batches: an epoch does not see all the data; "
                "the next epoch continues where the last one stopped"
            )
    return "\n".join(lines)


def run_notes(state: Any, history: Any, *, planned: int | None = None, stopped: bool = False) -> list[str]:
    """End-of-fit sentences the engine itself owes: NaN, interruption, an early stop's iteration count,
    overfitting. ``planned`` is the plan's iteration count; ``stopped``: a callback stopped training."""
    notes = []
    if stopped and not state.interrupted and planned is not None and state.batches_run < planned:
        notes.append(f"{plural(state.batches_run, 'iteration')} of the {planned:,} planned ran")
    if state.nonfinite is not None:
        epoch, batch = state.nonfinite
        notes.append(f"the loss became NaN or inf at batch {batch + 1} of epoch {epoch + 1} "
                     "(add TerminateOnNaN() to stop there)")
    if state.interrupted:
        notes.append(f"interrupted by signal {state.interrupted} after batch {state.next_batch} of epoch "
                     f"{state.epoch + 1}; on_train_end ran")
    note = overfitting_note(history.history, epochs=history.epoch) if history is not None else None
    if note:
        notes.append(note)
    return notes
