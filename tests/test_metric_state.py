"""Declared metric state (``Metric.add_state``): defaults, reset, state_dict round trip, merging by each
reduction, settings never reduced, and a real 2-process gloo sync.

References: scikit-learn, plain torch on all the data at once, and closed forms.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sklearn.metrics import precision_score
from torch import nn

import epochwise as ew
import epochwise.metrics as M

T = torch.tensor
SCRIPT = Path(__file__).parent / "distributed" / "metric_state_script.py"
_spec = importlib.util.spec_from_file_location("metric_state_script", SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)
Extremes, Counted = script.Extremes, script.Counted


def parts(n, cuts):
    """Slices of ``range(n)`` cut at ``cuts``: the shards of fake ranks (uneven, one may be empty)."""
    bounds = [0, *cuts, n]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def merged(make, update, shards):
    """One metric per shard, updated on it, then merged into the first (as the ranks' states are)."""
    metrics = [make() for _ in shards]
    for m, sl in zip(metrics, shards):
        update(m, sl)
    metrics[0].merge_state(metrics[1:])
    return metrics[0]


# --- (a) defaults, reset, state_dict --------------------------------------------------------------
def test_declared_defaults_reset_and_state_dict_round_trip():
    m = Extremes()
    assert m.declared_states == {"total": "sum", "seen": "sum", "high": "max", "low": "min", "values": "cat"}
    fresh = m.state_dict()
    assert fresh == {"total": 0.0, "seen": 0, "high": -math.inf, "low": math.inf, "values": []}
    p = T([0.5, -1.0, 3.0, 2.0])
    m.update_state(None, p[:2])
    saved = m.state_dict()
    assert "scale" not in saved  # a setting, not state
    resumed = Extremes()
    resumed.load_state_dict(saved)
    for metric in (m, resumed):  # the resumed metric continues exactly where the first one was
        metric.update_state(None, p[2:])
        assert float(metric.result()) == pytest.approx(float(2 * p.sum() / 4))
        assert (float(metric.high), float(metric.low), metric.seen) == (6.0, -2.0, 4)
        assert torch.equal(torch.cat(metric.values), 2 * p)
    m.reset_state()
    assert m.state_dict() == fresh and m.scale == 2.0
    with pytest.raises(ValueError, match="declares"):
        m.load_state_dict({"total": torch.zeros(())})


def test_built_in_metrics_save_only_their_declared_state():
    y, p = T([[1.0], [0.0], [1.0]]), T([[0.9], [0.2], [0.3]])
    onehot, scores = torch.eye(3), T([[0.5, 0.2, 0.3], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    cases = [
        (lambda: M.Precision(thresholds=0.25), {"counts"}, y, p),
        (lambda: M.AUC(num_thresholds=50), {"buckets"}, y, p),
        (M.MeanAbsoluteError, {"totals", "count"}, y, p),
        (lambda: M.TopKCategoricalAccuracy(k=2), {"totals", "count"}, onehot, scores),
    ]
    for make, keys, target, pred in cases:
        metric = make()
        metric.update_state(target, pred)
        state = metric.state_dict()
        assert set(state) == keys == set(metric.declared_states), metric
        restored = make()
        restored.load_state_dict(state)
        assert float(restored.result()) == float(metric.result()) > 0.0, metric
        metric.reset_state()
        assert float(metric.result()) == 0.0, metric


def test_add_state_checks_its_arguments():
    m = ew.metrics.Metric("m")
    with pytest.raises(ValueError, match="reduction must be one of 'sum', 'max', 'min', 'cat'"):
        m.add_state("a", torch.zeros(2), "mean")
    with pytest.raises(ValueError, match="reduction='cat'"):
        m.add_state("a", [], "sum")
    with pytest.raises(ValueError, match="concatenated"):
        m.add_state("a", 0, "cat")
    with pytest.raises(ValueError, match="is taken by"):
        m.add_state("result", torch.zeros(()))
    with pytest.raises(TypeError, match="default must be"):
        m.add_state("a", "zero")


# --- (b) each reduction kind against the metric on all the data ------------------------------------
def test_merged_auc_precision_and_mean_equal_the_metric_on_all_data():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 1, generator=g) > 0.5).float()
    p = torch.rand(40, 1, generator=g)
    w = torch.rand(40, generator=g)
    shards = parts(40, [17, 17, 31])  # 4 fake ranks, one of them empty

    def upd(m, sl, weighted=True):
        if sl.stop > sl.start:
            m.update_state(y[sl], p[sl], w[sl] if weighted else None)

    whole = M.AUC()
    whole.update_state(y, p, w)
    auc = merged(M.AUC, upd, shards)
    assert torch.equal(auc.buckets, whole.buckets)  # counts are sums of small integers times weights: exact
    assert float(auc.result()) == pytest.approx(float(whole.result()), abs=1e-6)
    precision = merged(lambda: M.Precision(thresholds=0.5), lambda m, sl: upd(m, sl, weighted=False), shards)
    expected = precision_score(y.numpy().ravel(), (p.numpy().ravel() > 0.5).astype(int))
    assert float(precision.result()) == pytest.approx(expected, abs=1e-6)
    mean = merged(M.Mean, lambda m, sl: m.update_state(p[sl].reshape(-1), w[sl]), shards)
    assert float(mean.result()) == pytest.approx(float((p.reshape(-1) * w).sum() / w.sum()), abs=1e-6)
    unweighted = merged(M.Mean, lambda m, sl: m.update_state(p[sl].reshape(-1)), shards)
    assert unweighted.count == 40 and float(unweighted.result()) == pytest.approx(float(p.mean()), abs=1e-6)


def test_merged_sum_max_min_and_cat_states_follow_their_reduction():
    p = T([0.5, -1.0, 3.0, 2.0, -4.0, 1.5, 0.25])
    shards = parts(7, [3, 3, 5])
    m = merged(Extremes, lambda m, sl: m.update_state(None, p[sl]) if sl.stop > sl.start else None, shards)
    assert (float(m.total), m.seen) == (pytest.approx(float(2 * p.sum())), 7)
    assert (float(m.high), float(m.low)) == (6.0, -8.0)
    assert len(m.values) == 1 and torch.equal(m.values[0], 2 * p)  # concatenated in rank order
    assert m.scale == 2.0


def test_merge_state_refuses_another_kind_of_metric():
    with pytest.raises(ValueError, match="its own class"):
        M.Precision().merge_state([M.Recall()])
    with pytest.raises(ValueError, match="add_state"):
        Counted().merge_state([Counted()])


# --- (c) settings are never reduced ---------------------------------------------------------------
def test_threshold_and_top_k_are_not_summed_by_a_merge():
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(30, 1, generator=g) > 0.5).float()
    p = torch.rand(30, 1, generator=g)
    scores, labels = torch.randn(30, 5, generator=g), torch.randint(0, 5, (30,), generator=g)
    shards = parts(30, [10, 20])
    precision = merged(lambda: M.Precision(thresholds=0.3), lambda m, sl: m.update_state(y[sl], p[sl]), shards)
    assert precision.thresholds == 0.3  # a sum over 3 ranks would be 0.9, and count far fewer positives
    expected = precision_score(y.numpy().ravel(), (p.numpy().ravel() > 0.3).astype(int))
    assert float(precision.result()) == pytest.approx(expected, abs=1e-6)
    top = merged(lambda: M.SparseTopKCategoricalAccuracy(k=2),
                 lambda m, sl: m.update_state(labels[sl], scores[sl]), shards)
    assert top.fn_kwargs == {"k": 2}
    in_top2 = (scores.topk(2, dim=-1).indices == labels[:, None]).any(-1).float().mean()
    assert float(top.result()) == pytest.approx(float(in_top2), abs=1e-6)


