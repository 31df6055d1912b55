"""model.summary(): Keras's table and totals (docs/model-tools.md), checked against Keras's formulas,
torch's own parameter counts and shapes, and the module's state before and after."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mnist_mlp.py"


def tutorial_mlp() -> nn.Module:
    """The Keras course's MLP exactly as examples/mnist_mlp.py builds it (784-300-200-100-10)."""
    spec = importlib.util.spec_from_file_location("mnist_mlp_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(784)


def keras_dense(inputs: int, units: int) -> int:
    return inputs * units + units  # Keras's Dense: kernel (inputs, units) and bias (units,)


def keras_size(n_bytes: float) -> str:
    """Keras's readable_memory_size: powers of 1024, two decimals."""
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024:
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.2f} TB"


def lines_of(model: ew.Model, *args, **kwargs) -> list[str]:
    out: list[str] = []
    text = model.summary(*args, print_fn=out.append, **kwargs)
    assert text == "\n".join(out)
    return out


def table_rows(lines: list[str]) -> list[list[str]]:
    """The cells of each body row that starts a layer (rich's │ separators)."""
    rows = []
    for line in lines:
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            if cells[0]:
                rows.append(cells)
    return rows


def totals(lines: list[str]) -> dict[str, tuple[int, str]]:
    found = {}
    for line in lines:
        m = re.match(r" (Total|Trainable|Non-trainable) params: ([\d,]+) \((.+)\)$", line)
        if m:
            found[m.group(1)] = (int(m.group(2).replace(",", "")), m.group(3))
    return found


def test_tutorial_mlp_totals_equal_keras_and_torch():
    module = tutorial_mlp()
    model = ew.Model(module, device="cpu")
    lines = lines_of(model)
    expected = keras_dense(784, 300) + keras_dense(300, 200) + keras_dense(200, 100) + keras_dense(100, 10)
    assert expected == sum(p.numel() for p in module.parameters())
    size = keras_size(expected * 4)  # float32
    assert totals(lines) == {"Total": (expected, size), "Trainable": (expected, size), "Non-trainable": (0, "0.00 B")}
    # Keras 3 prints, for the same Sequential: "Total params: 316,810 (1.21 MB)"
    assert " Total params: 316,810 (1.21 MB)" in lines


def test_layout_has_keras_columns_and_a_row_per_layer():
    module = tutorial_mlp()
    lines = lines_of(ew.Model(module, device="cpu"), (28, 28))
    assert lines[0] == 'Model: "Sequential"'
    header = next(line for line in lines if "Layer (type)" in line)
    assert header.index("Layer (type)") < header.index("Output Shape") < header.index("Param #")
    rows = table_rows(lines)
    children = list(module.named_children())
    assert [r[0] for r in rows] == [f"{name} ({type(child).__name__})" for name, child in children]
    x = torch.zeros(3, 28, 28)
    for (_, child), row in zip(children, rows):
        x = child(x)
        assert row[1] == f"(None, {x.shape[1]})"  # the batch dimension printed as None, as Keras does
        assert row[2] == f"{sum(p.numel() for p in child.parameters()):,}"


def test_without_shapes_prints_question_marks_and_says_how_to_get_them():
    lines = lines_of(ew.Model(tutorial_mlp(), device="cpu"))
    assert all(row[1] == "?" for row in table_rows(lines))
    hint = lines[-1]
    assert "input_shape=" in hint and "example=" in hint and "fit" in hint


def test_shapes_seen_by_fit_are_used_arrays_and_dataloader():
    x = np.random.rand(20, 6).astype("float32")
    y = np.random.randint(0, 3, 20)
    model = ew.Model(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), device="cpu")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert [r[1] for r in table_rows(lines_of(model))] == ["(None, 5)", "(None, 5)", "(None, 3)"]

    model = ew.Model(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), device="cpu")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    data = torch.utils.data.TensorDataset(torch.rand(10, 3, 4), torch.randint(0, 3, (10,)))
    model.fit(torch.utils.data.DataLoader(data, batch_size=4), epochs=1, verbose=0)
    lines = lines_of(model)
    assert [r[1] for r in table_rows(lines)] == ["(None, 12)", "(None, 3)"]
    assert "(None, 3, 4)" in lines[-1] and "fit" in lines[-1]


