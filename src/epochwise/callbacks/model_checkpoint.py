"""ModelCheckpoint: save the model (or only its weights) during training (MC1-MC10)."""

from __future__ import annotations

import os
import re
import string
from typing import Any

from ..text import is_int
from ._monitor import MonitorCallback, check_verbose, did_you_mean, format_value

__all__ = ["ModelCheckpoint"]

_KERAS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


def _check_filepath(filepath: Any, save_weights_only: bool) -> str:
    """MC2 for PyTorch files: ``.pt``, or ``.safetensors`` for weights only; a valid named template."""
    path = os.fspath(filepath)
    lower, head = path.lower(), f"ModelCheckpoint(filepath={path!r})"
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(path) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{head}: not a valid template ({exc}); write a literal brace as '{{{{'") from None
    if any(f == "" or f.isdigit() for f in fields):
        raise ValueError(f"{head}: use named placeholders such as {{epoch:02d}} or {{val_loss:.4f}}")
    if lower.endswith(".pt") or (lower.endswith(".safetensors") and save_weights_only):
        return path
    if lower.endswith(".safetensors"):
        raise ValueError(
            f"{head} with save_weights_only=False: a .safetensors file holds weights only, not the optimizer "
            f"state of a full checkpoint. Use {path[:-12] + '.pt'!r}, or pass save_weights_only=True."
        )
    suffix = next((s for s in _KERAS_SUFFIXES if lower.endswith(s)), None)
    if suffix is not None:
        kind = "Keras archive" if suffix == ".keras" else "Keras HDF5"
        stem = path[: -len(suffix)]
        use = (f"{stem + '.pt'!r} or {stem + '.safetensors'!r}" if save_weights_only
               else f"{stem + '.pt'!r} (or .safetensors with save_weights_only=True)")
        raise ValueError(f"{path!r} is a {kind} name; epochwise writes PyTorch files: use {use}")
    stem, ext = os.path.splitext(path)
    stem = path if "}" in ext else stem
    ends = "'.pt' or '.safetensors'" if save_weights_only else "'.pt' (or '.safetensors' with save_weights_only=True)"
    raise ValueError(f"{head}: the file name must end in {ends}, e.g. {stem + '.pt'!r}")


