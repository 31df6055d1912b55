"""Figures of a run: learning curves, the batch-size table and the learning-rate range test.

Every function builds a ``matplotlib.figure.Figure`` directly (no ``pyplot``), so it works without a
display and leaves pyplot's global state alone; in Jupyter the returned Figure shows itself. ``path``
saves it, the format chosen by the suffix (``.png``, ``.svg`` or ``.pdf``). matplotlib is an optional
dependency: ``pip install 'epochwise[plot]'``.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..engine.report import fmt_value
from ..text import did_you_mean
from .overfitting import find_overfitting

__all__ = ["plot_history", "plot_batch_sizes", "plot_lr_finder", "read_history_csv"]

_SUFFIXES = (".png", ".svg", ".pdf")
_LR_KEYS = ("learning_rate", "lr")
_BEST, _STOP, _RESTORED = "tab:green", "tab:red", "tab:purple"

Series = dict[str, tuple[list[int], list[float]]]  # key -> (1-based epochs, values)


def _figure(n_panels: int, ncols: int | None = None) -> tuple[Any, list[Any]]:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "plotting needs matplotlib: pip install 'epochwise[plot]' (or pip install matplotlib)"
        ) from err
    _show_inline_in_jupyter(Figure)
    ncols = ncols or (1 if n_panels == 1 else 2)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.5 * nrows), layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def _show_inline_in_jupyter(figure_class: type) -> None:
    """A Figure made without pyplot has no image form in IPython until ``%matplotlib inline`` or a pyplot
    import registers one; register PNG (once, only if no image form is there) so it shows as one image."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "image/png" not in formatters:
        return
    for mime in ("image/png", "image/svg+xml", "image/jpeg", "application/pdf"):
        try:
            formatters[mime].lookup_by_type(figure_class)
            return  # the user's (or the inline backend's) choice stands
        except (KeyError, LookupError):
            continue
    from IPython.core.pylabtools import print_figure

    formatters["image/png"].for_type(figure_class, lambda fig: print_figure(fig, "png"))


def _save(fig: Any, path: str | os.PathLike | None) -> None:
    if path is None:
        return
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"path={os.fspath(path)!r}: the suffix chooses the format; use one of {', '.join(_SUFFIXES)}"
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


