"""The Markdown report of a benchmark run: settings, the tables, and the targets checked.

Every "x floor" figure is a median of paired ratios (each measurement over the floor measured next
to it), shown with its spread, never a ratio of two medians taken minutes apart.
"""

from __future__ import annotations

import statistics
from typing import Any

LEGEND = {
    "floor": "hand-written loop: batches by `index_select` of the epoch's permutation (the one epochwise "
    "draws from the same seed), sums on the device, validation under `inference_mode`",
    "epochwise": "`Model.fit(x, y, validation_data=..., seed=0)`, `verbose=1` (printing to the log file)",
    "dataloader": "the floor's loop over `DataLoader(TensorDataset)` with the floor's order (a sampler)",
    "keras": "Keras 3, torch backend, `fit(..., verbose=1)` on the arrays; Keras shuffles them itself "
    "(seeded; it takes no order)",
    "lightning": "Lightning `Trainer` defaults (progress bar, logger, checkpointing); DataLoader with the "
    "floor's order",
    "lightning-nobar": "the same with `enable_progress_bar=False`",
    "poutyne": "poutyne `fit_generator(...)`, `verbose=True`, over the DataLoader its `fit(x, y)` builds, "
    "with the floor's order",
}


# --- figures ------------------------------------------------------------------------------------
def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); the median three times for fewer than 4 values."""
    if len(values) < 4:
        m = statistics.median(values)
        return m, m, m
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def fit_ratios(pair: Any) -> list[float]:
    """Counted epochs: epochwise's epoch over the mean of the floor epochs before and after it."""
    out = []
    for i in range(pair.warmup, len(pair.fit_seconds)):
        around = pair.floor_seconds[max(i - 1, 0) : i + 1]
        out.append(pair.fit_seconds[i] / statistics.mean(around))
    return out


def call_ratios(ours: list[float], floor: list[float]) -> list[float]:
    """Each call of ours over the mean of the floor's calls just before and after it (floor first and last)."""
    return [t / statistics.mean(floor[i : i + 2]) for i, t in enumerate(ours)]


def pair_ratios(pair: Any, what: str) -> list[float]:
    if what == "fit":
        return fit_ratios(pair)
    return call_ratios(getattr(pair, f"{what}_seconds"), getattr(pair, f"floor_{what}_seconds"))


def pair_seconds(pair: Any, what: str) -> tuple[float, float]:
    """(floor, epochwise) medians of the counted measurements."""
    if what == "fit":
        return (statistics.median(pair.floor_seconds[pair.warmup :] or pair.floor_seconds),
                statistics.median(pair.fit_seconds[pair.warmup :] or pair.fit_seconds))
    return statistics.median(getattr(pair, f"floor_{what}_seconds")), statistics.median(getattr(pair, f"{what}_seconds"))


def pooled_seconds(row: Any) -> list[float]:
    return [s for r in row.results for s in r.counted]


def seconds_per_epoch(row: Any) -> float | None:
    counted = pooled_seconds(row)
    return statistics.median(counted) if counted else None


