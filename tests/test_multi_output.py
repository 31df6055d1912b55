"""Several outputs (G5, F10, F11, E4, P2): a loss per output, loss_weights, per-output metrics and sample
weights, Keras's log names, and every structure error before the first step."""

from __future__ import annotations

import copy
import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import epochwise as ew

RNG = np.random.default_rng(0)
N = 24
X = RNG.normal(size=(N, 4)).astype("float32")
LABELS = RNG.integers(0, 3, N)
VALUES = RNG.normal(size=(N, 1)).astype("float32")
WEIGHTS = np.linspace(0.0, 2.0, N).astype("float32")


class TwoHeads(nn.Module):
    """A tuple of two outputs: class logits and one regression value."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.label, self.value = nn.Linear(4, 3), nn.Linear(4, 1)

    def forward(self, x):
        return self.label(x), self.value(x)


class DictHeads(TwoHeads):
    def forward(self, x):
        return {"label": self.label(x), "box": self.value(x)}


def frozen(model):
    """Plain SGD with learning rate 0: fit runs its steps and leaves the weights as they are."""
    return torch.optim.SGD(model.module.parameters(), lr=0.0)


def two_heads(**compile_args):
    model = ew.Model(TwoHeads(), device="cpu")
    compile_args.setdefault("optimizer", frozen(model))
    compile_args.setdefault("loss", ["sparse_categorical_crossentropy", "mse"])
    model.compile(**compile_args)
    return model


def reference(module, x=X, labels=LABELS, values=VALUES, w_label=None, w_value=None):
    """Each output's loss and metric by torch, on the same weights (Keras's sum_over_batch_size: Σ w·l / n)."""
    with torch.no_grad():
        out = module(torch.from_numpy(x))
        logits, value = (out["label"], out["box"]) if isinstance(out, dict) else out
        ce = F.cross_entropy(logits, torch.from_numpy(labels), reduction="none")
        se = (value - torch.from_numpy(values)).square().mean(-1)
        w1 = torch.ones(len(x)) if w_label is None else torch.from_numpy(w_label)
        w2 = torch.ones(len(x)) if w_value is None else torch.from_numpy(w_value)
        accuracy = (logits.argmax(-1) == torch.from_numpy(labels)).float().mean()
        mae = (value - torch.from_numpy(values)).abs().mean()
    return float((w1 * ce).mean()), float((w2 * se).mean()), float(accuracy), float(mae)


def test_logged_losses_and_metrics_match_torch():  # G5, E4
    model = two_heads(loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["mae"]])
    history = model.fit(X, [LABELS, VALUES], batch_size=7, epochs=1, verbose=0)  # lr 0: the weights stay
    ce, se, accuracy, mae = reference(model.module)
    expected = {"loss": ce + 0.5 * se, "output_0_loss": ce, "output_1_loss": se, "output_0_accuracy": accuracy,
                "output_1_mae": mae}
    assert sorted(history.history) == sorted(expected)
    for key, value in expected.items():
        assert history.history[key][0] == pytest.approx(value, rel=1e-5), key
    logs = model.evaluate(X, (LABELS, VALUES), batch_size=5, verbose=0, return_dict=True)
    assert logs == pytest.approx(expected, rel=1e-5)
    values = model.evaluate(X, [LABELS, VALUES], verbose=0)  # E4: loss, each output's loss, the rest sorted
    assert model.metrics_names == ["loss", "output_0_loss", "output_1_loss", "output_0_accuracy", "output_1_mae"]
    assert values == pytest.approx([expected[k] for k in model.metrics_names], rel=1e-5)


def test_dict_outputs_with_sample_weights_per_output():  # F11
    model = ew.Model(DictHeads(), device="cpu")
    model.compile(optimizer=frozen(model),
                  loss={"label": "sparse_categorical_crossentropy", "box": "mse"},
                  loss_weights={"box": 0.25}, metrics={"label": ["accuracy"]}, weighted_metrics={"box": ["mae"]})
    y = {"label": LABELS, "box": VALUES}
    history = model.fit(X, y, sample_weight={"box": WEIGHTS}, batch_size=5, verbose=0)
    ce, se, accuracy, _ = reference(model.module, w_value=WEIGHTS)
    with torch.no_grad():
        err = (model.module(torch.from_numpy(X))["box"] - torch.from_numpy(VALUES)).abs()[:, 0]
    weighted_mae = float((err * torch.from_numpy(WEIGHTS)).sum() / WEIGHTS.sum())
    logs = {k: v[0] for k, v in history.history.items()}
    assert logs == pytest.approx({"loss": ce + 0.25 * se, "label_loss": ce, "box_loss": se,
                                  "label_accuracy": accuracy, "box_mae": weighted_mae}, rel=1e-5)
    # one array for every output (F11)
    both = model.evaluate(X, y, sample_weight=WEIGHTS, verbose=0, return_dict=True)
    ce_w, se_w, _, _ = reference(model.module, w_label=WEIGHTS, w_value=WEIGHTS)
    assert both["label_loss"] == pytest.approx(ce_w, rel=1e-5)
    assert both["loss"] == pytest.approx(ce_w + 0.25 * se_w, rel=1e-5)
    out = model.predict(X, verbose=0)  # P2: the module's structure, as NumPy
    assert isinstance(out, dict) and list(out) == ["label", "box"] and isinstance(out["box"], np.ndarray)
    np.testing.assert_allclose(out["box"], model.module(torch.from_numpy(X))["box"].detach().numpy(), rtol=1e-6)


def test_gradient_is_that_of_the_weighted_sum():
    model = two_heads(optimizer=ew.optimizers.SGD(learning_rate=0.1), loss_weights=[0.3, 2.0])
    manual = copy.deepcopy(model.module)
    model.fit(X, [LABELS, VALUES], batch_size=N, epochs=1, shuffle=False, verbose=0)
    logits, value = manual(torch.from_numpy(X))
    total = 0.3 * F.cross_entropy(logits, torch.from_numpy(LABELS)) + 2.0 * F.mse_loss(value, torch.from_numpy(VALUES))
    total.backward()
    with torch.no_grad():
        for p in manual.parameters():
            p -= 0.1 * p.grad
    for (name, mine), theirs in zip(model.module.named_parameters(), manual.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=name)


def test_one_loss_applies_to_every_output_and_flat_metrics_pair_up():  # Keras: one metric per output
    model = two_heads(loss="mae", metrics=["mae", "mse"])
    y = [RNG.normal(size=(N, 3)).astype("float32"), VALUES]
    logs = model.evaluate(X, y, verbose=0, return_dict=True)
    assert sorted(logs) == ["loss", "output_0_loss", "output_0_mae", "output_1_loss", "output_1_mse"]
    assert logs["loss"] == pytest.approx(logs["output_0_loss"] + logs["output_1_loss"], rel=1e-6)
    assert logs["output_0_mae"] == pytest.approx(logs["output_0_loss"], rel=1e-6)


def test_batches_from_a_source_with_one_loss():  # the targets of the first batch say there are two outputs
    model = two_heads(loss="mse")
    y0 = RNG.normal(size=(N, 3)).astype("float32")
    batches = [(torch.from_numpy(X[i:i + 8]), (torch.from_numpy(y0[i:i + 8]), torch.from_numpy(VALUES[i:i + 8])))
               for i in range(0, N, 8)]
    history = model.fit(batches, validation_data=batches, verbose=0)
    assert sorted(history.history) == ["loss", "output_0_loss", "output_1_loss", "val_loss", "val_output_0_loss",
                                       "val_output_1_loss"]
    with torch.no_grad():
        a, b = model.module(torch.from_numpy(X))
    expected = float(F.mse_loss(a, torch.from_numpy(y0)) + F.mse_loss(b, torch.from_numpy(VALUES)))
    assert history.history["val_loss"][0] == pytest.approx(expected, rel=1e-5)


def test_early_stopping_on_an_output_loss(tmp_path):  # G5 names; M2: an output's loss goes down
    model = two_heads(optimizer=ew.optimizers.SGD(learning_rate=0.5), loss_weights=[1.0, 0.0])
    stop = ew.callbacks.EarlyStopping(monitor="val_output_1_loss", patience=1)
    log = tmp_path / "log.csv"
    history = model.fit(X, [LABELS, VALUES], validation_split=0.25, epochs=6, verbose=0,
                        callbacks=[stop, ew.callbacks.CSVLogger(str(log))])
    # output 1 is not trained (weight 0), so its validation loss never improves after the first epoch
    assert len(history.epoch) == 2 and stop.stopped_epoch == 1
    assert history.history["val_output_1_loss"][0] == history.history["val_output_1_loss"][1]
    assert history.history["val_output_0_loss"][1] < history.history["val_output_0_loss"][0]
    with open(log, newline="") as f:
        header = next(csv.reader(f))
    assert header == ["epoch", *sorted(history.history)]


def test_run_plan_says_how_the_total_is_formed(capsys):
    model = two_heads(loss_weights=[1.0, 0.5])
    model.fit(X, [LABELS, VALUES], epochs=1, verbose=2)
    assert ("loss = 1.0 x output_0 sparse_categorical_crossentropy (from logits) + 0.5 x output_1 "
            "mean_squared_error") in capsys.readouterr().out


def test_predict_returns_the_tuple():  # P2
    model = two_heads()
    out = model.predict(X, batch_size=5, verbose=0)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(N, 3), (N, 1)]
    expected = model.module(torch.from_numpy(X))
    for got, want in zip(out, expected):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-6)


def test_names_match_keras_3():  # G5, E4 against Keras 3 itself, on the same weights
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    model = two_heads(loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["mae"]], weighted_metrics=[[], ["mae"]])
    inp = keras.Input((4,))
    heads = [keras.layers.Dense(3, name="output_0")(inp), keras.layers.Dense(1, name="output_1")(inp)]
    reference_model = keras.Model(inp, heads)
    for layer, linear in zip(reference_model.layers[1:], (model.module.label, model.module.value)):
        layer.set_weights([linear.weight.detach().numpy().T, linear.bias.detach().numpy()])
    reference_model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),  # Keras defaults to probabilities
                            loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), "mse"],
                            loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["mae"]], weighted_metrics=[[], ["mae"]])
    args = {"x": X, "y": [LABELS, VALUES], "sample_weight": WEIGHTS, "batch_size": 8, "verbose": 0}
    ours = model.fit(validation_split=0.25, **args).history
    theirs = reference_model.fit(validation_split=0.25, **args).history
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key][0] == pytest.approx(theirs[key][0], rel=1e-4, abs=1e-6), key
    eval_args = {"x": X, "y": [LABELS, VALUES], "sample_weight": WEIGHTS, "verbose": 0}
    assert model.evaluate(**eval_args) == pytest.approx(reference_model.evaluate(**eval_args), rel=1e-4)


def weights_of(model):
    return [p.detach().clone() for p in model.module.parameters()]


@pytest.mark.parametrize("compile_args, fit_args, message", [
    ({"loss": ["mse"] * 3}, {"y": [LABELS, VALUES, VALUES]}, r"module's output is a tuple of 2, but there are 3"),
    ({}, {"y": LABELS}, r"y is one array, but the model has several outputs \['output_0', 'output_1'\]"),
    ({}, {"y": [LABELS]}, r"y is a list of 1, but there are 2 outputs"),
    ({}, {"y": {"output_0": LABELS, "outptu_1": VALUES}}, r"unknown key\(s\) \['outptu_1'\].*Did you mean 'output_1'"),
    ({}, {"y": [LABELS, VALUES], "sample_weight": [WEIGHTS]}, r"sample_weight is a list of 1, but there are 2"),
    ({}, {"y": [LABELS, VALUES], "class_weight": {0: 2.0}}, r"class_weight is only supported for a model with a single"),
    ({"loss": "mse"}, {"y": VALUES}, r"loss 'mean_squared_error' takes one and y is one array"),
    ({"loss": "mse", "metrics": ["mae"]}, {"y": [VALUES, VALUES]}, r"metrics=\['mae'\]\) for a model with 2 outputs"),
])
def test_structure_errors_before_any_step(compile_args, fit_args, message):
    model = two_heads(optimizer="sgd", **compile_args)
    before = weights_of(model)
    with pytest.raises(ValueError, match=message):
        model.fit(X, verbose=0, **fit_args)
    for a, b in zip(before, weights_of(model)):
        assert torch.equal(a, b)


def test_dict_module_needs_losses_by_name():
    model = ew.Model(DictHeads(), device="cpu")
    model.compile(optimizer="sgd", loss={"lable": "sparse_categorical_crossentropy", "box": "mse"})
    with pytest.raises(ValueError, match=r"lacks \['lable'\].*Did you mean 'label'"):
        model.fit(X, {"lable": LABELS, "box": VALUES}, verbose=0)
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"])
    with pytest.raises(ValueError, match=r"a dict with keys \['label', 'box'\]"):
        model.fit(X, [LABELS, VALUES], verbose=0)


@pytest.mark.parametrize("compile_args, message", [
    ({"loss_weights": [1.0]}, r"1 weight\(s\) for 2 outputs"),
    ({"loss_weights": {"output_3": 1.0}}, r"names output\(s\) \['output_3'\].*Did you mean"),
    ({"loss_weights": [1.0, -1.0]}, r"must be a number >= 0"),
    ({"loss": "mse", "loss_weights": 0.5}, r"loss_weights weighs the losses of several outputs"),
    ({"metrics": {"ouput_0": ["accuracy"]}}, r"compile\(metrics=...\) names output\(s\) \['ouput_0'\].*'output_0'"),
    ({"metrics": ["accuracy"]}, r"give one entry per output"),
    ({"loss": []}, r"the list of losses is empty"),
    ({"loss": [None, None]}, r"every output's loss is None"),
    ({"loss": ["mse", "msee"]}, r"Unknown loss 'msee'"),
])
def test_compile_errors(compile_args, message):
    with pytest.raises(ValueError, match=message):
        two_heads(**compile_args)


def test_the_page_example_runs_and_prints_what_the_page_shows(capsys, tmp_path, monkeypatch):
    page = (Path(__file__).parents[1] / "docs" / "multi-output.md").read_text(encoding="utf-8")
    code = page.split("```python\n")[1].split("```")[0]
    shown = page.split("```text\n")[1].split("```")[0].splitlines()
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/multi-output.md", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == shown[0]  # the run plan, with how the total is formed
    for line in printed:  # the keys, the evaluate order, the predict structure (values depend on the machine)
        if line.startswith(("[", "{")) and not line[1:2].isdigit():
            assert line in shown
    assert len(printed) == len(shown)


def test_a_callable_given_once_takes_the_whole_structures():
    model = two_heads(loss=lambda y, p: F.cross_entropy(p[0], y[0]) + (p[1] - y[1]).square().mean())
    logs = model.evaluate(X, (LABELS, VALUES), verbose=0, return_dict=True)
    ce, se, _, _ = reference(model.module)
    assert logs == pytest.approx({"loss": ce + se}, rel=1e-5)
    model = two_heads(loss=[lambda y, p: F.cross_entropy(p, y, reduction="none"), "mse"])  # per output
    assert sorted(model.evaluate(X, (LABELS, VALUES), verbose=0, return_dict=True)) == [
        "loss", "output_0_loss", "output_1_loss"]