@pytest.mark.parametrize("call", ["train_on_batch", "test_on_batch", "predict_on_batch"])
def test_shapes_seen_by_the_single_batch_calls_are_used(call):
    model = ew.Model(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), device="cpu")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.random.rand(5, 3, 4).astype("float32"), np.random.randint(0, 3, 5)
    getattr(model, call)(x) if call == "predict_on_batch" else getattr(model, call)(x, y)
    lines = lines_of(model)
    assert [r[1] for r in table_rows(lines)] == ["(None, 12)", "(None, 3)"]
    assert "(None, 3, 4)" in lines[-1] and call in lines[-1]


def test_batchnorm_running_stats_count_as_non_trainable_like_keras():
    # Keras: Dense(4) on 8 inputs + BatchNormalization -> Total 52, Trainable 44, Non-trainable 8
    module = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4))
    lines = lines_of(ew.Model(module, device="cpu"), (8,))
    dense = keras_dense(8, 4)
    assert totals(lines) == {"Total": (dense + 16, keras_size(4 * (dense + 16))),
                             "Trainable": (dense + 8, keras_size(4 * (dense + 8))),
                             "Non-trainable": (8, keras_size(32))}
    assert table_rows(lines)[1][2] == "16"  # gamma, beta, running mean and variance; not num_batches_tracked


def test_frozen_parameters_are_non_trainable_and_marked():
    module = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    for p in module[0].parameters():
        p.requires_grad_(False)
    lines = lines_of(ew.Model(module, device="cpu"), (8,), show_trainable=True)
    frozen, trained = keras_dense(8, 4), keras_dense(4, 2)
    assert totals(lines)["Trainable"][0] == trained == sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert totals(lines)["Non-trainable"][0] == frozen
    assert [r[3] for r in table_rows(lines)] == ["N", "-", "Y"]


class Tied(nn.Module):
    """A language-model head tied to its embedding, an LSTM (tuple outputs), a dict output, own parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.block = nn.Sequential(nn.Linear(16, 8), nn.Tanh())
        self.head = nn.Linear(8, 50, bias=False)
        self.head.weight = self.emb.weight
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, tokens):
        h, (hn, cn) = self.lstm(self.emb(tokens))
        return {"logits": self.head(self.block(h[:, -1])) * self.scale, "state": (hn, cn)}


def test_tied_weights_counted_once_and_said():
    module = Tied()
    lines = lines_of(ew.Model(module, device="cpu"))
    assert totals(lines)["Total"][0] == sum(p.numel() for p in module.parameters())  # torch dedups tied ones
    shared = next(line for line in lines if "Shared params" in line)
    assert "emb.weight" in shared and "head.weight" in shared and f"{50 * 8:,}" in shared
    own = next(r for r in table_rows(lines) if r[0].startswith("self"))
    assert own[0] == "self (Tied)" and own[2] == "1"


def test_tuple_and_dict_outputs_are_written_like_keras():
    module = Tied()
    lines = lines_of(ew.Model(module, device="cpu"), example=torch.randint(0, 50, (5, 7)), line_length=200)
    rows = {r[0].split(" ")[0]: r for r in table_rows(lines)}
    with torch.no_grad():
        h, (hn, _) = module.lstm(module.emb(torch.zeros(5, 7, dtype=torch.long)))
    assert h.shape == (5, 7, 16) and hn.shape == (2, 5, 16)  # layers x batch x hidden: batch is the middle dim
    assert rows["lstm"][1] == "((None, 7, 16), ((2, None, 16), (2, None, 16)))"
    assert rows["emb"][1] == "(None, 7, 8)"
    assert rows["self"][1] == "{logits: (None, 50), state: ((2, None, 16), (2, None, 16))}"


def test_a_module_that_takes_one_batch_size_still_gets_its_shapes():
    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Linear(4, 3)

        def forward(self, x):
            return self.out(x.reshape(2, 4))  # only batches of 2: the pass at another size fails

    lines = lines_of(ew.Model(Fixed(), device="cpu"), (4,))
    assert table_rows(lines)[0][1] == "(None, 3)"


def test_expand_nested_shows_the_tree():
    module = Tied()
    flat = [r[0] for r in table_rows(lines_of(ew.Model(module, device="cpu")))]
    nested = [r[0] for r in table_rows(lines_of(ew.Model(module, device="cpu"), expand_nested=True))]
    assert "block (Sequential)" in flat and not any("└" in name for name in flat)
    i = nested.index("block (Sequential)")
    assert nested[i + 1: i + 3] == ["└ 0 (Linear)", "└ 1 (Tanh)"]


class Noisy(nn.Module):
    """Draws random numbers and has BatchNorm, so a pass in train mode would change its state."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.drop(self.bn(x + torch.rand_like(x))))


