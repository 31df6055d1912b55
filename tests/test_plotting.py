"""Learning-curve figures, checked through the returned Figure's axes (series, data, markers), not pixels."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import classifier, make_classification

import epochwise as ew
from epochwise import cli
from epochwise.insight.plots import plot_history, read_history_csv

pytest.importorskip("matplotlib")


def _lines(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def _label_starting(ax, prefix: str):
    found = [label for label in _lines(ax) if label.startswith(prefix)]
    assert len(found) == 1, (prefix, list(_lines(ax)))
    return _lines(ax)[found[0]]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run EarlyStopping ends (random labels overfit at once), logged to History and to a CSV file."""
    x, y = make_classification(n=80)
    model = classifier(optimizer=ew.optimizers.Adam(learning_rate=0.05))
    stop = ew.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    path = tmp_path_factory.mktemp("run") / "log.csv"
    history = model.fit(
        x,
        y,
        epochs=30,
        validation_split=0.25,
        verbose=0,
        seed=0,
        callbacks=[stop, ew.callbacks.CSVLogger(path)],
    )
    assert stop.stopped_epoch > 0  # ES3.7: the fixture needs a run that stopped
    return history, stop, path


def test_one_panel_per_quantity_with_training_and_validation_on_the_same_axes(stopped_run):
    history, stop, _ = stopped_run
    fig = plot_history(history, early_stopping=stop)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    epochs = [e + 1 for e in history.epoch]  # X1: the x axis counts epochs from 1, as the progress bar
    for ax, name in zip(fig.axes, ["loss", "accuracy"]):
        lines = _lines(ax)
        for key in (name, f"val_{name}"):
            assert list(lines[key].get_xdata()) == epochs
            np.testing.assert_array_equal(lines[key].get_ydata(), history.history[key])  # H2


def test_best_and_early_stopping_epochs_are_marked_and_the_restore_named(stopped_run):  # ES3, ES6, H5
    history, stop, _ = stopped_run
    loss_ax, acc_ax = plot_history(history, early_stopping=stop).axes
    best = stop.best_epoch + 1
    assert best == int(np.argmin(history.history["val_loss"])) + 1
    for ax in (loss_ax, acc_ax):
        line = _label_starting(ax, f"best epoch {best} (val_loss ")
        assert line.get_label().endswith(", weights restored")
        assert list(line.get_xdata()) == [best, best]
        assert list(_label_starting(ax, "early stop at epoch").get_xdata()) == [stop.stopped_epoch + 1] * 2
    star = _lines(loss_ax)["best val_loss"]  # the star sits on the monitored series only
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (best, stop.best)
    assert star.get_marker() == "*" and "best val_loss" not in _lines(acc_ax)


def test_history_plot_finds_early_stopping_through_its_attribute(stopped_run, tmp_path):
    history, stop, _ = stopped_run
    before = getattr(history, "early_stopping", None)
    try:
        history.early_stopping = None
        assert not any(label.startswith("early stop") for label in _lines(history.plot().axes[0]))
        history.early_stopping = stop  # what the engine sets after fit
        fig = history.plot(tmp_path / "curves.png")
    finally:
        history.early_stopping = before
    _label_starting(fig.axes[0], "early stop at epoch")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_logger_file_gives_the_same_curves(stopped_run):  # CSV1-CSV4
    history, _, path = stopped_run
    from_csv, from_history = plot_history(path), plot_history(history)
    for a, b in zip(from_csv.axes, from_history.axes):
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            if key in _lines(b):
                np.testing.assert_allclose(
                    _lines(a)[key].get_ydata(), _lines(b)[key].get_ydata(), rtol=0, atol=0
                )
    # without EarlyStopping the best epoch is the first lowest val_loss
    best = int(np.argmin(history.history["val_loss"])) + 1
    _label_starting(from_csv.axes[0], f"best epoch {best} (val_loss ")


def test_validation_every_second_epoch_lands_on_its_epochs(tmp_path):  # H2, CSV4 (NA cells), F16
    x, y = make_classification(n=40)
    path = tmp_path / "log.csv"
    history = classifier().fit(
        x,
        y,
        epochs=6,
        validation_split=0.25,
        validation_freq=2,
        verbose=0,
        callbacks=[ew.callbacks.CSVLogger(path)],
    )
    assert read_history_csv(path)["val_loss"][0] == [2, 4, 6]
    for source in (history, path):
        val = _lines(plot_history(source).axes[0])["val_loss"]
        assert list(val.get_xdata()) == [2, 4, 6]
        np.testing.assert_allclose(val.get_ydata(), history.history["val_loss"])


