"""ProgbarLogger: Keras's progress output, drawn with rich on a terminal or in Jupyter, else plain lines."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Mapping
from typing import Any

from ..engine import report as _report
from .callback import Callback

__all__ = ["ProgbarLogger"]


class ProgbarLogger(Callback):
    """Prints progress for fit, evaluate and predict (rules B1-B6).

    ``verbose=1`` on a terminal draws a live bar, redrawn at most ``1/refresh_interval`` times a
    second; in a Jupyter kernel the same bar is one display output updated in place, which the saved
    notebook keeps as the finished line (text and HTML, no control characters). ``verbose=2``, or
    output that is neither (a log file, CI), prints one plain line per epoch. Validation time is kept
    out of the training time and the per-step time (§14, B3). Added automatically when
    ``verbose != 0``; takes no arguments (B1).

    Example line: ``11/11 ━━━━━━━━━━━━━━━━━━━━ 2s 185ms/step - accuracy: 0.9650 - loss: 0.1213``
    """

    lazy_batch_logs = True  # reads the batch logs only when it uses them


    def __init__(self) -> None:
        super().__init__()
        self.refresh_interval = 0.1
        self._in_fit = False
        self._bar: _Bar | None = None

    def _level(self) -> int:
        return _report.verbosity(self.params.get("verbose", 1))

    def _new_bar(self, *, metrics: bool = True) -> None:
        level = self._level()
        if level:
            style = "plain"
            if level == 1:
                style = "notebook" if _in_notebook() else "terminal" if _is_interactive() else "plain"
            self._bar = _Bar(
                self.params.get("steps"), style=style, interval=self.refresh_interval, metrics=metrics
            )

    # fit
    def on_train_begin(self, logs: dict | None = None) -> None:
        self._in_fit = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self._in_fit = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        epochs = self.params.get("epochs", 1)
        if self._level() and epochs > 1:  # B2
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        self._new_bar()

    def on_train_batch_end(self, batch: int, logs: Mapping | None = None) -> None:
        if self._bar is not None:
            self._bar.step(batch + 1, logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.finish(logs or {})
            self._bar = None

    # evaluate (and fit's validation, which draws nothing of its own: L7)
    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._in_fit:
            if self._bar is not None:
                self._bar.pause()
        else:
            self._new_bar()

    def on_test_batch_end(self, batch: int, logs: Mapping | None = None) -> None:
        if not self._in_fit and self._bar is not None:
            self._bar.step(batch + 1, logs)

    def on_test_end(self, logs: dict | None = None) -> None:
        if not self._in_fit and self._bar is not None:
            self._bar.finish(logs or {})
            self._bar = None

    # predict
    def on_predict_begin(self, logs: dict | None = None) -> None:
        self._new_bar(metrics=False)

    def on_predict_batch_end(self, batch: int, logs: Any = None) -> None:
        if self._bar is not None:
            self._bar.step(batch + 1, None)

    def on_predict_end(self, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.finish({})
            self._bar = None


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (notebook, JupyterLab, VS Code, Colab): an IPython shell with a kernel."""
    ipython = sys.modules.get("IPython")  # never imported here: a script without IPython pays nothing
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def _is_interactive() -> bool:
    """True when stdout is a terminal that rich can redraw in place."""
    try:
        from rich.console import Console

        return Console(file=sys.stdout).is_terminal
    except Exception:  # pragma: no cover - a stdout without the usual attributes
        return False


_NOTEBOOK_HTML = (  # rich's own Jupyter format: a <pre> in the notebook's monospace font
    "<pre style=\"white-space:pre;overflow-x:auto;line-height:normal;font-family:Menlo,'DejaVu Sans Mono',"
    "consolas,'Courier New',monospace\">{code}</pre>"
)


