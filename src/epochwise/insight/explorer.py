"""Measure before you choose: batch size against time, memory and accuracy; the largest batch; a learning rate.

``explore_batch_sizes`` trains a fresh model per batch size from the same initial weights and tabulates
what each cost and reached; ``find_max_batch_size`` finds the largest batch that fits (GPU) or stays
within a memory budget (CPU); ``find_learning_rate`` runs the learning-rate range test and puts the
model back exactly as it was. The methods are described in ``docs/batch-size.md``.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..callbacks.callback import Callback
from ..text import did_you_mean
from .lr_range import LRFinderResult, find_learning_rate
from .probe import (
    _arrays,
    _check_model,
    _free_memory,
    _PeakMemory,
    _positive,
    _sync,
    available_ram,
    find_max_batch_size,
    is_out_of_memory,
)

__all__ = [
    "BatchSizeTable",
    "LRFinderResult",
    "available_ram",
    "explore_batch_sizes",
    "find_learning_rate",
    "find_max_batch_size",
    "is_out_of_memory",
]

DEFAULT_BATCH_SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_clock = time.perf_counter  # one name to read the time through (tests replace it)


class _Measure(Callback):
    """Times the training part of each epoch (from epoch begin to validation begin).

    It has no batch hook, so fit computes no batch logs for it (no host sync per batch).
    """

    def __init__(self, memory: _PeakMemory, device: torch.device) -> None:
        super().__init__()
        self.memory, self.device = memory, device
        self.seconds: list[float] = []
        self._t0: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        _sync(self.device)
        self._t0 = _clock()

    def _stop(self) -> None:
        if self._t0 is not None:
            _sync(self.device)
            self.seconds.append(_clock() - self._t0)
            self._t0 = None

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._stop()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._stop()


class _SampledMeasure(_Measure):
    """``_Measure`` that also samples the resident memory at each training batch end, where the kernel
    keeps no high-water mark that can be reset (not Linux)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.memory.sample()


# --- the batch-size explorer -------------------------------------------------------------------------
class BatchSizeTable(list):
    """The explorer's rows (a list of dicts, one per batch size) with ways to show and save them.

    ``metric`` names the metric of the ``best_*`` columns, ``memory_kind`` says what
    ``peak_memory_mib`` measured (``"rss"``: the whole process's resident memory; ``"cuda"``: CUDA's
    allocator peak), ``device`` where it ran. ``to_dataframe()`` needs pandas.
    """

    def __init__(
        self,
        rows: Sequence[dict] = (),
        *,
        metric: str | None = None,
        memory_kind: str = "rss",
        device: str = "cpu",
    ) -> None:
        super().__init__(rows)
        self.metric, self.memory_kind, self.device = metric, memory_kind, device

    @property
    def columns(self) -> list[str]:
        return list(self[0]) if self else []

    def to_dataframe(self) -> Any:
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError(
                "to_dataframe() needs pandas: pip install pandas; the rows are plain dicts"
            ) from err
        return pd.DataFrame(list(self), columns=self.columns)

    def to_csv(self, path: str | os.PathLike) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, lineterminator="\n")
            writer.writeheader()
            for row in self:
                writer.writerow({k: "" if v is None else v for k, v in row.items()})

    def to_markdown(self) -> str:
        def cell(key: str, value: Any) -> str:
            if value is None:
                return "-"
            if isinstance(value, bool):
                return "yes" if value else ""
            if key == "samples_per_second":
                return f"{value:,.0f}"
            if isinstance(value, float):
                return f"{value:.1f}" if key.endswith("_mib") else f"{value:.4g}"
            return f"{value:,}" if isinstance(value, int) else str(value)

        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(cell(k, v) for k, v in row.items()) + " |" for row in self]
        note = (
            f"\n\n{self.device}; seconds_per_epoch times the training part of an epoch (validation excluded), "
            "averaged over the epochs after the first when there are several; peak_memory_mib: "
            + (
                "CUDA allocator peak."
                if self.memory_kind == "cuda"
                else "resident memory of the whole process."
            )
        )
        return "\n".join(lines) + note

    def __str__(self) -> str:
        return self.to_markdown()

    def plot(self, path: str | os.PathLike | None = None) -> Any:
        from .plots import plot_batch_sizes

        return plot_batch_sizes(self, path, metric=self.metric)


