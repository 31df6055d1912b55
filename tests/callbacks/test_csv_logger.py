"""CSVLogger against CSV1-CSV5, with the §14 fix (columns known up front).

Each test runs the real ``Model.fit``; ``Script`` (see ``_scripted.py``) feeds the chosen epoch logs, and the
compiled metrics and validation decide which keys fit announces.
"""

from __future__ import annotations

import io
import os

import pandas as pd
import pytest
import torch
from _scripted import scripted_fit, scripted_model
from conftest import make_regression, regressor

import epochwise as ew
from epochwise.callbacks import CSVLogger, LambdaCallback


def _extra_metric():  # a compiled metric named "extra": fit announces the key before any epoch
    return ew.metrics.MeanMetricWrapper(
        lambda y_true, y_pred: (y_pred - y_true).abs().mean(dim=-1), name="extra"
    )


def _open_handles(path) -> int | None:
    """How many of this process's file descriptors are open on ``path`` (None without /proc/self/fd)."""
    fds = "/proc/self/fd"
    if not os.path.isdir(fds):
        return None
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(os.path.join(fds, fd)) == target
        except OSError:
            continue
    return count


CSV4_LOGS = [  # rule CSV4's verified run with validation_freq=2
    {"loss": 1.498387098312378, "mae": 1.086491584777832},
    {
        "loss": 1.409401774406433,
        "mae": 1.0494714975357056,
        "val_loss": 1.3268028497695923,
        "val_mae": 1.0138075351715088,
    },
]
CSV4_TEXT = (
    "epoch,loss,mae,val_loss,val_mae\n"
    "0,1.498387098312378,1.086491584777832,NA,NA\n"
    "1,1.409401774406433,1.0494714975357056,1.3268028497695923,1.0138075351715088\n"
)


def test_csv4_output_format_with_validation_freq_2(tmp_path):
    path = tmp_path / "log.csv"
    model = scripted_model(metrics=["mae"])  # fit announces loss, mae, val_loss, val_mae
    run = scripted_fit([CSVLogger(path)], CSV4_LOGS, model=model, validate=True, validation_freq=2)
    assert run.model.expected_log_keys == ["loss", "mae", "val_loss", "val_mae"]
    assert path.read_text() == CSV4_TEXT


def test_csv3_fix_no_forced_val_columns_without_validation(tmp_path):  # Keras adds all-NA val_ columns
    path = tmp_path / "log.csv"
    scripted_fit([CSVLogger(path)], [{"loss": 0.5, "mae": 0.25}], model=scripted_model(metrics=["mae"]))
    assert path.read_text() == "epoch,loss,mae\n0,0.5,0.25\n"
    scripted_fit([CSVLogger(path)], [{"loss": 0.5}])  # announced: loss only
    assert path.read_text() == "epoch,loss\n0,0.5\n"


def test_late_key_is_announced_or_warned(tmp_path):  # CSV4: Keras drops late keys silently
    path = tmp_path / "log.csv"
    logs = [{"loss": 0.5}, {"loss": 0.4, "extra": 1.0}, {"loss": 0.3, "extra": 2.0}]
    with pytest.warns(UserWarning, match=r"\['extra'\] first appeared at epoch 2") as record:
        scripted_fit([CSVLogger(path)], logs)
    assert len(record) == 1
    assert path.read_text() == "epoch,loss\n0,0.5\n1,0.4\n2,0.3\n"
    scripted_fit([CSVLogger(path)], logs, model=scripted_model(metrics=[_extra_metric()]))
    assert path.read_text() == "epoch,extra,loss\n0,NA,0.5\n1,1.0,0.4\n2,2.0,0.3\n"


def test_csv2_append_writes_the_header_once(tmp_path):
    path = tmp_path / "log.csv"
    model = scripted_model()
    scripted_fit([CSVLogger(path, append=True)], [{"loss": 0.5}], model=model)
    scripted_fit([CSVLogger(path, append=True)], [{"loss": 0.25}], model=model)
    assert path.read_text() == "epoch,loss\n0,0.5\n0,0.25\n"