class _Bar:
    """One epoch's (or one evaluate / predict call's) progress line."""

    def __init__(self, target: int | None, *, style: str, interval: float, metrics: bool) -> None:
        self.target, self.style, self.interval, self.metrics = target, style, interval, metrics
        self.live = style != "plain"
        self.start = time.perf_counter()
        self.first_step_end: float | None = None
        self.work_end: float | None = None
        self.seen = 0
        self.last_draw = 0.0
        self.logs: dict = {}
        self._progress: Any = None
        self._task: Any = None
        self._handle: Any = None  # the notebook's display handle

    def step(self, current: int, logs: Mapping | None) -> None:
        now = time.perf_counter()
        self.seen = current
        if self.first_step_end is None:
            self.first_step_end = now
        if self.live and now - self.last_draw >= self.interval:
            self.last_draw = now
            if self.metrics and logs is not None:
                self.logs = dict(logs)  # batch logs are computed only now (BatchLogs)
            self._draw(final=False, now=now)

    def pause(self) -> None:
        """Training batches are over; what follows (validation) is not training time."""
        self.work_end = time.perf_counter()

    def finish(self, logs: dict) -> None:
        now = self.work_end or time.perf_counter()
        if self.target is None:
            self.target = self.seen
        if self.metrics:
            self.logs = logs
        self._draw(final=True, now=now)

    def _timing(self, now: float, final: bool) -> tuple[str, str]:
        elapsed = now - self.start
        if self.seen > 1 and self.first_step_end is not None:
            per_step = (now - self.first_step_end) / (self.seen - 1)
        else:
            per_step = elapsed / max(self.seen, 1)
        shown = round(elapsed) if final else per_step * (self.target - self.seen) if self.target else 0.0
        return _report.fmt_duration(shown), _report.fmt_step_time(per_step)

    def _count(self) -> str:
        if self.target is None:
            return f"{self.seen:7d}/Unknown"
        width = len(str(self.target))
        return f"{self.seen:>{width}}/{self.target}"

    def _draw(self, *, final: bool, now: float) -> None:
        shown, per_step = self._timing(now, final)
        metrics = _report.fmt_logs(self.logs) if self.metrics else ""
        if not self.live:
            if final:  # B4's plain line, also for verbose=1 when stdout is not a terminal (§14, B3)
                print(f"{self._count()} - {shown} - {per_step}{metrics}", flush=True)
            return
        info = f"{shown} {per_step}{metrics}"
        if self._progress is None:
            self._open()
        self._progress.update(
            self._task, completed=self.seen, total=self.target, count=self._count(), info=info
        )
        if self.style == "notebook":
            self._show_in_notebook()
            return
        self._progress.refresh()
        if final:
            self._progress.stop()

    def _show_in_notebook(self) -> None:
        """Render the bar off screen, as text and HTML, into one display output updated in place."""
        from IPython.display import display

        console = self._progress.console
        console.print(self._progress.get_renderable())
        html = console.export_html(inline_styles=True, code_format=_NOTEBOOK_HTML, clear=False)
        text = "\n".join(line.rstrip() for line in console.export_text(clear=True).splitlines())
        bundle = {"text/plain": text, "text/html": html}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def _open(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn
        from rich.table import Column

        if self.style == "notebook":  # recorded, never written: the notebook gets it through display()
            console = Console(file=io.StringIO(), record=True, width=1000, force_terminal=True,
                              color_system="truecolor", force_jupyter=False,
                              force_interactive=False)  # fmt: skip
        else:
            console = Console(file=sys.stdout)
        self._progress = (
            Progress(  # the count and the bar keep their width; the metrics wrap on a narrow terminal
                TextColumn("[bold]{task.fields[count]}", table_column=Column(no_wrap=True)),
                BarColumn(
                    bar_width=20,
                    complete_style="green",
                    finished_style="green",
                    style="bright_black",
                    table_column=Column(width=20, no_wrap=True),
                ),
                TextColumn("{task.fields[info]}", table_column=Column(overflow="fold")),
                console=console,
                auto_refresh=False,
                transient=False,
            )
        )
        self._task = self._progress.add_task("", total=self.target, count="", info="")
        if self.style == "terminal":
            self._progress.start()
