"""TensorBoard: write the logged scalars and the learning rate for ``tensorboard --logdir``."""

from __future__ import annotations

import os
from typing import Any

from .. import distributed
from ..text import is_int
from .callback import Callback

__all__ = ["TensorBoard"]

_INSTALL = "TensorBoard needs the tensorboard package: pip install 'epochwise[tensorboard]'"


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch.utils.tensorboard imports tensorboard itself
        raise ImportError(_INSTALL) from err
    return SummaryWriter


class TensorBoard(Callback):
    """Write each epoch's logs (and, with ``update_freq=N``, every N-th batch's) to TensorBoard event files.

    As in Keras, training values go to ``log_dir/train`` and validation values to
    ``log_dir/validation`` under the same tag, so TensorBoard overlays them: ``epoch_loss`` holds
    ``loss`` in ``train`` and ``val_loss`` in ``validation``. The step of an epoch value is the 0-based
    epoch (absolute, so a resumed run continues the curve). ``epoch_learning_rate`` is written every
    epoch, from the logs when a callback or schedule put it there, else from ``model.optimizer``.
    ``update_freq="epoch"`` writes epoch values only; an integer N (or ``"batch"``, N=1) also writes
    ``batch_<name>`` every N training batches, at the count of batches trained so far: these are the
    running means of the epoch so far (rule G3), read without a host sync on the other batches.
    Under torchrun only rank 0 writes; its batch values are its own shard's, the epoch values all ranks'.

    Example::

        model.fit(x, y, epochs=20, validation_split=0.2, callbacks=[ew.callbacks.TensorBoard("runs/mlp")])
        # then: tensorboard --logdir runs

    Needs the optional extra: ``pip install 'epochwise[tensorboard]'``.
    """

    lazy_batch_logs = True  # reads the batch logs only when it uses them

    def __init__(self, log_dir: str | os.PathLike = "logs", update_freq: str | int = "epoch") -> None:
        super().__init__()
        self._writer_class = _summary_writer()  # fail now, not at the end of the first epoch
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(f"TensorBoard(log_dir={log_dir!r}): log_dir must be a folder path, e.g. 'logs'")
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and not is_int(update_freq):
            raise ValueError(
                f"TensorBoard(update_freq={update_freq!r}): use 'epoch', 'batch' or a positive number of batches"
            )
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self.global_batch = 0  # training batches seen, across fits
        self._writers: dict[str, Any] = {}

    def _writer(self, name: str) -> Any:
        if name not in self._writers:
            self._writers[name] = self._writer_class(os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_train_begin(self, logs: dict | None = None) -> None:
        if distributed.is_main_process():  # under torchrun only rank 0 writes
            os.makedirs(self.log_dir, exist_ok=True)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        """Every ``update_freq`` batches; the batch logs (a host sync) are read only then."""
        if not isinstance(self.update_freq, int):
            return
        self.global_batch += 1
        if self.global_batch % self.update_freq or not distributed.is_main_process():
            return
        values = logs or {}
        writer = self._writer("train")
        for key, value in values.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"batch_{key}", value, self.global_batch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not distributed.is_main_process():
            return
        logs = dict(logs or {})
        optimizer = getattr(self.model, "optimizer", None)
        if "learning_rate" not in logs and optimizer is not None:
            try:
                logs["learning_rate"] = float(optimizer.learning_rate)
            except (AttributeError, TypeError, RuntimeError):  # an unbuilt or foreign optimizer: skip it
                pass
        for key, value in logs.items():
            if not isinstance(value, (int, float)):
                continue
            validation = key.startswith("val_")
            writer = self._writer("validation" if validation else "train")
            writer.add_scalar(f"epoch_{key[4:] if validation else key}", value, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._close()

    def on_exception(self, error: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