def peak_rss(row: Any) -> float | None:
    """The median over rounds of the process's high-water mark."""
    values = [r.peak_rss_mib for r in row.results]
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _table(columns: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _find(rows: list[Any], runner: str, batch: int) -> Any:
    return next((r for r in rows if r.runner == runner and r.batch_size == batch and r.results), None)


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


# --- tables -------------------------------------------------------------------------------------
PAIR_COLUMNS = ["batch", "call", "floor (s)", "epochwise (s)", "x floor (median of pairs)", "IQR", "min-max",
                "pairs", "same result"]
TRAIN_COLUMNS = ["batch", "runner", "s/epoch", "x floor (median of rounds)", "min-max", "counted epochs (s)",
                 "peak RSS (MiB)", "vs floor", "val acc", "other load"]


def pair_lines(pairs: list[Any]) -> list[list[str]]:
    lines = []
    for pair in pairs:
        for what in ("fit", "evaluate", "predict"):
            ratios = pair_ratios(pair, what)
            if not ratios:
                continue
            floor_s, ours_s = pair_seconds(pair, what)
            q1, q2, q3 = quartiles(ratios)
            if what == "fit":
                same = (f"val acc {pair.val_accuracy[-1]:.4f} / {pair.floor_val_accuracy[-1]:.4f}, "
                        f"max weight diff {pair.max_weight_diff:.1e}")
            elif what == "evaluate":
                same = "-" if pair.evaluate_loss_diff is None else f"loss diff {pair.evaluate_loss_diff:.1e}"
            else:
                same = "-"
            label = {"fit": "fit, one epoch", "evaluate": f"evaluate ({pair.n_train:,})",
                     "predict": f"predict ({pair.n_train:,})"}[what]
            lines.append([f"{pair.batch_size:,}", label, f"{floor_s:.3f}", f"{ours_s:.3f}", f"{q2:.3f}",
                          f"{q1:.3f}-{q3:.3f}", _spread(ratios), str(len(ratios)), same])
    return lines


def training_lines(rows: list[Any]) -> list[list[str]]:
    lines = []
    for row in rows:
        if not row.results:
            lines.append([f"{row.batch_size:,}", row.runner, row.missing or "failed"] + ["-"] * 7)
            continue
        floor = _find(rows, "floor", row.batch_size)
        counted, peak = pooled_seconds(row), peak_rss(row)
        ratio = statistics.median(row.ratios) if row.ratios else None
        mem = (peak / peak_rss(floor) - 1) * 100 if floor else None
        lines.append([
            f"{row.batch_size:,}",
            row.runner,
            f"{seconds_per_epoch(row):.3f}",
            _fmt(ratio, ".2f"),
            _spread(row.ratios),
            f"{min(counted):.3f}-{max(counted):.3f} ({len(counted)})",
            f"{peak:.0f}",
            _fmt(mem, "+.1f") + ("" if mem is None else " %"),
            f"{row.results[-1].val_accuracy:.4f}",
            _fmt(row.other_load, ".0%"),
        ])
    return lines


def targets(rows: list[Any], pairs: list[Any]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict): issue 15's targets from the in-process pairs and the rounds' memory,
    and issue 4's peer targets from the rounds."""
    out = []

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "**missed**")

    def limit_for(what: str, batch: int) -> float:
        return 1.10 if what == "evaluate" and batch <= 32 else 1.05

    batches = sorted({r.batch_size for r in rows} | {p.batch_size for p in pairs})
    for batch in batches:
        pair = next((p for p in pairs if p.batch_size == batch), None)
        for what in ("fit", "evaluate", "predict"):
            limit = limit_for(what, batch)
            ratios = pair_ratios(pair, what) if pair else []
            median = statistics.median(ratios) if ratios else None
            out.append((f"{what} <= {limit:.2f}x the floor, batch {batch:,}", _fmt(median, ".3f") + "x",
                        verdict(None if median is None else median <= limit)))
        ew, floor = _find(rows, "epochwise", batch), _find(rows, "floor", batch)
        mem = peak_rss(ew) / peak_rss(floor) if ew and floor else None
        out.append((f"peak RSS <= floor + 10 %, batch {batch:,}", _fmt(None if mem is None else (mem - 1) * 100, "+.1f")
                    + " %", verdict(None if mem is None else mem <= 1.10)))
    batch = 32 if any(r.batch_size == 32 for r in rows) else min((r.batch_size for r in rows), default=0)
    ew = _find(rows, "epochwise", batch)
    for peer, factor in (("keras", 2.0), ("lightning", 2.0), ("poutyne", 1.0)):
        other = _find(rows, peer, batch)
        speedup = None
        if ew and other and ew.ratios and other.ratios:  # both over their own floor runs, same rounds
            speedup = statistics.median(other.ratios) / statistics.median(ew.ratios)
        goal = f"issue 4: >= {factor:g}x faster than {peer}" if factor > 1 else f"issue 4: faster than {peer}"
        out.append((f"{goal}, batch {batch:,}", _fmt(speedup, ".2f") + "x", verdict(
            None if speedup is None else speedup >= factor if factor > 1 else speedup > 1.0)))
    return out


