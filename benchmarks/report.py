"""The Markdown report of a benchmark run: settings, the two tables, and the issue's targets checked."""

from __future__ import annotations

import statistics
from typing import Any

TRAIN_COLUMNS = [
    "batch",
    "runner",
    "s/epoch",
    "x floor",
    "counted epochs (s)",
    "peak RSS (MiB)",
    "vs floor",
    "RSS before fit (MiB)",
    "val acc",
    "other load",
]
THROUGHPUT_COLUMNS = ["batch", "runner", "evaluate (samples/s)", "time x floor", "predict (samples/s)", "time x floor"]

LEGEND = {
    "floor": "hand-written loop: batches by `index_select` of a random permutation, sums on the device, "
    "validation under `inference_mode`",
    "epochwise": "`Model.fit(x, y, validation_data=...)`, `verbose=1` (printing to the log file)",
    "dataloader": "the floor's loop over `DataLoader(TensorDataset)`",
    "keras": "Keras 3, torch backend, `fit(..., verbose=1)`",
    "lightning": "Lightning `Trainer` defaults (progress bar, logger, checkpointing)",
    "lightning-nobar": "the same with `enable_progress_bar=False`",
    "poutyne": "poutyne `Model.fit(..., verbose=True)`",
}


def pooled_seconds(row: Any) -> list[float]:
    return [s for r in row.results for s in r.counted]


def seconds_per_epoch(row: Any) -> float | None:
    counted = pooled_seconds(row)
    return statistics.median(counted) if counted else None


def peak_rss(row: Any) -> float | None:
    return max((r.peak_rss_mib for r in row.results), default=None)


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _table(columns: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _find(rows: list[Any], runner: str, batch: int) -> Any:
    return next((r for r in rows if r.runner == runner and r.batch_size == batch and r.results), None)


def training_lines(rows: list[Any]) -> list[list[str]]:
    lines = []
    for row in rows:
        if not row.results:
            lines.append([str(row.batch_size), row.runner] + [row.missing or "failed"] + ["-"] * 7)
            continue
        floor = _find(rows, "floor", row.batch_size)
        spe, counted, peak = seconds_per_epoch(row), pooled_seconds(row), peak_rss(row)
        ratio = spe / seconds_per_epoch(floor) if floor else None
        mem = (peak / peak_rss(floor) - 1) * 100 if floor else None
        lines.append(
            [
                f"{row.batch_size:,}",
                row.runner,
                f"{spe:.3f}",
                _fmt(ratio, ".2f"),
                f"{min(counted):.3f}-{max(counted):.3f} ({len(counted)})",
                f"{peak:.0f}",
                _fmt(mem, "+.1f") + ("" if mem is None else " %"),
                f"{_median([r.rss_before_mib for r in row.results]):.0f}",
                f"{row.results[-1].val_accuracy:.4f}",
                _fmt(row.other_load, ".0%"),
            ]
        )
    return lines


def throughput_lines(rows: list[Any]) -> list[list[str]]:
    lines = []
    for row in rows:
        ev = _median([r.evaluate_sps for r in row.results])
        pr = _median([r.predict_sps for r in row.results])
        if ev is None and pr is None:
            continue
        floor = _find(rows, "floor", row.batch_size)
        f_ev = _median([r.evaluate_sps for r in floor.results]) if floor else None
        f_pr = _median([r.predict_sps for r in floor.results]) if floor else None
        lines.append(
            [
                f"{row.batch_size:,}",
                row.runner,
                _fmt(ev, ",.0f"),
                _fmt(f_ev / ev if f_ev and ev else None, ".2f"),
                _fmt(pr, ",.0f"),
                _fmt(f_pr / pr if f_pr and pr else None, ".2f"),
            ]
        )
    return lines


def targets(rows: list[Any]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each of issue 4's targets that this run can check."""
    out = []

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "**missed**")

    for batch in sorted({r.batch_size for r in rows}):
        ew, floor = _find(rows, "epochwise", batch), _find(rows, "floor", batch)
        ratio = seconds_per_epoch(ew) / seconds_per_epoch(floor) if ew and floor else None
        out.append((f"epochwise <= 1.05x the floor, batch {batch:,}", _fmt(ratio, ".3f", "-") + "x", verdict(
            None if ratio is None else ratio <= 1.05)))
        mem = peak_rss(ew) / peak_rss(floor) if ew and floor else None
        out.append((f"peak memory <= floor + 10 %, batch {batch:,}", _fmt(
            None if mem is None else (mem - 1) * 100, "+.1f", "-") + " %", verdict(None if mem is None else mem <= 1.10)))
    batch = 32 if any(r.batch_size == 32 for r in rows) else min((r.batch_size for r in rows), default=0)
    ew = _find(rows, "epochwise", batch)
    for peer, factor in (("keras", 2.0), ("lightning", 2.0), ("poutyne", 1.0)):
        other = _find(rows, peer, batch)
        speedup = seconds_per_epoch(other) / seconds_per_epoch(ew) if ew and other else None
        goal = f">= {factor:g}x faster than {peer}" if factor > 1 else f"faster than {peer}"
        out.append((f"{goal}, batch {batch:,}", _fmt(speedup, ".2f", "-") + "x", verdict(
            None if speedup is None else speedup >= factor if factor > 1 else speedup > 1.0)))
    return out


def render(
    rows: list[Any],
    *,
    command: str,
    date: str,
    minutes: float,
    machine: dict[str, str],
    versions: dict[str, str],
    settings: dict[str, Any],
) -> str:
    epochs = ", ".join(
        f"batch {b:,}: {settings['warmup']} warm-up + {c} counted" for b, c in settings["epochs"].items()
    )
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
        f"- Workload: MLP 784-300-200-100-10 (ReLU, logits), Adam(lr=0.005, eps=1e-7), sparse categorical "
        f"cross-entropy, accuracy; {settings['n_train']:,} training and {settings['n_val']:,} validation "
        "samples of synthetic MNIST-shaped data (the same in every runner), validation every epoch at "
        "the training batch size; the same initial weights everywhere.",
        f"- Epochs: {epochs}"
        + (f", {settings['rounds']} interleaved rounds pooled" if settings["rounds"] > 1 else "")
        + ". Seconds per epoch: the median of the counted epochs, each timed from the end of the "
        "previous epoch's validation to the end of its own.",
        "- Peak RSS: the runner process's high-water mark right after `fit` (imports and data included). "
        "Other load: the share of the machine's CPU that other processes used while the runner ran "
        "(above a few % the row's times are inflated).",
        "",
        "## Training",
        "",
        *_table(TRAIN_COLUMNS, training_lines(rows)),
        "",
        *[f"- **{name}**: {text}" for name, text in LEGEND.items() if any(r.runner == name for r in rows)],
    ]
    throughput = throughput_lines(rows)
    if throughput:
        lines += [
            "",
            "## evaluate and predict",
            "",
            f"On the {settings['n_train']:,} training samples at the row's batch size, the median of "
            f"{settings['eval_repeats']} calls; epochwise with its default `verbose` (progress to the log file).",
            "",
            *_table(THROUGHPUT_COLUMNS, throughput),
        ]
    lines += ["", "## Targets of issue 4", "", *_table(["target", "measured", ""], [list(t) for t in targets(rows)])]
    return "\n".join(lines) + "\n"
