"""CSVLogger: one CSV row of epoch logs per epoch (CSV1-CSV5, with the columns fixed up front)."""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import distributed
from .callback import Callback

__all__ = ["CSVLogger"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _cell(value: Any) -> str:
    """CSV4: ``NA`` for a missing value, floats in full precision, iterables as ``[a, b]``."""
    if value is None:
        return "NA"
    if isinstance(value, str):
        return _CONTROL.sub(" ", value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # NumPy / torch scalars
        return _cell(value.item())
    if isinstance(value, Iterable):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return _CONTROL.sub(" ", str(value))


class CSVLogger(Callback):
    """Write each epoch's logs as a row of ``filename`` (CSV1-CSV5).

    Columns are ``epoch`` (0-based, as in Keras and History) and then, sorted, every key fit announces
    (``model.expected_log_keys``) together with the first epoch's keys: ``val_*`` columns appear only
    when fit validates. A value missing from an epoch is written as ``NA``. The file is flushed after
    every row and closed when training ends. With ``append=True`` rows are added to an existing file,
    and the header is written only if that file is empty.

    Example::

        model.fit(x, y, epochs=10, validation_split=0.2, callbacks=[ew.callbacks.CSVLogger("training.csv")])
        pandas.read_csv("training.csv")
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.filename = os.fspath(filename)
        if not isinstance(separator, str) or len(separator) != 1 or separator in '"\r\n':
            raise ValueError(
                f"CSVLogger(separator={separator!r}): separator must be one character, e.g. ',' or ';'"
            )
        self.sep = separator
        self.append = bool(append)
        self.columns: list[str] | None = None
        self.rows_written = 0
        self.file_position = 0
        self._file: Any = None
        self._writer: Any = None
        self._write_header = True
        self._existing_header: str | None = None
        self._expected: list[str] = []
        self._late: set[str] = set()
        self._resume_pending = False

    def state_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows_written": self.rows_written,
            "file_position": self.file_position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next fit truncates the file to that point and continues it."""
        super().load_state_dict(state)
        self._resume_pending = True

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not distributed.is_main_process():  # under torchrun only rank 0 writes
            return
        self._close()  # a previous fit that raised (L3) may have left the file open
        if os.path.isdir(self.filename):
            raise IsADirectoryError(
                f"CSVLogger: {self.filename!r} is a directory; give a file name such as 'log.csv'"
            )
        parent = os.path.dirname(self.filename)
        if parent:
            os.makedirs(parent, exist_ok=True)
        exists = os.path.exists(self.filename)
        self._existing_header, self._late = None, set()
        if self._resume_pending and exists:  # continue a resumed run: drop rows written after the checkpoint
            self._file = open(self.filename, "r+", newline="", encoding="utf-8")
            self._file.seek(self.file_position)
            self._file.truncate()
            self._write_header = self.columns is None
        else:
            if self.append and exists:  # CSV2
                with open(self.filename, encoding="utf-8") as f:
                    self._existing_header = f.readline().rstrip("\r\n") or None
            self._write_header = self._existing_header is None
            self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
            self.columns, self.rows_written = None, 0
            self.file_position = self._file.tell()
        self._resume_pending = False
        self._writer = csv.writer(self._file, delimiter=self.sep, lineterminator="\n")
        self._expected = list(getattr(self.model, "expected_log_keys", None) or [])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not distributed.is_main_process():  # under torchrun only rank 0 writes
            return
        logs = logs or {}
        if self.columns is None:  # CSV3, fixed: what fit announced plus what the first epoch logged
            self.columns = ["epoch", *sorted((set(self._expected) | set(logs)) - {"epoch"})]
            header = [_cell(c) for c in self.columns]
            if self._write_header:
                self._writer.writerow(header)
            elif self._existing_header is not None and self._existing_header != self.sep.join(header):
                warnings.warn(
                    f"CSVLogger: appending to {self.filename!r}, whose header {self._existing_header!r} differs "
                    f"from this run's columns {self.sep.join(header)!r}",
                    UserWarning,
                    stacklevel=2,
                )
        late = sorted(set(logs) - set(self.columns) - self._late - {"epoch"})
        if late:
            self._late.update(late)
            warnings.warn(
                f"CSVLogger: {late} first appeared at epoch {epoch + 1}, after the columns were fixed "
                f"({self.columns}); these values are not written.",
                UserWarning,
                stacklevel=2,
            )
        self._writer.writerow([str(epoch), *(_cell(logs.get(k)) for k in self.columns[1:])])  # CSV4
        self._file.flush()  # CSV5
        self.rows_written += 1
        self.file_position = self._file.tell()

    def on_train_end(self, logs: dict | None = None) -> None:
        if not distributed.is_main_process():  # under torchrun only rank 0 writes
            return
        self._close()  # CSV5

    def on_exception(self, error: BaseException) -> None:
        self._close()  # L3: no on_train_end after an exception, but the file is closed

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None
