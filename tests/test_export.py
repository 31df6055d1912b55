"""model.export(): torch.export and ONNX files that take any batch size and give model.predict's outputs
(docs/model-tools.md), checked with torch.export.load and onnxruntime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew
from epochwise.io import files

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mnist_mlp.py"


def tutorial_mlp() -> nn.Module:
    """The Keras course's MLP exactly as examples/mnist_mlp.py builds it (784-300-200-100-10, softmax)."""
    spec = importlib.util.spec_from_file_location("mnist_mlp_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(784)


class TwoInputs(nn.Module):
    """fit passes a tuple x as positional arguments: forward(x, z)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 4), nn.Linear(3, 4)
        self.drop = nn.Dropout(0.5)  # exported in eval mode: no dropout

    def forward(self, x, z):
        return torch.tanh(self.drop(self.a(x)) + self.b(z))


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28), dtype=np.float32)


def pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")


@pytest.fixture(scope="module")
def mlp() -> ew.Model:
    torch.manual_seed(0)
    model = ew.Model(tutorial_mlp(), device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images(24, 0), np.arange(24) % 10, batch_size=8, epochs=1, verbose=0)  # its inputs: (None, 28, 28)
    return model


@pytest.fixture(scope="module")
def two() -> ew.Model:
    torch.manual_seed(0)
    model = ew.Model(TwoInputs(), device="cpu")
    model.compile(optimizer="adam", loss="mse")
    model.fit(pair(16, 1), np.zeros((16, 4), "float32"), batch_size=4, epochs=1, verbose=0)
    return model


# --- format="torch" ------------------------------------------------------------------------------
def run_program(path: Path, *inputs: np.ndarray) -> np.ndarray:
    program = torch.export.load(str(path)).module()
    with torch.no_grad():
        return program(*(torch.from_numpy(a) for a in inputs)).numpy()


def test_torch_export_of_the_tutorial_mlp_matches_predict(mlp, tmp_path):
    path = tmp_path / "mlp.pt2"
    assert mlp.export(path, verbose=False) == str(path)  # the input shape fit saw
    for n in (1, 5, 9):  # traced at 2: the batch dimension is dynamic
        x = images(n, n)
        np.testing.assert_allclose(run_program(path, x), mlp.predict(x, verbose=0), atol=1e-5, rtol=0)


def test_torch_export_of_two_inputs_and_a_signature(two, tmp_path):
    two.module.train()
    path = tmp_path / "two.pt2"
    two.export(path, input_signature=[(6,), (3,)], verbose=False)
    assert two.module.training and two.module.drop.training  # its mode is put back
    for n in (1, 7):
        x, z = pair(n, n)
        np.testing.assert_allclose(run_program(path, x, z), two.predict((x, z), verbose=0), atol=1e-5, rtol=0)


def test_keyword_inputs_from_an_example(tmp_path):
    class Keywords(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(20, 4)

        def forward(self, tokens, weight):
            return (self.emb(tokens) * weight[..., None]).sum(1)

    model = ew.Model(Keywords(), device="cpu")
    path = tmp_path / "kw.pt2"
    example = {"tokens": np.zeros((3, 5), "int64"), "weight": np.ones((3, 5), "float32")}
    model.export(path, example=example, verbose=False)
    rng = np.random.default_rng(0)
    tokens, weight = rng.integers(0, 20, (4, 5)), rng.random((4, 5), dtype=np.float32)
    program = torch.export.load(str(path)).module()
    with torch.no_grad():
        got = program(tokens=torch.from_numpy(tokens), weight=torch.from_numpy(weight)).numpy()
    np.testing.assert_allclose(got, model.predict({"tokens": tokens, "weight": weight}, verbose=0), atol=1e-6)


def test_export_prints_what_it_wrote(capsys, tmp_path):
    model = ew.Model(nn.Linear(3, 2), device="cpu")
    model.export(tmp_path / "lin.pt2", input_signature=(3,))
    out = capsys.readouterr().out
    assert str(tmp_path / "lin.pt2") in out and "(None, 3)" in out


# --- format="onnx" -------------------------------------------------------------------------------
def onnx_session(path: Path):
    ort = pytest.importorskip("onnxruntime", reason="checking ONNX files needs onnxruntime: pip install "
                              "'epochwise[onnx]'")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript", "onnxruntime")),
    reason="ONNX export needs onnx and onnxscript, checking it onnxruntime: pip install 'epochwise[onnx]'")


@needs_onnx
def test_onnx_export_of_the_tutorial_mlp_matches_predict(mlp, tmp_path):
    path = tmp_path / "mlp.onnx"
    mlp.export(path, format="onnx", verbose=False)
    session = onnx_session(path)
    (name,) = [i.name for i in session.get_inputs()]
    assert session.get_inputs()[0].shape[1:] == [28, 28] and isinstance(session.get_inputs()[0].shape[0], str)
    for n in (1, 6, 11):
        x = images(n, 10 + n)
        (got,) = session.run(None, {name: x})
        np.testing.assert_allclose(got, mlp.predict(x, verbose=0), atol=1e-5, rtol=0)


@needs_onnx
def test_onnx_export_of_two_inputs(two, tmp_path):
    path = tmp_path / "two.onnx"
    two.export(path, format="onnx", verbose=False)
    session = onnx_session(path)
    names = [i.name for i in session.get_inputs()]
    assert names == ["input_0", "input_1"]
    for n in (1, 5):
        x, z = pair(n, 20 + n)
        (got,) = session.run(None, {"input_0": x, "input_1": z})
        np.testing.assert_allclose(got, two.predict((x, z), verbose=0), atol=1e-5, rtol=0)


# --- errors and the file ---------------------------------------------------------------------------
def test_unknown_format_lists_the_formats(tmp_path):
    model = ew.Model(nn.Linear(3, 2), device="cpu")
    with pytest.raises(ValueError, match=r"format='tf_saved_model'.*'torch'.*'onnx'.*convert"):
        model.export(tmp_path / "m", format="tf_saved_model", input_signature=(3,))
    with pytest.raises(ValueError, match=r"'torch', 'onnx'"):
        model.export(tmp_path / "m.pt2", format="pt2", input_signature=(3,))


def test_torch_format_needs_a_pt2_name(tmp_path):
    model = ew.Model(nn.Linear(3, 2), device="cpu")
    with pytest.raises(ValueError, match=r"\.pt2.*m\.pt2"):
        model.export(tmp_path / "m.pt", input_signature=(3,))


def test_no_shape_says_how_to_pass_one(tmp_path):
    model = ew.Model(nn.Linear(3, 2), device="cpu")
    with pytest.raises(ValueError, match=r"input_signature=.*example=.*fit"):
        model.export(tmp_path / "m.pt2")
    assert not list(tmp_path.iterdir())


def test_missing_onnx_says_which_extra(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    model = ew.Model(nn.Linear(3, 2), device="cpu")
    with pytest.raises(ImportError, match=r"onnxscript.*pip install epochwise\[onnx\]"):
        model.export(tmp_path / "m.onnx", format="onnx", input_signature=(3,))


def test_a_failed_trace_or_write_leaves_the_old_file(monkeypatch, tmp_path):
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x  # control flow on values: not exportable as one graph

    path = tmp_path / "m.pt2"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="could not trace"):
        ew.Model(Branchy(), device="cpu").export(path, input_signature=(3,), verbose=False)

    def interrupted(target):
        raise OSError(5, "the disk went away")

    monkeypatch.setattr(files, "before_replace", interrupted)
    with pytest.raises(OSError):
        ew.Model(nn.Linear(3, 2), device="cpu").export(path, input_signature=(3,), verbose=False)
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["m.pt2"]