def test_csv2_append_warns_when_the_existing_header_differs(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,0.5\n")
    with pytest.warns(UserWarning, match="whose header 'epoch,loss' differs"):
        scripted_fit(
            [CSVLogger(path, append=True)], [{"loss": 0.4, "mae": 0.1}], model=scripted_model(metrics=["mae"])
        )
    assert path.read_text() == "epoch,loss\n0,0.5\n0,0.4,0.1\n"


def test_separator_and_value_formats(tmp_path):  # CSV1, CSV4
    path = tmp_path / "log.csv"
    logs = [{"loss": 1 / 3, "note": "a;b\nc\x1b[0m", "pair": [1, 2.5], "count": 7, "tiny": 1e-20}]
    scripted_fit([CSVLogger(path, separator=";")], logs)
    assert (
        path.read_text()
        == 'epoch;count;loss;note;pair;tiny\n0;7;0.3333333333333333;"a;b c [0m";[1, 2.5];1e-20\n'
    )


def test_floats_round_trip_exactly(tmp_path):  # full precision, read back by pandas
    path = tmp_path / "log.csv"
    values = [{"loss": v} for v in (0.1 + 0.2, 1e-300, 123456.78901234567, float("nan"))]
    scripted_fit([CSVLogger(path)], values)
    frame = pd.read_csv(path)
    assert frame["loss"].tolist()[:3] == [v["loss"] for v in values[:3]]
    assert frame["epoch"].tolist() == [0, 1, 2, 3]  # CSV4: 0-based, as History.epoch


def test_csv5_each_row_is_flushed_and_the_file_closed(tmp_path):
    path = tmp_path / "log.csv"
    seen = []
    logger = CSVLogger(path)
    handles = []

    def read(epoch, logs):
        seen.append(path.read_text())
        handles.append(_open_handles(path))

    scripted_fit([logger, LambdaCallback(on_epoch_end=read)], [{"loss": 0.5}, {"loss": 0.4}])
    assert seen == ["epoch,loss\n0,0.5\n", "epoch,loss\n0,0.5\n1,0.4\n"]
    if handles[0] is not None:  # Linux: the logger holds the file open during fit, and closes it at the end
        assert handles == [1, 1] and _open_handles(path) == 0


def test_parent_directory_created_and_directory_rejected(tmp_path):
    scripted_fit([CSVLogger(tmp_path / "logs" / "run.csv")], [{"loss": 0.5}])
    assert (tmp_path / "logs" / "run.csv").read_text() == "epoch,loss\n0,0.5\n"
    with pytest.raises(IsADirectoryError, match="is a directory"):
        scripted_fit([CSVLogger(tmp_path / "logs")], [{"loss": 0.5}])


@pytest.mark.parametrize("separator", ["", ";;", "\n", '"', 3])
def test_bad_separator(separator):
    with pytest.raises(ValueError, match="separator must be one character"):
        CSVLogger("log.csv", separator=separator)


def test_resume_truncates_to_the_checkpoint_and_continues(tmp_path):
    logs = [{"loss": 0.5}, {"loss": 0.4}, {"loss": 0.3}, {"loss": 0.2}]
    whole = tmp_path / "whole.csv"
    scripted_fit([CSVLogger(whole)], logs)

    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    scripted_fit([logger], logs[:2])
    buffer = io.BytesIO()
    torch.save(logger.state_dict(), buffer)  # a checkpoint after epoch 1
    scripted_fit([CSVLogger(path, append=True)], [{"loss": 9.9}])  # a row the crash left behind
    buffer.seek(0)
    resumed = CSVLogger(path)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    scripted_fit([resumed], logs[2:], initial_epoch=2)
    assert path.read_text() == whole.read_text()


def test_real_fit_matches_history(tmp_path):
    x, y = make_regression(n=40)
    model = regressor()
    path = tmp_path / "log.csv"
    history = model.fit(
        x, y, epochs=3, batch_size=10, validation_split=0.25, verbose=0, callbacks=[CSVLogger(path)]
    )
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert frame["epoch"].tolist() == history.epoch
    for key, values in history.history.items():
        assert frame[key].tolist() == values  # exactly: written with full precision
