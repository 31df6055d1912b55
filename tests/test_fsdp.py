"""compile(strategy="fsdp"): 2 processes on CPU (gloo) through torchrun, against one process and against
DDP, with the same script as tests/test_distributed.py (and its timeout, so a hang fails the test).

The module is mostly ``Blocks`` of ``tests/distributed/ddp_script.py``: a ModuleList of two blocks (each an
FSDP unit) and a head whose 3 rows split 2 + 1 over the ranks, trained with Adam (optimizer state) and a
per-parameter ``clipnorm`` that binds (each norm is reduced over the shards).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import classifier, make_classification
from test_distributed import SCRIPT, close, ranks, single, torchrun

# validation in batches of 5 (21 samples: 3 batches on rank 0, 2 on rank 1), and an evaluate before any
# training step (3 samples one by one: 2 on rank 0, 1 on rank 1): no collective may run per batch
BLOCKS = ("--net", "blocks", "--optimizer", "adam", "--clipnorm", "0.1", "--val-batch", "5", "--eval-first")


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """One process at the global batch of the 2-process runs (2 x 8), writing the same files."""
    tmp = tmp_path_factory.mktemp("one")
    record = single(tmp / "s", *BLOCKS, "--batch-size", "16", "--mode", "files", "--folder", str(tmp / "files"),
                    "--roundtrip")
    return record, tmp / "files"


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """2 processes with FSDP, batch 8 each, writing the files and reading them back on every rank."""
    tmp = tmp_path_factory.mktemp("two")
    torchrun(tmp / "f", *BLOCKS, "--strategy", "fsdp", "--batch-size", "8", "--mode", "files",
             "--folder", str(tmp / "files"), "--roundtrip")
    return ranks(tmp / "f"), tmp / "files"


def test_two_processes_match_one_process_and_ddp(tmp_path, one, two):
    (ref, _), ((f0, f1), _) = one, two
    torchrun(tmp_path / "d", *BLOCKS, "--strategy", "ddp", "--batch-size", "8")
    d0, _ = ranks(tmp_path / "d")
    assert f0["sharded"] and f0["same_module"] and not d0["sharded"]  # model.module is the user's object
    assert f0["keys"] == ref["keys"]
    assert f0["history"] == f1["history"] and f0["weights"] == f1["weights"]  # full weights on every rank
    for key in ref["history"]:  # the loss trajectory (and metrics) of one process, and of DDP
        assert close(f0["history"][key], ref["history"][key]), key
        assert close(f0["history"][key], d0["history"][key]), key
    for key in ref["weights"]:
        assert close(f0["weights"][key], ref["weights"][key]) and close(f0["weights"][key], d0["weights"][key])
    assert close(f0["evaluate"]["loss"], ref["evaluate"]["loss"])
    assert close(f0["evaluate_first"]["loss"], ref["evaluate_first"]["loss"])
    assert f0["prediction"] == f1["prediction"] and close(f0["prediction"], ref["prediction"])
    assert close(f0["reloaded_prediction"], f0["prediction"], 1e-6)  # load_weights on every rank
    assert f0["writes"] and f1["writes"] == []


def test_saved_files_are_full_and_load_into_a_plain_module(one, two):
    (_, ref_files), (_, files) = one, two
    weights, ref_weights = load(files / "final.pt"), load(ref_files / "final.pt")
    assert list(weights) == list(ref_weights)
    spec = importlib.util.spec_from_file_location("ddp_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    plain = script.Blocks()
    plain.load_state_dict(weights)  # strict: the full, unsharded state_dict of the module
    for key, value in ref_weights.items():
        assert torch.allclose(weights[key], value, atol=1e-5)
    for name in ("best.pt", "rt/full.pt"):  # full checkpoints: the optimizer state as in one process
        ckpt, ref_ckpt = load(files / name), load(ref_files / name)
        assert list(ckpt["module"]) == list(ref_ckpt["module"])
        state, ref_state = ckpt["optimizer"]["torch"]["state"], ref_ckpt["optimizer"]["torch"]["state"]
        assert sorted(state) == sorted(ref_state) and ckpt["optimizer"]["iterations"] == ref_ckpt["optimizer"]["iterations"]
        for index, entry in ref_state.items():
            for key, value in entry.items():
                assert state[index][key].shape == value.shape
                assert torch.allclose(state[index][key], value, atol=1e-5), (name, index, key)
    full, again = load(files / "rt" / "full.pt"), load(files / "rt" / "again.pt")  # model.load, then save
    for index, entry in full["optimizer"]["torch"]["state"].items():
        for key, value in entry.items():
            assert torch.equal(again["optimizer"]["torch"]["state"][index][key], value)


# The nn.Sequential (each Linear a unit, the root none). 64 samples, global batch 8: 8 batches per epoch in
# groups of 3, 3 and 2 (the last one cut short). A torch SGD with momentum built before compile, with two
# param groups at different rates (rebuilt over the shards), and a global clip norm that binds. A backup
# every 3 batches: after batches 3 and 6 of epoch 1 (between groups), then inside groups (after batches 1,
# 4 and 7 of epoch 2)
ACCUMULATE = ("--net", "mlp", "--optimizer", "torch", "--accumulate", "3", "--clip", "0.5", "--mode", "resume",
              "--save-freq", "3", "--val-batch", "5", "--eval-first")


@pytest.fixture(scope="module")
def accumulating(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accumulating")
    torchrun(tmp / "f", *ACCUMULATE, "--strategy", "fsdp", "--batch-size", "4", "--folder", str(tmp / "backup"))
    return ranks(tmp / "f")


def test_accumulation_with_a_partial_group_and_clipping(tmp_path, accumulating):
    ref = single(tmp_path / "s", *ACCUMULATE, "--batch-size", "8", "--folder", str(tmp_path / "backup"))
    f0, f1 = accumulating
    assert f0["weights"] == f1["weights"]
    for key in ref["weights"]:
        assert close(f0["weights"][key], ref["weights"][key]), key
    assert close(f0["history"]["loss"], ref["history"]["loss"])


def test_resume_after_a_kill_inside_an_accumulation_group(tmp_path, accumulating):
    args = (*ACCUMULATE, "--strategy", "fsdp", "--batch-size", "4", "--folder", str(tmp_path / "backup"))
    # killed in batch 2 of epoch 2: the last backup (after batch 1) holds 1 batch of the group 1-3
    crashed = torchrun(tmp_path / "d", *args, "--crash-at", "10", check=False)
    assert crashed.returncode != 0 and (tmp_path / "backup" / "backup.pt").exists()
    torchrun(tmp_path / "d", *args)
    (a0, a1), (b0, _) = ranks(tmp_path / "d"), accumulating
    assert a0["history"] == b0["history"] and a0["weights"] == b0["weights"] and a1["weights"] == a0["weights"]


def test_strategy_is_checked_at_compile():
    with pytest.raises(ValueError, match="strategy must be 'ddp' or 'fsdp', got 'zero'"):
        classifier(strategy="zero")
    with pytest.raises(ValueError, match="16-mixed.*strategy='fsdp'.*bf16-mixed"):
        classifier(strategy="fsdp", precision="16-mixed")


def test_fsdp_in_one_process_trains_the_plain_module():
    x, y = make_classification()
    histories = []
    for strategy in ("ddp", "fsdp"):
        torch.manual_seed(0)
        model = classifier(strategy=strategy)
        histories.append(model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1).history)
        assert type(model.module) is torch.nn.Sequential and model.strategy == strategy
    assert histories[0] == histories[1] and np.isfinite(histories[1]["loss"]).all()
