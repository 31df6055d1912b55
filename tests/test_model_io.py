"""save_weights / load_weights / save / load: formats, safety, clear mismatch errors."""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import classifier, make_classification
from torch import nn

import epochwise as ew


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_round_trip(tmp_path, suffix):
    a, b = classifier(), classifier()
    path = tmp_path / f"w{suffix}"
    a.save_weights(path)
    b.load_weights(path)
    for k, v in a.module.state_dict().items():
        assert torch.equal(v, b.module.state_dict()[k])
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file of the atomic write is gone


def test_tied_weights_save_to_safetensors(tmp_path):
    lin = nn.Linear(3, 3)
    net = nn.Sequential(lin, lin)
    model = ew.Model(net, device="cpu")
    model.save_weights(tmp_path / "tied.safetensors")
    model.load_weights(tmp_path / "tied.safetensors")


@pytest.mark.parametrize("name", ["best-model.h5", "m.keras", "m.weights.h5", "m.bin"])
def test_keras_and_unknown_names_rejected(tmp_path, name):
    with pytest.raises(ValueError, match=r"\.pt"):
        classifier().save_weights(tmp_path / name)


def test_pickled_payload_is_refused_and_no_code_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"weight": Evil()}, fh)
    with pytest.raises(ValueError, match="pickled Python objects"):
        classifier().load_weights(path)
    assert not marker.exists()


def test_mismatch_lists_keys_and_shapes(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"0.weight": torch.zeros(8, 5), "extra": torch.zeros(1)}, path)
    with pytest.raises(ValueError) as info:
        classifier().load_weights(path)
    msg = str(info.value)
    assert "missing keys" in msg and "2.bias" in msg
    assert "unexpected keys ['extra']" in msg
    assert "0.weight: file (8, 5) vs module (8, 4)" in msg


def test_full_checkpoint_restores_optimizer(tmp_path):
    x, y = make_classification(16)
    a = classifier()
    a.fit(x, y, epochs=2, verbose=0)
    a.save(tmp_path / "ckpt.pt", extra={"epoch": 2})
    b = classifier()
    assert b.load(tmp_path / "ckpt.pt") == {"epoch": 2}
    assert b.optimizer.iterations == a.optimizer.iterations
    b.load_weights(tmp_path / "ckpt.pt")  # a full checkpoint also serves load_weights
    with pytest.raises(ValueError, match=r"use '.*\.pt'"):
        a.save(tmp_path / "ckpt.safetensors")


def test_save_over_directory_is_an_error_and_keeps_it(tmp_path):
    folder = tmp_path / "dir.pt"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="directory"):
        classifier().save_weights(folder)
    assert folder.is_dir()


def test_get_and_set_weights_are_copies():
    model = classifier()
    w = model.get_weights()
    with torch.no_grad():
        model.module[0].weight.add_(1.0)
    assert not torch.equal(w["0.weight"], model.module[0].weight)
    model.set_weights(w)
    assert torch.equal(w["0.weight"], model.module[0].weight)