def test_learning_rate_panel_only_when_it_changed():
    base = {"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.85]}
    assert [ax.get_title() for ax in plot_history({**base, "learning_rate": [0.1] * 3}).axes] == ["loss"]
    fig = plot_history({**base, "learning_rate": [0.1, 0.1, 0.01]})
    assert [ax.get_title() for ax in fig.axes] == ["loss", "learning_rate"]
    assert fig.axes[1].get_yscale() == "log"
    assert list(_lines(fig.axes[1])["learning_rate"].get_ydata()) == [0.1, 0.1, 0.01]


def test_explicit_epochs_are_zero_based_like_early_stopping():
    fig = plot_history({"loss": [3.0, 2.0, 1.0, 0.5]}, best_epoch=1, stopped_epoch=3, restored_epoch=2)
    ax = fig.axes[0]
    assert list(_label_starting(ax, "best epoch 2").get_xdata()) == [2, 2]
    assert list(_label_starting(ax, "early stop at epoch 4").get_xdata()) == [4, 4]
    assert list(_label_starting(ax, "weights restored from epoch 3").get_xdata()) == [3, 3]


def test_overfitting_span_on_the_loss_panel():  # the rule of docs/learning-curves.md
    history = {"loss": [1.0, 0.8, 0.6, 0.5, 0.4, 0.3], "val_loss": [1.0, 0.7, 0.5, 0.6, 0.7, 0.8]}
    ax = plot_history(history).axes[0]
    spans = [p for p in ax.patches if p.get_label() == "overfitting since epoch 3"]
    assert len(spans) == 1
    box = spans[0].get_bbox()  # data coordinates of the span
    assert (box.x0, box.x1) == (3, 6)


def test_svg_by_suffix_and_unknown_suffix_refused(tmp_path):
    plot_history({"loss": [1.0, 0.5]}, tmp_path / "curves.svg")
    assert "<svg" in (tmp_path / "curves.svg").read_text()
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf"):
        plot_history({"loss": [1.0, 0.5]}, tmp_path / "curves.jpeg")


def test_clear_errors():
    with pytest.raises(ValueError, match="Did you mean 'val_loss'"):
        plot_history({"loss": [1.0], "val_loss": [1.0]}, monitor="val_los")
    with pytest.raises(ValueError, match="mode='max'"):
        plot_history({"loss": [1.0], "acc": [0.5]}, monitor="acc")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_history({})
    with pytest.raises(TypeError, match="CSVLogger file"):
        plot_history([1.0, 2.0])
    with pytest.raises(FileNotFoundError, match="CSVLogger"):
        plot_history("missing.csv")


def test_headless_without_pyplot(monkeypatch, tmp_path):
    """No pyplot, so no GUI backend and no display: a bare Figure renders through Agg / the SVG backend."""
    monkeypatch.delenv("DISPLAY", raising=False)
    for name in [
        m for m in sys.modules if m == "matplotlib.pyplot" or m.startswith("matplotlib.backends.backend_")
    ]:
        monkeypatch.delitem(sys.modules, name)
    plot_history({"loss": [1.0, 0.5]}, tmp_path / "c.png")
    assert "matplotlib.pyplot" not in sys.modules
    assert not any(
        m.startswith("matplotlib.backends.backend_") and not m.endswith(("agg", "svg")) for m in sys.modules
    )


def test_cli_plot_writes_the_image(stopped_run, tmp_path, capsys):
    _, _, path = stopped_run
    assert cli.main(["plot", str(path), "-o", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "Learning curves saved to" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["plot", str(tmp_path / "nope.csv")])


def test_demo_writes_the_learning_curves(tmp_path, capsys):
    assert (
        cli.main(
            ["demo", "--epochs", "2", "--batch-size", "256", "--verbose", "0", "--output", str(tmp_path)]
        )
        == 0
    )
    assert (tmp_path / "learning-curves.png").read_bytes()[:4] == b"\x89PNG"
    assert f"Learning curves saved to {tmp_path / 'learning-curves.png'}" in capsys.readouterr().out
