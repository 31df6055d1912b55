"""The overfitting rule of docs/learning-curves.md, on crafted histories (H2, H3 for the epoch numbering)."""

from __future__ import annotations

import math

import pytest

from epochwise.callbacks import History
from epochwise.insight.overfitting import find_overfitting, overfitting_note


def _run(n_fall: int, n_rise: int, *, train_keeps_falling: bool = True) -> dict[str, list[float]]:
    """Validation loss falls for ``n_fall`` epochs (minimum at the last of them), then rises ``n_rise``."""
    val = [1.0 - 0.05 * i for i in range(n_fall)] + [
        1.0 - 0.05 * (n_fall - 1) + 0.02 * (i + 1) for i in range(n_rise)
    ]
    n = n_fall + n_rise
    loss = (
        [1.0 - 0.03 * i for i in range(n)]
        if train_keeps_falling
        else [1.0 - 0.03 * min(i, n_fall - 1) + 0.001 * max(0, i - n_fall + 1) for i in range(n)]
    )
    return {"loss": loss, "val_loss": val}


def test_the_issue_example_six_rising_epochs_since_epoch_23():
    history = _run(23, 6)  # best val_loss at epoch 23 (1-based), then 6 epochs higher
    found = find_overfitting(history)
    assert (found.since_epoch, found.epochs_rising, found.last_epoch) == (23, 6, 29)
    assert found.val_loss_best == pytest.approx(1.0 - 0.05 * 22)
    assert found.val_loss_last == pytest.approx(1.0 - 0.05 * 22 + 0.12)
    assert found.loss_at_best == pytest.approx(1.0 - 0.03 * 22) and found.loss_last == pytest.approx(
        1.0 - 0.03 * 28
    )
    note = overfitting_note(history)
    assert note.startswith("val_loss has not improved on ") and "for 6 epochs (now " in note
    assert "while training loss fell (" in note and note.endswith(": overfitting since epoch 23")


@pytest.mark.parametrize(
    ("history", "why"),
    [
        (_run(10, 2), "rule 1: only 2 epochs since the best, fewer than patience=3"),
        (_run(10, 0), "validation still improving at the last epoch"),
        (_run(10, 5, train_keeps_falling=False), "rule 3: training loss did not fall after the best epoch"),
        (
            {"loss": [1.0, 0.9, 0.8, 0.7, 0.6], "val_loss": [1.0, 0.5, 0.502, 0.503, 0.504]},
            "rule 2: 0.8% < 1% rise",
        ),
        ({"loss": [1.0, 0.9, 0.8, 0.7, 0.6]}, "no validation"),
        ({"loss": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], "val_loss": [1.0, 0.5, 0.9]}, "validation_freq > 1 (H2)"),
    ],
)
def test_rule_does_not_fire(history, why):
    assert find_overfitting(history) is None, why
    assert overfitting_note(history) is None


def test_rule_2_threshold_is_relative_to_the_best_value():
    history = {"loss": [1.0, 0.9, 0.8, 0.7, 0.6], "val_loss": [1.0, 0.5, 0.502, 0.503, 0.504]}
    assert find_overfitting(history, min_rise=0.005).since_epoch == 2  # 0.504 > 0.5 * 1.005
    assert find_overfitting(history, min_rise=0.01) is None  # 0.504 < 0.5 * 1.01


def test_exactly_patience_epochs_fires_and_ties_take_the_first_minimum():
    history = {"loss": [1.0, 0.8, 0.6, 0.5, 0.4, 0.3], "val_loss": [1.0, 0.5, 0.6, 0.5, 0.7, 0.8]}
    found = find_overfitting(history)  # the lowest 0.5 first occurs at epoch 2: 4 epochs since
    assert (found.since_epoch, found.epochs_rising) == (2, 4)
    assert find_overfitting(history, patience=5) is None


def test_epochs_follow_history_epoch_after_initial_epoch():  # H3: absolute 0-based indices
    history = History()
    history.history = _run(5, 4)
    history.epoch = list(range(10, 19))
    found = find_overfitting(history)
    assert (found.since_epoch, found.last_epoch) == (15, 19)
    assert find_overfitting(history.history, epochs=history.epoch).since_epoch == 15


def test_non_finite_epochs_are_left_out():
    history = _run(6, 4)
    history["val_loss"][2] = math.nan
    assert find_overfitting(history).since_epoch == 6


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"patience": 0}, "patience"), ({"min_rise": -0.1}, "min_rise")]
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_overfitting(_run(5, 4), **kwargs)


def test_rejects_what_is_not_a_history():
    with pytest.raises(TypeError, match="History or a dict"):
        find_overfitting([0.1, 0.2])


def test_the_words_compare_the_end_with_the_best_not_with_the_epochs_before():
    """val_loss fell over the last three epochs (0.5236 -> 0.4430 -> 0.4161) but never came back to its
    best (0.4001 at epoch 2): the sentence says exactly that, and no "rose"."""
    history = {"loss": [0.9, 0.7, 0.6, 0.5, 0.45, 0.4], "val_loss": [0.6, 0.4001, 0.45, 0.5236, 0.4430, 0.4161]}
    note = overfitting_note(history)
    assert note == ("val_loss has not improved on 0.4001 (epoch 2) for 4 epochs (now 0.4161) while training "
                    "loss fell (0.7000 -> 0.4000): overfitting since epoch 2")