def _flushed(rows: list[Any], pairs: list[Any]) -> str:
    flags = [r.flush_denormal for row in rows for r in row.results] + [p.flush_denormal for p in pairs]
    if flags and all(flags):
        return f"every runner process ({len(flags)} of {len(flags)})"
    return f"{sum(bool(f) for f in flags)} of {len(flags)} runner processes (the others' CPU does not support it)"


def render(rows: list[Any], pairs: list[Any], *, command: str, date: str, minutes: float,
           machine: dict[str, str], versions: dict[str, str], settings: dict[str, Any]) -> str:
    epochs = ", ".join(f"batch {b:,}: {settings['warmup']} warm-up + {c} counted" for b, c in settings["epochs"].items())
    pair_epochs = ", ".join(
        f"batch {b:,}: {settings['warmup']} warm-up + {c} counted epoch pairs, {settings['eval_pairs'][b]} "
        "evaluate and predict pairs" for b, c in settings["pair_epochs"].items())
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {date}; the whole run took {minutes:.1f} min. "
        "How to read and rerun it: [README.md](README.md).",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['os']}"
        + (f", GPU {machine['gpu']}" if "gpu" in machine else "")
        + f"; device `{settings['device']}`, {settings['threads']} torch threads in every runner.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "- Workload: MLP 784-300-200-100-10 (ReLU, logits), Adam(lr=0.005, eps=1e-7), sparse categorical "
        f"cross-entropy, accuracy; {settings['n_train']:,} training and {settings['n_val']:,} validation "
        "samples of synthetic MNIST-shaped data (the same in every runner), validation every epoch at "
        "the training batch size; the same initial weights everywhere.",
        "- Harness settings, the same in every runner: `torch.set_flush_denormal(True)` before anything else "
        "(denormal Adam state of always-zero gradients otherwise slows some CPUs by tens of percent, by an "
        "amount that depends on the data order), and every runner whose library takes a data order gets the "
        "floor's (the permutation `fit(seed=0)` draws each epoch). The flush took effect in "
        + _flushed(rows, pairs) + ".",
        "",
        "## epochwise against the floor, in one process",
        "",
        "One process alternates an epochwise epoch and a floor epoch (the floor's runs inside epochwise's "
        "`on_epoch_end`, on its own copy of the same initial model, with the same batches), then "
        "`evaluate` and `predict` calls with the floor's: floor, epochwise, floor, ... Each epochwise "
        "measurement is divided by the mean of the floor measurements just before and after it; the "
        f"figure is the median of those ratios. {pair_epochs}.",
        "",
        *_table(PAIR_COLUMNS, pair_lines(pairs)),
    ]
    for batch, error in settings.get("pair_errors", {}).items():
        lines.append(f"\nThe in-process run at batch {batch:,} failed: {error}")
    lines += [
        "",
        "## Training, every runner in its own process",
        "",
        f"{settings['rounds']} interleaved rounds; in each, every runner runs once in a fresh process "
        "(output to a log file), with a floor process right before or after it (floor, A, B, floor, "
        "C, D, floor, ...; the order reverses every other round). A runner's \"x floor\" is the median over "
        "rounds of its seconds per epoch over that floor run's; min-max is their spread. "
        f"Epochs per process: {epochs}; s/epoch is the median of all counted epochs. Peak RSS: the "
        "process's high-water mark after `fit` (imports and data included), median over rounds. "
        "Other load: the largest share of the machine's CPU that other processes took during one of the "
        "row's runs.",
        "",
        *_table(TRAIN_COLUMNS, training_lines(rows)),
        "",
        *[f"- **{name}**: {text}" for name, text in LEGEND.items() if any(r.runner == name for r in rows)],
        "",
        "## Targets",
        "",
        *_table(["target", "measured", ""], [list(t) for t in targets(rows, pairs)]),
    ]
    return "\n".join(lines) + "\n"