def _best(values: list[float], epochs: list[int], direction: str) -> tuple[float | None, int | None]:
    finite = [(v, e) for v, e in zip(values, epochs) if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    pick = min if direction == "min" else max
    value = pick(v for v, _ in finite)
    return value, next(e for v, e in finite if v == value) + 1


def _metric_of(model: Any, metric: str | None) -> tuple[str | None, str | None]:
    metrics = list(getattr(model, "compiled_metrics", []))
    if metric is None:
        chosen = next((m for m in metrics if getattr(m, "direction", None) in ("min", "max")), None)
        return (chosen.name, chosen.direction) if chosen else (None, None)
    named = {m.name: m for m in metrics}
    if metric not in named:
        raise ValueError(
            f"metric={metric!r} is not compiled into the model (its metrics: {sorted(named)})."
            + did_you_mean(metric, list(named))
        )
    direction = getattr(named[metric], "direction", None)
    if direction not in ("min", "max"):
        raise ValueError(f"metric={metric!r} does not say whether higher is better; pick a metric that does")
    return metric, direction


def explore_batch_sizes(
    build_model: Callable[[], Any],
    x: Any,
    y: Any,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    *,
    epochs: int = 5,
    validation_data: Any = None,
    validation_split: float = 0.0,
    seed: int = 0,
    metric: str | None = None,
    output_dir: str | os.PathLike | None = None,
    verbose: int = 1,
) -> BatchSizeTable:
    """Train a fresh model for each batch size, from the same initial weights, and tabulate the cost.

    ``build_model()`` returns a new compiled :class:`epochwise.Model` each call; the first one's initial
    weights are copied into every later one, and every run uses ``fit(..., seed=seed)``, so runs differ
    only in the batch size. One row per batch size: ``batch_size``, ``iterations_per_epoch``
    (``ceil(n_train / batch_size)``), ``seconds_per_epoch`` (training part only; the first epoch is a
    warm-up and left out of the mean when ``epochs > 1``), ``samples_per_second``,
    ``first_epoch_seconds``, ``peak_memory_mib``, the best validation loss and metric with their 1-based
    epochs (``best_val_loss``, ``best_val_loss_epoch``, ``best_val_accuracy``, ...; without validation
    data the training values, ``best_loss``...), and ``oom``: a run that runs out of memory is recorded,
    with ``error``, and the next batch size runs.

    Returns a :class:`BatchSizeTable`, a list of dicts (``.to_dataframe()`` for pandas). With
    ``output_dir``, writes ``batch-sizes.csv``, ``batch-sizes.md`` and ``batch-sizes.png``.

    Example::

        def build():
            model = ew.Model(make_net(), seed=0)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
        rows = ew.explore_batch_sizes(build, x, y, [32, 256, 2048], epochs=10, validation_data=(xv, yv))
    """
    who = "explore_batch_sizes"
    if not callable(build_model):
        raise TypeError(f"{who}: build_model must be a function that returns a new compiled ew.Model")
    sizes = list(batch_sizes) if not isinstance(batch_sizes, int) else [batch_sizes]
    if not sizes:
        raise ValueError(f"{who}(batch_sizes=[]): give at least one batch size, e.g. [32, 256, 2048]")
    for b in sizes:
        _positive(b, "batch_sizes", who)
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"{who}(batch_sizes={sizes}): each batch size may appear once")
    _positive(epochs, "epochs", who)
    n_train = _arrays(x, y, who).n
    if validation_split:
        n_train = math.floor(n_train * (1.0 - validation_split))
    validating = validation_data is not None or bool(validation_split)
    prefix = "val_" if validating else ""

    table: BatchSizeTable | None = None
    initial: dict[str, torch.Tensor] | None = None
    for batch_size in sizes:
        model = build_model()
        _check_model(model, f"{who}: build_model()")
        if initial is None:
            initial = {k: v.detach().to("cpu", copy=True) for k, v in model.module.state_dict().items()}
            name, direction = _metric_of(model, metric)
            table = BatchSizeTable(
                metric=name,
                memory_kind="cuda" if model.device.type == "cuda" else "rss",
                device=str(model.device),
            )
        else:
            try:
                model.module.load_state_dict(initial)
            except RuntimeError as err:
                raise ValueError(
                    f"{who}: build_model() returned a module whose weights do not match the first one's; "
                    "it must build the same architecture every call"
                ) from err
        row: dict[str, Any] = {
            "batch_size": batch_size,
            "iterations_per_epoch": math.ceil(n_train / batch_size),
        }
        memory = _PeakMemory(model.device)
        memory.start()  # says whether the peak must be sampled per batch
        measure = (_SampledMeasure if memory.needs_sampling else _Measure)(memory, model.device)
        failure, history = None, None
        try:
            history = model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epochs,
                validation_data=validation_data,
                validation_split=validation_split,
                callbacks=[measure],
                verbose=0,
                seed=seed,
            )
        except Exception as err:  # only out-of-memory is recorded; anything else is raised
            if not is_out_of_memory(err):
                raise
            failure = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'out of memory'}"
        if failure is None:
            seconds = measure.seconds[1:] if len(measure.seconds) > 1 else measure.seconds
            per_epoch = sum(seconds) / len(seconds)
            peak = memory.peak()
            logs, done = history.history, list(history.epoch)
            row.update(
                seconds_per_epoch=per_epoch,
                samples_per_second=n_train / per_epoch,
                first_epoch_seconds=measure.seconds[0],
                peak_memory_mib=None if peak is None else peak / 2**20,
            )
            for key, way in (("loss", "min"), (name, direction)):
                if key is not None:
                    values = logs.get(prefix + key, [])
                    at = done if len(done) == len(values) else list(range(len(values)))
                    row[f"best_{prefix}{key}"], row[f"best_{prefix}{key}_epoch"] = _best(values, at, way)
            row.update(oom=False, error="")
        else:
            keys = ["seconds_per_epoch", "samples_per_second", "first_epoch_seconds", "peak_memory_mib"]
            keys += [f"best_{prefix}{k}{s}" for k in ("loss", name) if k is not None for s in ("", "_epoch")]
            row.update(dict.fromkeys(keys), oom=True, error=failure)
        del model, measure, history
        if failure is not None:  # the failed run's tensors go now, before the next batch size
            _free_memory(torch.device(table.device))
        table.append(row)
        if verbose:
            print(_progress_line(row, prefix, name), flush=True)
    assert table is not None
    if verbose:
        print("\n" + table.to_markdown(), flush=True)
    if output_dir is not None:
        _save_table(table, Path(output_dir), verbose)
    return table


