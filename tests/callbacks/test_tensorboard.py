"""TensorBoard: the event files hold exactly the History's values (H2), under Keras's run and tag names."""

from __future__ import annotations

import sys

import pytest
from _scripted import ReadCount, scripted_model, zeros
from conftest import classifier, make_classification

import epochwise as ew
from epochwise.callbacks import TensorBoard

pytest.importorskip("torch.utils.tensorboard")  # at collection: its import is the slow part
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _f32(values):  # event files store float32
    import numpy as np

    return [float(np.float32(v)) for v in values]


def test_epoch_scalars_match_history_with_validation_in_its_own_run(tmp_path):
    x, y = make_classification(n=48)
    history = classifier().fit(
        x, y, epochs=3, validation_split=0.25, verbose=0, callbacks=[TensorBoard(tmp_path)]
    )
    train, val = _scalars(tmp_path / "train"), _scalars(tmp_path / "validation")
    assert sorted(train) == ["epoch_accuracy", "epoch_learning_rate", "epoch_loss"]
    assert sorted(val) == ["epoch_accuracy", "epoch_loss"]
    for name in ("loss", "accuracy"):
        assert train[f"epoch_{name}"] == list(zip([0, 1, 2], _f32(history.history[name])))
        assert val[f"epoch_{name}"] == list(zip([0, 1, 2], _f32(history.history[f"val_{name}"])))
    assert [v for _, v in train["epoch_learning_rate"]] == _f32([0.001] * 3)  # Adam's Keras default


def test_learning_rate_from_the_logs_when_a_callback_changes_it(tmp_path):  # LS5: learning_rate in the logs
    x, y = make_classification(n=32)
    schedule = ew.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    history = classifier(optimizer=ew.optimizers.SGD(learning_rate=0.1)).fit(
        x, y, epochs=3, verbose=0, callbacks=[schedule, TensorBoard(tmp_path)]
    )
    written = [v for _, v in _scalars(tmp_path / "train")["epoch_learning_rate"]]
    assert written == _f32(history.history["learning_rate"]) == _f32([0.1, 0.05, 0.1 / 3])


def test_update_freq_writes_every_nth_batch_at_the_global_batch_count(tmp_path):  # G3: running means
    x, y = make_classification(n=40)  # 5 batches of 8 per epoch, 2 epochs: 10 batches
    seen = []
    spy = ew.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs["loss"]))
    classifier().fit(
        x, y, batch_size=8, epochs=2, verbose=0, callbacks=[spy, TensorBoard(tmp_path, update_freq=3)]
    )
    batch_loss = _scalars(tmp_path / "train")["batch_loss"]
    assert [step for step, _ in batch_loss] == [3, 6, 9]
    assert [v for _, v in batch_loss] == _f32([seen[2], seen[5], seen[8]])


def test_epoch_update_freq_adds_no_batch_hook(tmp_path):  # no per-batch cost at all
    reads = []
    for freq in ("epoch", "batch"):
        metric = ReadCount()
        x, y = zeros(batches=4)
        board = TensorBoard(tmp_path / freq, update_freq=freq)
        scripted_model(metrics=[metric]).fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[board])
        reads.append(metric.reads)
    assert reads == [2, 2 + 8]  # epoch ends only; with "batch", every batch's logs too


@pytest.mark.parametrize("freq", [0, -1, "often", True, 1.5])
def test_bad_update_freq_is_named(freq):
    with pytest.raises(ValueError, match="update_freq"):
        TensorBoard("logs", update_freq=freq)


def test_missing_tensorboard_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'epochwise\[tensorboard\]'"):
        TensorBoard("logs")