# --- one process: a metric written the old way keeps working --------------------------------------
def test_a_metric_with_plain_attribute_state_still_works_in_one_process():
    model = ew.Model(nn.Linear(3, 1), device="cpu", seed=0)
    model.compile(optimizer="sgd", loss="mse", metrics=[Counted()])
    history = model.fit(torch.zeros(10, 3), torch.zeros(10, 1), batch_size=4, epochs=2, verbose=0)
    assert history.history["counted"] == [10.0, 10.0]  # reset by its own reset_state each epoch


# --- (d) two real processes -----------------------------------------------------------------------
def data_set(seed, n, split):
    g = torch.Generator().manual_seed(seed)
    return {"y": (torch.rand(n, 1, generator=g) > 0.5).float(), "p": torch.rand(n, 1, generator=g),
            "w": torch.rand(n, generator=g), "labels": torch.randint(0, 3, (n,), generator=g),
            "scores": torch.randn(n, 3, generator=g), "split": split}


def test_two_gloo_processes_sync_every_reduction_exactly(tmp_path):
    """Uneven shards (9 + 4), then a rank that saw no batch (6 + 0): it still takes part in every sync."""
    uneven, empty = data_set(2, 13, 9), data_set(3, 6, 6)
    uneven["p"][0, 0], uneven["p"][9, 0] = 0.3, 0.31  # at and just above the 0.3 threshold
    paths = [tmp_path / "uneven.pt", tmp_path / "empty.pt"]
    torch.save(uneven, paths[0])
    torch.save(empty, paths[1])
    out = tmp_path / "r"
    result = subprocess.run([sys.executable, str(SCRIPT), *map(str, paths), str(out)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    r0, r1 = (json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(2))
    for data, a, b in zip((uneven, empty), r0["runs"], r1["runs"]):
        assert a["synced"] == b["synced"]  # every rank logs the same numbers
        whole = script.metrics()
        script.update(whole, data, slice(0, len(data["y"])))  # the same metrics on all the data, one process
        y, p, w = data["y"].numpy().ravel(), data["p"].numpy().ravel(), data["w"].numpy()
        s = a["synced"]
        for key in ("auc", "top2", "acc", "tm"):
            assert s[key] == pytest.approx(float(whole[key].result()), abs=1e-6), key
        assert s["precision"] == pytest.approx(precision_score(y, (p > 0.3).astype(int), sample_weight=w), abs=1e-6)
        assert s["mean"] == pytest.approx(float((p * w).sum() / w.sum()), abs=1e-6)
        assert s["values"] == pytest.approx((2 * data["p"].reshape(-1)).tolist())  # rank 0's, then rank 1's
        assert (s["high"], s["low"], s["seen"]) == (pytest.approx(2 * p.max()), pytest.approx(2 * p.min()), len(y))
        for r in (a, b):
            assert r["after"] == r["local"]  # the local state came back after the block
            assert r["settings"] == {"thresholds": 0.3, "k": 2, "scale": 2.0, "precision_state": ["counts"]}
    assert r0["runs"][0]["local"]["auc"] != r0["runs"][0]["synced"]["auc"]  # a shard alone differs
    assert r1["runs"][1]["local"]["acc"] == 0.0  # unresolved on the rank without batches
    for r in (r0, r1):  # a metric keeping its state the old way is refused before any training step
        assert "add_state" in r["refused"] and "'counted'" in r["refused"] and r["trained"] == 0