def _progress_line(row: dict, prefix: str, metric: str | None) -> str:
    head = f"batch {row['batch_size']:,} ({row['iterations_per_epoch']:,} iterations/epoch): "
    if row["oom"]:
        return head + f"out of memory ({row['error']})"
    text = head + f"{row['seconds_per_epoch']:.4g} s/epoch, {row['samples_per_second']:,.0f} samples/s"
    if row["peak_memory_mib"] is not None:
        text += f", peak {row['peak_memory_mib']:.1f} MiB"
    text += f", best {prefix}loss {row[f'best_{prefix}loss']:.4f} (epoch {row[f'best_{prefix}loss_epoch']})"
    if metric is not None and row.get(f"best_{prefix}{metric}") is not None:
        text += f", best {prefix}{metric} {row[f'best_{prefix}{metric}']:.4f}"
    return text


def _save_table(table: BatchSizeTable, folder: Path, verbose: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "batch-sizes.csv")
    (folder / "batch-sizes.md").write_text(table.to_markdown() + "\n", encoding="utf-8")
    saved = ["batch-sizes.csv", "batch-sizes.md"]
    try:
        table.plot(folder / "batch-sizes.png")
        saved.append("batch-sizes.png")
    except ImportError:
        pass  # matplotlib is optional; the table is saved regardless
    if verbose:
        print(f"Saved {', '.join(saved)} in {folder}", flush=True)
