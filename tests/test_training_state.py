"""What a checkpoint holds: the same file from Model.save wherever it is called, the training state only
when asked for, callback states by a key that survives reordering and subclassing, and the weights once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew
from epochwise.callbacks import Callback

RNG = np.random.default_rng(3)
X = RNG.normal(size=(48, 4)).astype("float32")
Y = (X[:, 0] > 0).astype("int64")


def build():
    torch.manual_seed(0)
    model = ew.Model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), device="cpu", seed=2)
    model.compile(optimizer=ew.optimizers.Adam(learning_rate=0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class SaveInside(Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        self.model.save(self.path, extra={"epoch": epoch + 1})


def test_model_save_writes_the_same_kind_of_file_inside_and_outside_fit(tmp_path):
    model = build()
    model.fit(X, Y, batch_size=16, epochs=1, callbacks=[SaveInside(tmp_path / "in.pt")], verbose=0)
    model.save(tmp_path / "out.pt", extra={"epoch": 1})
    inside = torch.load(tmp_path / "in.pt", weights_only=True)
    outside = torch.load(tmp_path / "out.pt", weights_only=True)
    assert sorted(inside) == sorted(outside)
    assert "epochwise_training_state" not in inside and "callbacks" not in inside


def test_training_state_is_asked_for_and_only_during_fit(tmp_path):
    with pytest.raises(ValueError, match="only possible during fit"):
        build().save(tmp_path / "m.pt", training_state=True)


def _stops(*, subclass=False):
    kind = type("MyStop", (ew.callbacks.EarlyStopping,), {}) if subclass else ew.callbacks.EarlyStopping
    return [kind(monitor="val_loss", patience=50), ew.callbacks.EarlyStopping(monitor="val_accuracy", patience=50)]


@pytest.mark.parametrize("change", ["reordered", "subclassed"])
def test_callback_state_comes_back_by_key(tmp_path, change):
    path = tmp_path / "ckpt.pt"
    first = _stops()
    model = build()
    model.fit(X, Y, batch_size=16, epochs=3, validation_split=0.25, verbose=0,
              callbacks=[*first, ew.callbacks.ModelCheckpoint(str(path))])
    saved = {cb.monitor: (cb.best, cb.best_epoch, cb.wait) for cb in first}
    again = _stops(subclass=change == "subclassed")
    if change == "reordered":
        again.reverse()
    seen = {}

    class Peek(Callback):
        def on_train_begin(self, logs=None):
            seen.update({cb.monitor: (cb.best, cb.best_epoch, cb.wait) for cb in again})

    with warnings_as_errors():
        build().fit(X, Y, batch_size=16, epochs=4, validation_split=0.25, verbose=0, resume_from=path,
                    callbacks=[*again, Peek()])
    assert seen == saved


def test_best_weights_are_held_once_in_a_checkpoint(tmp_path):
    """ModelCheckpoint(save_best_only) writes at the best epoch, where EarlyStopping's best weights are
    the module's: the file holds them once."""
    path = tmp_path / "best.pt"
    stop = ew.callbacks.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    model = build()
    model.fit(X, Y, batch_size=16, epochs=3, verbose=0,
              callbacks=[stop, ew.callbacks.ModelCheckpoint(str(path), monitor="loss", save_best_only=True)])
    payload = torch.load(path, weights_only=True)
    state = payload["callbacks"]["EarlyStopping(loss)"]
    assert state["best_weights"] == {"epochwise_same_as": "module"}
    tensors = [v for v in _leaves(payload) if isinstance(v, torch.Tensor) and v.dim() == 2]
    assert len(tensors) == 2 + 4  # the two weight matrices, and Adam's two moments of each
    restored = build()
    seen = {}

    class Peek(Callback):
        def on_train_begin(self, logs=None):
            seen["w"] = {k: v.clone() for k, v in stop2.best_weights.items()}

    stop2 = ew.callbacks.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    restored.fit(X, Y, batch_size=16, epochs=3, verbose=0, resume_from=path, callbacks=[stop2, Peek()])
    for key, value in payload["module"].items():
        torch.testing.assert_close(seen["w"][key], value)


def _leaves(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj


class warnings_as_errors:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", UserWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