class ModelCheckpoint(MonitorCallback):
    """Save the model at the end of every epoch, every ``save_freq`` batches, or when it improves.

    ``filepath`` may hold ``str.format`` placeholders: ``{epoch}`` (1-based), ``{batch}`` (1-based, with
    an integer ``save_freq``) and any logged value, e.g. ``"ckpt/best-{epoch:02d}-{val_loss:.4f}.pt"``.
    A ``.pt`` file holds the weights (``save_weights_only=True``) or a ``model.save`` checkpoint whose
    extra is ``{"epoch": epochs completed}`` (plus ``"batch"``: batches done since, for batch-level
    saves); ``.safetensors`` holds weights only. With ``save_best_only`` a file is written only when
    ``monitor`` strictly improves on ``best``, which starts at ``initial_value_threshold`` (if None,
    ``best`` resets at every fit). Before the first step, the placeholders (and, with ``save_best_only``,
    ``monitor``) are checked against the keys fit will log.

    Example::

        ckpt = ew.callbacks.ModelCheckpoint("best-model.pt", monitor="val_loss", save_best_only=True)
        model.fit(x, y, epochs=20, validation_split=0.2, callbacks=[ckpt])
        model.load_weights("best-model.pt")
    """

    lazy_batch_logs = True  # reads the batch logs only when it uses them

    skip_note = "no checkpoint is saved"

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__(monitor, mode, 0.0, initial_value_threshold)  # MC6: min_delta is 0
        self.save_weights_only = bool(save_weights_only)
        self.filepath = _check_filepath(filepath, self.save_weights_only)
        self.verbose = check_verbose("ModelCheckpoint", verbose)
        self.save_best_only = bool(save_best_only)
        if save_freq != "epoch" and not is_int(save_freq):
            raise ValueError(
                f"ModelCheckpoint(save_freq={save_freq!r}): save_freq must be 'epoch' or a positive number of "
                f"batches.{did_you_mean(save_freq, ['epoch'])}"
            )
        self.save_freq = save_freq
        if save_freq != "epoch":
            if self.save_best_only and monitor.startswith("val_"):  # MC8 fix, keras-team/keras#16734
                raise ValueError(
                    f"ModelCheckpoint(monitor={monitor!r}, save_freq={save_freq}, save_best_only=True): batch-level "
                    "logs never hold validation values, so no checkpoint would ever be saved. Monitor a training "
                    "key such as 'loss', or use save_freq='epoch'."
                )
        self.initial_value_threshold = self.baseline
        self.best: float | None = self.baseline  # MC7
        self._batches_seen, self._current_epoch = 0, 0  # batch-level counters persist across fits (C3)
        self._saves, self._last_path, self._best_epoch, self._last_epoch = 0, None, None, 0

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("best", "direction", "_batches_seen", "_current_epoch")}

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._take_resume() and self.initial_value_threshold is None:
            self.best = None  # MC7 fix: a reused instance does not compare against the last fit's best
        self._saves, self._last_path, self._best_epoch, self._last_epoch = 0, None, None, 0
        batch_level = self.save_freq != "epoch"
        keys = self._logged_keys(batch_level)
        if self.save_best_only:  # MC8 fix: direction resolved now, not at the first epoch end
            if keys is not None and self.monitor not in keys and self.monitor != "learning_rate":
                # any mode: a monitor fit never logs would mean no file in the whole run
                raise ValueError(self._unknown_monitor_message(keys, batch_level))
            self.check_monitor(batch_level=batch_level)
        if keys is not None:
            self._check_template(keys, batch_level)
        if "{" not in self.filepath:
            self._check_not_dir(self.filepath)

    def _logged_keys(self, batch_level: bool) -> list[str] | None:
        """The keys fit announced it will log (``model.expected_log_keys``), at batch level only the training
        ones (MC4); None when the model announces none."""
        keys = getattr(self.model, "expected_log_keys", None)
        if keys is None:
            return None
        if batch_level:
            keys = [k for k in keys if not k.startswith("val_") and k != "learning_rate"]
        return sorted(keys)

    def _check_template(self, keys: list[str], batch_level: bool) -> None:
        """Every placeholder of ``filepath`` names a value the saves will have and its format spec suits it."""
        samples: dict[str, Any] = {k: 1.0 for k in keys}  # logged values are floats
        samples["epoch"] = 1
        if batch_level:
            samples["batch"] = 1
        head = f"ModelCheckpoint(filepath={self.filepath!r})"
        for _, field, spec, conversion in string.Formatter().parse(self.filepath):
            if field is None:
                continue
            name = re.match(r"[^.\[]*", field).group()
            piece = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if name not in samples:
                if name == "learning_rate" and not batch_level:
                    continue  # LR callbacks log it without fit announcing it
                raise ValueError(f"{head}: the placeholder {piece} names {name!r}, which fit does not log "
                                 f"{'at batch level' if batch_level else 'at each epoch end'}. Available "
                                 f"placeholders: {sorted(samples)}.{self._template_hint(name, keys, batch_level)}")
            try:
                piece.format(**samples)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                kind, example = ("an integer", f"{{{name}:02d}}") if name in ("epoch", "batch") else (
                    "a float", f"{{{name}:.4f}}")
                raise ValueError(f"{head}: the placeholder {piece} cannot format {name!r}, which is {kind} "
                                 f"({exc}); write e.g. {example}") from None

    @staticmethod
    def _template_hint(name: str, keys: list[str], batch_level: bool) -> str:
        if name == "batch":
            return " {batch} exists only with an integer save_freq."
        if name.startswith("val_") and batch_level:
            return " Batch-level logs (an integer save_freq) never hold val_* values; use save_freq='epoch'."
        if name.startswith("val_") and name[4:] in keys:
            return f" {name!r} exists only when fit validates: pass validation_data=... or validation_split=..."
        return did_you_mean(name, keys)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":  # MC4
            self._save(epoch, None, logs or {})

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches_seen += 1  # MC4: counted across epoch boundaries
        if self._batches_seen >= self.save_freq:
            self._batches_seen = 0
            self._save(self._current_epoch, batch, logs or {})

    def _say(self, epoch: int, text: str) -> None:
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {text}")  # MC10

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        where = f"epoch {epoch + 1}" if batch is None else f"batch {batch + 1} of epoch {epoch + 1}"
        if self.save_best_only:
            current = self.monitor_value(logs, where)  # MC6 fix: missing -> skip and warn once
            if current is None:
                return
            if not self.is_improvement(current, self.best):
                self._say(epoch, f"{self.monitor} did not improve from {self.best:.5f}")
                return
            path = self._format(epoch, batch, logs)
            previous = "None" if self.best is None else f"{self.best:.5f}"
            self._say(
                epoch, f"{self.monitor} improved from {previous} to {current:.5f}, saving model to {path}"
            )
            self.best, self._best_epoch = current, epoch
        else:
            path = self._format(epoch, batch, logs)
            self._say(epoch, f"saving model to {path}")
        self._write(path, epoch, batch)
        self._say(epoch, f"finished saving model to {path}")

    def _format(self, epoch: int, batch: int | None, logs: dict) -> str:
        values = {**logs, "epoch": epoch + 1}  # MC3: 1-based
        if batch is not None:
            values.setdefault("batch", batch + 1)
        try:
            return self.filepath.format(**values)
        except KeyError as exc:
            level = "batch-level logs (which never hold val_*)" if batch is not None else "epoch-end logs"
            hint = " {batch} exists only with an integer save_freq." if exc.args[0] == "batch" else ""
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}": the {level} of epoch {epoch + 1} have no '
                f"value for {{{exc.args[0]}}}. Available: {sorted(values)}.{hint}"
            ) from None

    def _check_not_dir(self, path: str) -> None:
        if os.path.isdir(path):  # MC9
            raise IsADirectoryError(
                f"ModelCheckpoint: {path!r} is an existing directory; give a file path such as "
                f"{os.path.join(path, 'model.pt')!r}"
            )

    def _write(self, path: str, epoch: int, batch: int | None) -> None:
        self._check_not_dir(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)  # MC9
        if self.save_weights_only or path.lower().endswith(".safetensors"):
            self.model.save_weights(path)
        else:
            extra = {"epoch": epoch + 1} if batch is None else {"epoch": epoch, "batch": batch + 1}
            self.model.save(path, extra=extra, training_state=True)  # fit(resume_from=path) continues it
        self._saves += 1
        self._last_path, self._last_epoch = path, epoch

    def summary(self) -> str | None:
        if not self._saves:
            return None
        if self.save_best_only:
            return (
                f"best model saved to {self._last_path} ({self.monitor} {format_value(self.best)} "
                f"at epoch {self._best_epoch + 1})"
            )
        times = "once" if self._saves == 1 else f"{self._saves} times"
        text = f"model saved {times}, last to {self._last_path} (epoch {self._last_epoch + 1})"
        if "best" in os.path.basename(self.filepath).lower():
            text += (": it holds the last epoch saved, not the best; to keep the best, pass "
                     f"save_best_only=True (monitor={self.monitor!r})")
        return text