def test_summary_changes_nothing():
    module = Noisy()
    module.train()
    module.out.eval()  # a submodule's own mode is kept too
    model = ew.Model(module, device="cpu")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rng = torch.get_rng_state()
    model.summary((4,), print_fn=lambda line: None)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert module.training and module.bn.training and not module.out.training
    assert all(p.grad is None for p in module.parameters())


def test_prints_lines_and_returns_the_text(capsys):
    model = ew.Model(nn.Linear(3, 2), device="cpu")
    text = model.summary((3,))
    printed = capsys.readouterr().out
    assert printed == text + "\n"
    assert table_rows(text.split("\n")) == [["module (Linear)", "(None, 2)", "8"]]
    model.summary((3,), print_fn=lambda line: None)
    assert capsys.readouterr().out == ""


def test_prints_only_on_the_main_process(capsys, monkeypatch):
    monkeypatch.setattr(ew.distributed, "is_main_process", lambda: False)
    text = ew.Model(nn.Linear(3, 2), device="cpu").summary((3,))
    assert capsys.readouterr().out == "" and "Total params: 8" in text


def test_several_inputs_and_example_of_one_sample():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

        def forward(self, x, z):
            return self.a(x) + self.b(z)

    model = ew.Model(Two(), device="cpu")
    assert [r[1] for r in table_rows(lines_of(model, [(4,), (2,)]))] == ["(None, 3)", "(None, 3)"]
    lines = lines_of(model, example=(np.zeros((1, 4), "float32"), np.zeros((1, 2), "float32")))
    assert [r[1] for r in table_rows(lines)] == ["(None, 3)", "(None, 3)"]
    assert "((None, 4), (None, 2))" in lines[-1]


def test_optimizer_state_is_its_own_line_outside_the_total():
    x, y = np.random.rand(16, 5).astype("float32"), np.random.rand(16, 2).astype("float32")
    model = ew.Model(nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2)), device="cpu")
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    lines = lines_of(model)
    n = sum(p.numel() for p in model.module.parameters())
    assert totals(lines)["Total"][0] == n
    tensors = len(list(model.module.parameters()))  # torch's Adam: exp_avg, exp_avg_sq and a step per tensor
    assert any(line.startswith(f" Optimizer params: {2 * n + tensors:,} ") for line in lines)


@pytest.mark.parametrize("kwargs, words", [
    ({"input_shape": "28"}, ["input_shape=", "one sample's shape"]),
    ({"input_shape": (28, None)}, ["input_shape=", "any valid size"]),
    ({"input_shape": (5,)}, ["forward failed", "(None, 5)", "input_shape="]),
    ({"input_shape": (3,), "example": np.zeros((2, 3))}, ["not both"]),
    ({"example": "text"}, ["example=", "holds no array"]),
    ({"print_fn": "print"}, ["print_fn"]),
    ({"positions": [0.5, 0.4, 1.0]}, ["positions="]),
    ({"line_length": 8}, ["line_length=8"]),
])
def test_bad_arguments_say_what_to_do(kwargs, words):
    model = ew.Model(nn.Sequential(nn.Linear(3, 2)), device="cpu")
    with pytest.raises(ValueError) as err:
        model.summary(**kwargs)
    for word in words:
        assert word in str(err.value)