# --- reading a run ------------------------------------------------------------------------------
def read_history_csv(path: str | os.PathLike) -> Series:
    """A CSVLogger file as ``{key: (1-based epochs, values)}``; ``NA`` and empty cells are skipped."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} does not exist; pass the file CSVLogger wrote")
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    header = text.split("\n", 1)[0]
    sep = max((",", ";", "\t", "|"), key=header.count)
    rows = list(csv.reader(text.splitlines(), delimiter=sep))
    if not rows or "epoch" not in rows[0]:
        raise ValueError(f"{path!r} has no 'epoch' column; is it a file written by CSVLogger?")
    columns = rows[0]
    at = columns.index("epoch")
    series: Series = {c: ([], []) for c in columns if c != "epoch"}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            epoch = int(row[at]) + 1
        except (ValueError, IndexError):
            raise ValueError(
                f"{path!r} line {line}: the epoch {row[at : at + 1]} is not an integer"
            ) from None
        for key, cell in zip(columns, row):
            if key == "epoch" or cell.strip() in ("", "NA", "nan"):
                continue
            try:
                value = float(cell)
            except ValueError:
                continue  # a non-numeric column: not plotted
            series[key][0].append(epoch)
            series[key][1].append(value)
    return {k: v for k, v in series.items() if v[0]}


def _aligned(values: dict[str, list[float]], epochs: list[int] | None) -> Series:
    """History lists as series. A shorter list (``validation_freq > 1``, rule H2) is placed at every
    k-th epoch when exactly one k fits its length; otherwise at its own index, with a warning."""
    n = max((len(v) for v in values.values()), default=0)
    full = [e + 1 for e in epochs] if epochs and len(epochs) == n else list(range(1, n + 1))
    out: Series = {}
    for key, vals in values.items():
        vals = [float(v) for v in vals]
        if len(vals) == n:
            out[key] = (full, vals)
            continue
        ks = [k for k in range(1, n + 1) if n // k == len(vals)]
        if len(ks) == 1:
            out[key] = ([full[k * (i + 1) - 1] for k in ks for i in range(len(vals))], vals)
        else:
            warnings.warn(
                f"{key} has {len(vals)} values for {n} epochs and its epochs cannot be told from the History "
                f"(validation_freq > 1?); it is drawn at positions 1..{len(vals)}. Plot the CSVLogger file for "
                "exact epochs.",
                UserWarning,
                stacklevel=3,
            )
            out[key] = (list(range(1, len(vals) + 1)), vals)
    return out


def _load(source: Any) -> Series:
    if isinstance(source, (str, os.PathLike)):
        return read_history_csv(source)
    if hasattr(source, "history") and isinstance(source.history, dict):  # History
        return _aligned(source.history, list(getattr(source, "epoch", None) or []))
    if hasattr(source, "columns") and hasattr(source, "to_dict"):  # a pandas DataFrame of a CSV file
        table = source.to_dict("list")
        epochs = [int(e) for e in table.pop("epoch")] if "epoch" in table else None
        series: Series = {}
        for key, vals in table.items():
            pairs = [
                (e + 1, float(v))
                for e, v in zip(epochs or range(len(vals)), vals)
                if isinstance(v, (int, float)) and math.isfinite(v)
            ]
            if pairs:
                series[key] = ([p[0] for p in pairs], [p[1] for p in pairs])
        return series
    if isinstance(source, dict):
        return _aligned(source, None)
    raise TypeError(
        f"plot_history takes a History, a dict like history.history, a pandas DataFrame or the path of a "
        f"CSVLogger file, got {type(source).__name__}"
    )


# --- learning curves ----------------------------------------------------------------------------
def _quantities(series: Series) -> list[str]:
    bases = {k[4:] if k.startswith("val_") else k for k in series} - set(_LR_KEYS)
    ordered = (["loss"] if "loss" in bases else []) + sorted(bases - {"loss"})
    for key in _LR_KEYS:
        if key in series and len(set(series[key][1])) > 1:  # the learning rate, only when it changed
            ordered.append(key)
    return ordered


def _markers(
    series: Series,
    early_stopping: Any,
    best_epoch: int | None,
    stopped_epoch: int | None,
    restored_epoch: int | None,
    monitor: str | None,
    mode: str,
) -> tuple[str, int | None, float | None, int | None, int | None]:
    """(monitor, best, best value, stopped, restored), epochs 1-based; explicit arguments win."""
    best = stop = restored = None
    value = None
    if early_stopping is not None:
        if not all(hasattr(early_stopping, a) for a in ("monitor", "best_epoch", "stopped_epoch")):
            raise TypeError(
                f"early_stopping must be the EarlyStopping callback given to fit, got {type(early_stopping).__name__}"
            )
        monitor = monitor or early_stopping.monitor
        if getattr(early_stopping, "best", None) is not None:
            best, value = early_stopping.best_epoch + 1, float(early_stopping.best)
        if getattr(early_stopping, "stopped_epoch", 0) > 0:
            stop = early_stopping.stopped_epoch + 1
        if early_stopping.restore_best_weights and getattr(early_stopping, "best_weights", None) is not None:
            restored = early_stopping.best_epoch + 1
    if monitor is None:
        monitor = "val_loss" if "val_loss" in series else "loss"
    if best_epoch is not None:
        best, value = best_epoch + 1, None
    if stopped_epoch is not None:
        stop = stopped_epoch + 1
    if restored_epoch is not None:
        restored = restored_epoch + 1
    if monitor in series and (best is None or value is None):
        epochs, values = series[monitor]
        if best is None:  # no EarlyStopping: the first lowest loss (or best metric, by mode)
            if mode not in ("min", "max"):
                if not monitor.endswith("loss"):
                    raise ValueError(
                        f"monitor={monitor!r}: pass mode='max' (higher is better) or mode='min' to mark its best epoch"
                    )
                mode = "min"
            finite = [(v if mode == "min" else -v, i) for i, v in enumerate(values) if math.isfinite(v)]
            if finite:
                best = epochs[min(finite)[1]]
        if best in epochs:
            value = series[monitor][1][epochs.index(best)]
    return monitor, best, value, stop, restored


def plot_history(
    history_or_csv: Any,
    path: str | os.PathLike | None = None,
    *,
    early_stopping: Any = None,
    best_epoch: int | None = None,
    stopped_epoch: int | None = None,
    restored_epoch: int | None = None,
    monitor: str | None = None,
    mode: str = "auto",
    title: str | None = None,
) -> Any:
    """Learning curves: one panel per quantity, training and validation on the same axes.

    Panels: ``loss``, each metric, and ``learning_rate`` when it changed (log scale). The x axis is
    the 1-based epoch of the progress bar. Vertical lines mark the best epoch (with the weights
    restored note when EarlyStopping put them back) and the early-stopping epoch; a star marks the
    best value of the monitored series, and a shaded span the overfitting found by the rule in
    ``docs/learning-curves.md``. The marks come from ``early_stopping`` (an EarlyStopping after fit),
    or from ``best_epoch`` / ``stopped_epoch`` / ``restored_epoch`` (0-based, like EarlyStopping's
    attributes); without them the best epoch is the first with the lowest ``val_loss`` (else ``loss``),
    or of ``monitor`` with ``mode="min"``/``"max"``.

    Example::

        stop = ew.callbacks.EarlyStopping(patience=5, restore_best_weights=True)
        history = model.fit(x, y, epochs=100, validation_split=0.2, callbacks=[stop])
        ew.plotting.plot_history(history, "curves.png", early_stopping=stop)
        ew.plotting.plot_history("training.csv", "curves.svg")   # a CSVLogger file
    """
    series = _load(history_or_csv)
    names = _quantities(series)
    if not names:
        raise ValueError(
            "there is nothing to plot: the history holds no logged values (did fit run any epoch?)"
        )
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if monitor is not None and monitor not in series:
        hint = did_you_mean(str(monitor), list(series))
        raise ValueError(f"monitor={monitor!r} is not in the history, which logs {sorted(series)}.{hint}")
    monitor, best, best_value, stop, restored = _markers(
        series, early_stopping, best_epoch, stopped_epoch, restored_epoch, monitor, mode
    )
    found = None
    if "loss" in series and "val_loss" in series and series["loss"][0] == series["val_loss"][0]:
        epochs0 = [e - 1 for e in series["loss"][0]]
        found = find_overfitting(
            {"loss": series["loss"][1], "val_loss": series["val_loss"][1]}, epochs=epochs0
        )
    fig, axes = _figure(len(names))
    from matplotlib.ticker import MaxNLocator

    for ax, name in zip(axes, names):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            if key in series:
                epochs, values = series[key]
                ax.plot(
                    epochs, values, style, marker="o" if len(epochs) <= 30 else None, markersize=3, label=key
                )
        if name in _LR_KEYS:
            ax.set_yscale("log")
        if best is not None:
            text = f"best epoch {best}"
            if best_value is not None:
                text += f" ({monitor} {fmt_value(best_value)})"
            if restored == best:
                text += ", weights restored"
            ax.axvline(best, color=_BEST, linestyle=":", label=text)
            if monitor in (name, f"val_{name}") and best_value is not None:
                ax.plot(
                    [best],
                    [best_value],
                    linestyle="none",
                    marker="*",
                    markersize=13,
                    color=_BEST,
                    label=f"best {monitor}",
                )
        if stop is not None:
            ax.axvline(stop, color=_STOP, linestyle="--", label=f"early stop at epoch {stop}")
        if restored is not None and restored != best:
            ax.axvline(
                restored, color=_RESTORED, linestyle="-.", label=f"weights restored from epoch {restored}"
            )
        if found is not None and name == "loss":
            ax.axvspan(
                found.since_epoch,
                found.last_epoch,
                color=_STOP,
                alpha=0.1,
                label=f"overfitting since epoch {found.since_epoch}",
            )
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


# --- the batch-size explorer and the learning-rate finder ----------------------------------------
def plot_batch_sizes(
    rows: Sequence[dict], path: str | os.PathLike | None = None, *, metric: str | None = None
) -> Any:
    """Seconds per epoch, the best validation metric and peak memory against batch size (log2 axis).

    ``rows`` is what :func:`epochwise.explore.explore_batch_sizes` returned; batch sizes that ran out
    of memory are marked with a red vertical line in every panel.
    """
    metric = metric or getattr(rows, "metric", None)
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: run explore_batch_sizes first")
    if metric is None:
        metric = next(
            (
                k[5:]
                for k in rows[0]
                if k.startswith("best_") and not k.endswith("_epoch") and "loss" not in k
            ),
            None,
        )
    metric_key = next((k for k in (f"best_val_{metric}", f"best_{metric}") if metric and k in rows[0]), None)
    loss_key = "best_val_loss" if "best_val_loss" in rows[0] else "best_loss"
    panels = [
        ("seconds_per_epoch", "seconds per epoch"),
        (metric_key or loss_key, (metric_key or loss_key)),
        ("peak_memory_mib", "peak memory (MiB)"),
    ]
    fig, axes = _figure(len(panels), ncols=len(panels))
    ok = [r for r in rows if not r.get("oom")]
    for ax, (key, label) in zip(axes, panels):
        points = [(r["batch_size"], r[key]) for r in ok if r.get(key) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o", markersize=4, label=key)
        for r in rows:
            if r.get("oom"):
                ax.axvline(
                    r["batch_size"], color=_STOP, linestyle="--", label=f"out of memory at {r['batch_size']}"
                )
        ax.set_xscale("log", base=2)
        sizes = sorted({r["batch_size"] for r in rows})
        ax.set_xticks(sizes, labels=[f"{b:,}" for b in sizes])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _save(fig, path)
    return fig


def plot_lr_finder(result: Any, path: str | os.PathLike | None = None) -> Any:
    """The range test: raw and smoothed loss against the learning rate (log axis), the suggestion marked."""
    fig, (ax,) = _figure(1)
    ax.plot(result.lrs, result.raw_losses, color="0.75", linewidth=1, label="loss (per step)")
    ax.plot(result.lrs, result.losses, color="tab:blue", label="smoothed loss")
    if result.suggestion is not None:
        at = result.lrs.index(result.suggestion)
        ax.axvline(result.suggestion, color=_BEST, linestyle=":", label=f"suggestion {result.suggestion:.2e}")
        ax.plot([result.suggestion], [result.losses[at]], linestyle="none", marker="o", color=_BEST)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("learning-rate range test")
    finite = [v for v in [*result.losses, *result.raw_losses] if math.isfinite(v)]
    start = result.losses[0] if result.losses else math.nan
    if finite and math.isfinite(start) and start > 0:  # the divergence at the end would flatten the curve
        low, high = min(finite), min(max(finite), 2 * start)
        pad = 0.05 * (high - low) if high > low else 0.05 * abs(high) + 1e-12
        ax.set_ylim(low - pad, high + pad)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)
    return fig
