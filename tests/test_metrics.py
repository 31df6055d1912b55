"""Metrics (reference §11): running means, accuracy resolution, AUC / precision / recall, wrappers, names.

Numbers come from closed forms, the reference's LO8 vectors, scikit-learn or plain torch.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchmetrics
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score
from torch import nn

import epochwise.losses as L
import epochwise.metrics as M

T = torch.tensor


def feed(metric, y, p, w=None, sizes=(4, 4, 2)):
    """Update ``metric`` batch by batch (unequal sizes, D4) and return ``float(result())``."""
    start = 0
    for size in sizes:
        sl = slice(start, start + size)
        metric.update_state(y[sl], p[sl], None if w is None else w[sl])
        start += size
    return float(metric.result())


# --- ME3: running means over unequal batches ------------------------------------------------------
def test_mae_over_unequal_batches_is_the_plain_mean():  # ME3, D4
    y = torch.arange(10.0).reshape(10, 1)
    p = y + T([1.0, -2, 3, 0, 0.5, 4, -1, 2, 7, -3]).reshape(10, 1)
    expected = float((y - p).abs().mean())
    assert feed(M.get("mae"), y, p) == pytest.approx(expected)
    assert feed(M.get("mae"), y.squeeze(1), p) == pytest.approx(expected)  # LO1: (n,) against (n, 1)


def test_weighted_mae_is_sum_of_weighted_errors_over_sum_of_weights():  # ME3
    y = torch.zeros(10, 1)
    e = T([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    w = T([0.5, 1, 0, 2, 1, 1, 3, 0, 1, 0.25])
    assert feed(M.get("mae"), y, e.reshape(10, 1), w) == pytest.approx(float((w * e).sum() / w.sum()))


def test_mean_of_batch_means_is_not_what_is_reported():  # ME3: fraction over all samples
    y = T([1.0, 1, 1, 1, 0, 0, 0, 0, 0, 0]).reshape(10, 1)
    p = T([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1]).reshape(10, 1)
    # batches 4+4+2: accuracies 1, 0, 1 -> mean of batch means 2/3; over the samples 6/10
    assert feed(M.BinaryAccuracy(), y, p) == pytest.approx(0.6)


def test_temporal_weights_average_over_weighted_timesteps():  # ME3, LO4
    e = T([[1.0, 2, 3], [4, 5, 6]])
    w = T([[1.0, 1, 0], [1, 0, 0]])
    m = M.MeanSquaredError()
    m.update_state(torch.zeros(2, 3, 1), e.sqrt().unsqueeze(-1), w)
    assert float(m.result()) == pytest.approx(float((w * e).sum() / w.sum()))


def test_scalar_weight_and_per_sample_values_on_higher_rank_outputs():  # ME3
    y, p = torch.zeros(3, 2, 2), T([[[1.0, 3], [0, 0]], [[2, 2], [2, 2]], [[0, 0], [0, 4]]])
    m = M.MeanAbsoluteError()
    m.update_state(y, p, T(2.0))
    assert float(m.result()) == pytest.approx(float(p.mean()))


def test_result_is_zero_before_any_update_and_after_reset():  # ME3, ME4
    y, p = T([[1.0], [0.0], [1.0]]), T([[0.9], [0.2], [0.3]])
    for metric in (M.get("mae"), M.AUC(), M.Precision(), M.Recall(), M.get("acc")):
        assert float(metric.result()) == 0.0
        metric.update_state(y, p)
        assert float(metric.result()) > 0.0, metric
        metric.reset_state()
        assert float(metric.result()) == 0.0, metric


def test_reset_state_starts_a_fresh_epoch():  # ME4
    m = M.get("mse")
    m.update_state(T([[0.0]]), T([[10.0]]))
    m.reset_state()
    m.update_state(T([[0.0], [0.0]]), T([[1.0], [3.0]]))
    assert float(m.result()) == pytest.approx(5.0)


def test_mean_tracker_update_is_the_sample_weighted_loss():  # LO5
    tracker = M.Mean("loss")
    for loss, n in [(T(0.5), 4), (T(0.25), 4), (T(2.0), 2)]:
        tracker.update(loss.detach() * n, n)
    assert float(tracker.result()) == pytest.approx((0.5 * 4 + 0.25 * 4 + 2.0 * 2) / 10)
    tracker.update_state(T([1.0, 2.0]), sample_weight=T([1.0, 3.0]))
    assert float(tracker.result()) == pytest.approx((7.0 + 7.0) / 14)


# --- reference values (LO8) -----------------------------------------------------------------------
BCE_Y, BCE_P = T([[0.0, 1.0], [0.0, 0.0]]), T([[0.6, 0.4], [0.4, 0.6]])
CCE_Y, CCE_P = T([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), T([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])


@pytest.mark.parametrize(
    ("metric", "y", "p", "w", "expected"),
    [
        (M.BinaryCrossentropy(), BCE_Y, BCE_P, None, 0.814924),  # LO8
        (M.BinaryCrossentropy(), BCE_Y, BCE_P, T([0.8, 0.2]), 0.8 * 0.916291 + 0.2 * 0.713558),  # ME3: / Σw
        (M.BinaryCrossentropy(from_logits=True), T([0.0, 1, 0, 0]), T([-18.6, 0.51, 2.94, -12.8]), None, 0.865458),
        (M.CategoricalCrossentropy(), CCE_Y, CCE_P, None, 1.176939),  # LO8
        (M.SparseCategoricalCrossentropy(), T([1, 2]), CCE_P, None, 1.176939),  # LO8
        (M.SparseCategoricalCrossentropy(), T([[1], [2]]), CCE_P, None, 1.176939),  # LO8
        (M.MeanSquaredError(), T([[0.0, 1.0], [0.0, 0.0]]), T([[1.0, 1.0], [1.0, 0.0]]), None, 0.5),  # LO8
        (M.MeanSquaredError(), T([[0.0, 1.0], [0.0, 0.0]]), T([[1.0, 1.0], [1.0, 0.0]]), T([1.0, 0.0]), 0.5),
        (M.MeanAbsoluteError(), T([[0.0, 1.0]]), T([[0.6, 3.0]]), None, 1.3),  # LO8
        (M.MeanAbsolutePercentageError(), T([[2.0], [4.0]]), T([[1.0], [5.0]]), None, 100 * (0.5 + 0.25) / 2),
        (M.MeanSquaredLogarithmicError(), T([[0.0], [1.0]]), T([[1.0], [1.0]]), None, math.log(2) ** 2 / 2),
        (M.LogCoshError(), T([[0.0], [0.0]]), T([[1.0], [-2.0]]), None, (math.log(math.cosh(1)) + math.log(math.cosh(2))) / 2),
        (M.Hinge(), T([[0.0], [1.0]]), T([[0.5], [0.25]]), None, (1.5 + 0.75) / 2),  # 0/1 -> -1/+1
        (M.CosineSimilarity(), T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 1.0], [0.0, 3.0]]), None, (1 / math.sqrt(2) + 1) / 2),
    ],
)  # fmt: skip
def test_values_against_reference_vectors(metric, y, p, w, expected):  # LO6-LO8 through ME3
    metric.update_state(y, p, w)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-5)


def test_rmse_is_the_root_of_the_running_mse_not_a_mean_of_roots():  # ME3
    y, p = torch.zeros(10, 1), T([1.0, 1, 1, 1, 3, 3, 3, 3, 0, 0]).reshape(10, 1)
    # batches 4+4+2 have roots 1, 3, 0: their mean would be 1.333
    assert feed(M.get("rmse"), y, p) == pytest.approx(math.sqrt(40 / 10))


# --- ME1: "accuracy" resolution --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("y_shape", "p_shape", "resolved"),
    [
        ((8, 1), (8, 1), M.BinaryAccuracy),  # last dim 1
        ((8,), (8, 1), M.BinaryAccuracy),
        ((8,), (8,), M.BinaryAccuracy),  # rank-1 output: one probability per sample (Keras: categorical)
        ((8,), (8, 3), M.SparseCategoricalAccuracy),  # rank(y) < rank(p)
        ((8, 1), (8, 3), M.SparseCategoricalAccuracy),  # y last dim 1 vs C > 1
        ((8, 5), (8, 5, 3), M.SparseCategoricalAccuracy),  # sequences of labels
        ((8, 3), (8, 3), M.CategoricalAccuracy),  # one-hot
    ],
)
def test_accuracy_resolves_from_shapes(y_shape, p_shape, resolved):  # ME1
    metric = M.get("acc")
    classes = 3 if resolved is M.SparseCategoricalAccuracy else 2
    y = torch.randint(0, classes, y_shape)
    metric.update_state(y, torch.rand(p_shape))
    assert type(metric.resolved) is resolved
    assert metric.name == "acc" and metric.direction == "max"  # G5: keyed by the string given


def test_accuracy_values_for_each_resolution():  # ME1
    p3 = T([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])
    labels = T([1, 0, 0, 2])
    sparse, categorical = M.get("accuracy"), M.get("accuracy")
    sparse.update_state(labels, p3)
    categorical.update_state(nn.functional.one_hot(labels, 3).float(), p3)
    assert float(sparse.result()) == float(categorical.result()) == pytest.approx(0.5)
    exact = M.Accuracy()
    exact.update_state(T([[1.0], [2.0], [3.0]]), T([1.0, 2.5, 3.0]))
    assert float(exact.result()) == pytest.approx(2 / 3)


def test_binary_accuracy_threshold_is_strict():  # ME1
    m = M.BinaryAccuracy()
    m.update_state(T([[0.0], [0.0], [1.0], [0.0]]), T([[0.5], [0.5], [0.51], [0.49]]))
    assert float(m.result()) == pytest.approx(1.0)  # 0.5 counts as negative


def test_from_logits_variants_match_the_probability_versions():  # ME1 quirk fixed, LO6
    z = torch.randn(50, 1) * 3
    y = (torch.rand(50, 1) > 0.5).float()
    pairs = [
        (M.BinaryAccuracy(from_logits=True), M.BinaryAccuracy()),
        (M.BinaryAccuracy(threshold=0.8, from_logits=True), M.BinaryAccuracy(threshold=0.8)),
        (M.BinaryCrossentropy(from_logits=True), M.BinaryCrossentropy()),
        (M.AUC(from_logits=True), M.AUC()),
        (M.Precision(from_logits=True), M.Precision()),
        (M.Recall(from_logits=True), M.Recall()),
        (M.get("acc", from_logits=True), M.get("acc")),
    ]
    for on_logits, on_probs in pairs:
        on_logits.update_state(y, z)
        on_probs.update_state(y, torch.sigmoid(z))
        assert float(on_logits.result()) == pytest.approx(float(on_probs.result()), abs=1e-5), on_logits
    zc, labels = torch.randn(20, 4), torch.randint(0, 4, (20,))
    a, b = M.SparseCategoricalCrossentropy(from_logits=True), M.SparseCategoricalCrossentropy()
    a.update_state(labels, zc)
    b.update_state(labels, zc.softmax(-1))
    assert float(a.result()) == pytest.approx(float(b.result()), abs=1e-5)
    logit_acc = M.get("accuracy")  # the Keras quirk without from_logits: logits scored against 0.5
    logit_acc.update_state(T([[1.0], [1.0]]), T([[0.3], [2.0]]))
    assert float(logit_acc.result()) == pytest.approx(0.5)


def test_top_k_accuracy_against_torch_topk():  # ME1
    scores = torch.randn(30, 6)
    labels = torch.randint(0, 6, (30,))
    for k in (1, 3, 6, 10):
        expected = float((scores.topk(min(k, 6), dim=-1).indices == labels[:, None]).any(-1).float().mean())
        sparse = M.SparseTopKCategoricalAccuracy(k=k)
        dense = M.TopKCategoricalAccuracy(k=k)
        assert feed(sparse, labels, scores, sizes=(16, 14)) == pytest.approx(expected)
        onehot = nn.functional.one_hot(labels, 6).float()
        assert feed(dense, onehot, scores, sizes=(16, 14)) == pytest.approx(expected)
    ties = M.SparseTopKCategoricalAccuracy(k=1)
    ties.update_state(T([[1]]), T([[0.5, 0.5, 0.0]]))
    assert float(ties.result()) == 1.0  # a tie with the k-th score counts as in (Keras in_top_k)


# --- AUC, precision, recall -----------------------------------------------------------------------
def _scores(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) > 0.4).float()
    p = torch.sigmoid(1.5 * (2 * y - 1) + torch.randn(n, generator=g) * 1.5)
    w = torch.rand(n, generator=g) * 2
    return y.reshape(n, 1), p.reshape(n, 1), w


def test_auc_roc_matches_sklearn():  # ME3 (stateful)
    y, p, w = _scores()
    assert feed(M.AUC(), y, p, sizes=(128, 128, 44)) == pytest.approx(roc_auc_score(y, p), abs=1e-2)
    weighted = feed(M.AUC(), y, p, w, sizes=(128, 128, 44))
    assert weighted == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-2)


def test_auc_pr_matches_sklearn_average_precision():
    y, p, _ = _scores(seed=1)
    expected = average_precision_score(y, p)  # a step sum; Keras interpolates, hence the tolerance
    assert feed(M.AUC(curve="PR"), y, p, sizes=(300,)) == pytest.approx(expected, abs=2e-2)


def test_auc_extremes():
    y = T([0.0, 0.0, 1.0, 1.0])
    for curve in ("ROC", "PR"):
        perfect = M.AUC(curve=curve)
        perfect.update_state(y, T([0.1, 0.2, 0.8, 0.9]))
        assert float(perfect.result()) == pytest.approx(1.0, abs=1e-6)
    inverted = M.AUC()
    inverted.update_state(y, T([0.9, 0.8, 0.2, 0.1]))
    assert float(inverted.result()) == pytest.approx(0.0, abs=1e-6)


# With num_thresholds=3 the thresholds are [-eps, 0.5, 1+eps]: positives at 0.7, 0.3, negatives at 0.6, 0.2
# give the ROC points (fpr, tpr) = (1, 1), (0.5, 0.5), (0, 0).
@pytest.mark.parametrize(
    ("method", "expected"), [("interpolation", 0.5), ("minoring", 0.25), ("majoring", 0.75)]
)
def test_auc_roc_summation_methods_closed_form(method, expected):
    m = M.AUC(num_thresholds=3, summation_method=method)
    m.update_state(T([1.0, 1.0, 0.0, 0.0]), T([0.7, 0.3, 0.6, 0.2]))
    assert float(m.result()) == pytest.approx(expected, abs=1e-6)


def test_auc_counts_a_prediction_at_a_threshold_as_below_it():  # strict p > t, as Keras
    m = M.AUC(num_thresholds=3)
    m.update_state(T([1.0, 0.0]), T([0.5, 0.2]))  # tp = [1, 0, 0], fp = [1, 0, 0]
    assert float(m.result()) == pytest.approx(0.5, abs=1e-6)


def test_auc_pr_interpolation_closed_form():  # Davis & Goadrich, as Keras' interpolate_pr_auc
    # thresholds [-eps, .5, 1+eps]; positives .7, .3, .3 and negatives .6, .2:
    # tp = [3, 1, 0], fp = [2, 1, 0], P = tp + fp = [5, 2, 0], positives = 3.
    # interval 0: slope = 2/3, intercept = 1 - 2/3*2 = -1/3 -> 2/3 * (2 - 1/3 * ln(5/2)) / 3
    # interval 1: slope = 1/2, intercept = 0 -> 1/2 * 1 / 3
    expected = 2 / 3 * (2 - math.log(2.5) / 3) / 3 + 0.5 / 3
    m = M.AUC(num_thresholds=3, curve="PR")
    m.update_state(T([1.0, 1.0, 1.0, 0.0, 0.0]), T([0.7, 0.3, 0.3, 0.6, 0.2]))
    assert float(m.result()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_precision_and_recall_match_sklearn(weighted):
    y, p, w = _scores(n=200, seed=2)
    w = w if weighted else None
    pred = (p > 0.5).int().numpy().ravel()
    sw = None if w is None else w.numpy()
    assert feed(M.Precision(), y, p, w, sizes=(64, 64, 72)) == pytest.approx(
        precision_score(y.numpy().ravel(), pred, sample_weight=sw), abs=1e-5
    )
    assert feed(M.Recall(), y, p, w, sizes=(64, 64, 72)) == pytest.approx(
        recall_score(y.numpy().ravel(), pred, sample_weight=sw), abs=1e-5
    )


def test_precision_and_recall_use_a_strict_threshold_and_non_zero_targets():
    y, p = T([1.0, 0.0, 1.0, 0.3]), T([0.5, 0.7, 0.9, 0.1])  # 0.5 is not above 0.5; target 0.3 is positive
    precision, recall = M.Precision(), M.Recall()
    for metric in (precision, recall):
        metric.update_state(y, p)
    assert (float(precision.result()), float(recall.result())) == pytest.approx((0.5, 1 / 3))


def test_precision_class_id_picks_one_column():
    probs = torch.rand(40, 3)
    onehot = nn.functional.one_hot(torch.randint(0, 3, (40,)), 3).float()
    m = M.Precision(class_id=2)
    m.update_state(onehot, probs)
    expected = precision_score(onehot[:, 2].numpy(), (probs[:, 2] > 0.5).int().numpy(), zero_division=0)
    assert float(m.result()) == pytest.approx(expected, abs=1e-6)


# --- wrappers -------------------------------------------------------------------------------------
def test_torchmetrics_metric_is_wrapped_with_its_direction():
    scores, labels = torch.randn(50, 4), torch.randint(0, 4, (50,))
    tm = torchmetrics.classification.MulticlassAccuracy(num_classes=4, average="micro")
    m = M.get(tm)
    assert isinstance(m, M.TorchmetricsMetric)
    assert (m.name, m.direction) == ("multiclass_accuracy", "max")
    assert float(m.result()) == 0.0
    ours = M.SparseCategoricalAccuracy()
    expected = feed(ours, labels, scores, sizes=(50,))
    assert feed(m, labels, scores, sizes=(20, 20, 10)) == pytest.approx(expected)
    m.reset_state()
    m.update_state(labels[:5], scores[:5])
    assert float(m.result()) == pytest.approx(float((scores[:5].argmax(-1) == labels[:5]).float().mean()))
    assert M.get(torchmetrics.MeanSquaredError(), name="tm_mse").direction == "min"
    with pytest.raises(ValueError, match="weighted_metrics"):
        m.update_state(labels, scores, torch.ones(50))
    per_class = M.get(torchmetrics.classification.MulticlassAccuracy(num_classes=4, average=None))
    per_class.update_state(labels, scores)
    with pytest.raises(ValueError, match="average='macro'"):
        per_class.result()


def test_callables_become_mean_metric_wrappers():  # G5: named by the function
    def max_error(y_true, y_pred):
        return (y_true - y_pred).abs().amax(-1)

    y, p = torch.zeros(10, 2), torch.randn(10, 2)
    m = M.get(max_error)
    assert (m.name, m.direction) == ("max_error", None)
    assert feed(m, y, p) == pytest.approx(float(p.abs().amax(-1).mean()))
    batch_mean = M.get(lambda y_true, y_pred: (y_true - y_pred).abs().mean())  # a scalar counts per sample
    assert feed(batch_mean, y, p) == pytest.approx(float(p.abs().mean()))


def test_losses_as_metrics_are_minimised():  # M2
    y, p = torch.randn(10, 1), torch.randn(10, 1)
    torch_mse = M.get(nn.MSELoss())
    ours = M.get(L.MeanSquaredError())
    assert (torch_mse.name, torch_mse.direction) == ("mse_loss", "min")
    assert (ours.name, ours.direction) == ("mean_squared_error", "min")
    expected = float(((y - p) ** 2).mean())
    assert feed(torch_mse, y, p) == pytest.approx(expected)
    assert feed(ours, y, p) == pytest.approx(expected)
    ce = M.get(nn.CrossEntropyLoss())  # called in torch's (input, target) order
    scores, labels = torch.randn(10, 3), torch.randint(0, 3, (10,))
    expected = float(nn.functional.cross_entropy(scores, labels))
    assert feed(ce, labels, scores) == pytest.approx(expected, abs=1e-6)


# --- names and lookup (G5, M2) --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("identifier", "cls", "direction"),
    [
        ("mae", M.MeanAbsoluteError, "min"),
        ("mse", M.MeanSquaredError, "min"),
        ("rmse", M.RootMeanSquaredError, "min"),
        ("mape", M.MeanAbsolutePercentageError, "min"),
        ("msle", M.MeanSquaredLogarithmicError, "min"),
        ("logcosh", M.LogCoshError, "min"),
        ("auc", M.AUC, "max"),
        ("precision", M.Precision, "max"),
        ("recall", M.Recall, "max"),
        ("binary_accuracy", M.BinaryAccuracy, "max"),
        ("categorical_accuracy", M.CategoricalAccuracy, "max"),
        ("sparse_categorical_accuracy", M.SparseCategoricalAccuracy, "max"),
        ("top_k_categorical_accuracy", M.TopKCategoricalAccuracy, "max"),
        ("sparse_top_k_categorical_accuracy", M.SparseTopKCategoricalAccuracy, "max"),
        ("binary_crossentropy", M.BinaryCrossentropy, "min"),
        ("sparse_categorical_crossentropy", M.SparseCategoricalCrossentropy, "min"),
        ("hinge", M.Hinge, "min"),
        ("cosine_similarity", M.CosineSimilarity, "max"),
        ("mean_absolute_error", M.MeanAbsoluteError, "min"),
        ("RootMeanSquaredError", M.RootMeanSquaredError, "min"),
        ("acc", M.AutoAccuracy, "max"),
        ("Accuracy", M.AutoAccuracy, "max"),
    ],
)
def test_names_resolve_with_the_given_string_as_name(identifier, cls, direction):  # G5, M2
    metric = M.get(identifier)
    assert type(metric) is cls
    assert (metric.name, metric.direction) == (identifier, direction)


def test_default_names_follow_keras():  # G5
    metrics = M.get_list([M.MeanAbsoluteError(), M.AUC(), M.LogCoshError(), M.Precision()])
    assert [m.name for m in metrics] == ["mean_absolute_error", "auc", "logcosh", "precision"]
    assert M.get(M.AUC).name == "auc"  # a class is instantiated
    assert M.get(M.AUC, from_logits=True).from_logits


def test_from_logits_reaches_the_metrics_that_need_it():
    for name in ("auc", "binary_accuracy", "precision", "recall", "binary_crossentropy", "acc"):
        assert M.get(name, from_logits=True).from_logits is True
    assert isinstance(M.get("mae", from_logits=True), M.MeanAbsoluteError)  # ignored where meaningless


def test_duplicate_names_get_suffixes():  # G5
    mae = M.MeanAbsoluteError(name="err")
    metrics = M.get_list(["mae", "mae", "mae", mae, mae, None])
    assert [m.name for m in metrics] == ["mae", "mae_1", "mae_2", "err", "err_1"]
    assert metrics[3] is mae and metrics[4] is not mae  # the same instance twice is copied
    assert M.get_list(None) == [] and [m.name for m in M.get_list("mse")] == ["mse"]


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown metric 'binary_acuracy'.*'binary_accuracy'.*torchmetrics"):
        M.get("binary_acuracy")
    with pytest.raises(ValueError, match="'rmse'"):
        M.get("rmsee")


def test_wrong_types_and_dicts_are_rejected():
    with pytest.raises(TypeError, match="callable fn"):
        M.get(42)
    with pytest.raises(TypeError, match="per-output"):
        M.get_list([["mae"]])
    with pytest.raises(ValueError, match="dict"):
        M.get_list({"out": "mae"})
    with pytest.raises(ValueError, match="curve"):
        M.AUC(curve="ROCK")
    with pytest.raises(ValueError, match="k must be"):
        M.TopKCategoricalAccuracy(k=0)
    with pytest.raises(ValueError, match="one threshold"):
        M.Precision(thresholds=[0.3, 0.7])
    with pytest.raises(ValueError, match="sample_weight of shape"):
        M.get("mae").update_state(torch.zeros(4, 1), torch.zeros(4, 1), torch.ones(3))


# --- no host sync in update_state -----------------------------------------------------------------
def _built_ins():
    return [
        M.get("acc"),
        M.Accuracy(),
        M.BinaryAccuracy(from_logits=True),
        M.CategoricalAccuracy(),
        M.TopKCategoricalAccuracy(k=2),
        M.MeanAbsoluteError(),
        M.MeanSquaredError(),
        M.RootMeanSquaredError(),
        M.MeanAbsolutePercentageError(),
        M.MeanSquaredLogarithmicError(),
        M.LogCoshError(),
        M.Hinge(),
        M.SquaredHinge(),
        M.Poisson(),
        M.KLDivergence(),
        M.CosineSimilarity(),
        M.BinaryCrossentropy(from_logits=True),
        M.CategoricalCrossentropy(),
        M.AUC(),
        M.AUC(curve="PR", from_logits=True),
        M.Precision(),
        M.Recall(class_id=1),
    ]


def _sparse_built_ins():
    return [M.get("accuracy"), M.SparseCategoricalAccuracy(), M.SparseTopKCategoricalAccuracy(k=2),
            M.SparseCategoricalCrossentropy(from_logits=True)]  # fmt: skip


def _forbid_host_reads(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("host sync inside update_state")

    for attr in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, attr, forbidden)


@pytest.mark.parametrize("weighted", [False, True])
def test_update_state_never_reads_tensor_values_on_the_host(monkeypatch, weighted):
    y, p = (torch.rand(6, 3) > 0.5).float(), torch.rand(6, 3)
    labels = torch.randint(0, 3, (6,))
    w = torch.rand(6) if weighted else None
    metrics, sparse = _built_ins(), _sparse_built_ins()
    with monkeypatch.context() as patch:
        _forbid_host_reads(patch)
        for metric in metrics:
            metric.update_state(y, p, w)
            metric.update_state(y[:2], p[:2], None if w is None else w[:2])
            metric.result()
        for metric in sparse:
            metric.update_state(labels, p, w)
        tracker = M.Mean("loss")
        tracker.update(p.sum(), 6)
    for metric in metrics + sparse + [tracker]:
        assert math.isfinite(float(metric.result())), metric


def test_state_lives_on_the_device_of_the_first_update():
    # The meta device holds no data: any host read would fail, and the state must be created there.
    y, p = torch.zeros(4, 3, device="meta"), torch.zeros(4, 3, device="meta")
    labels = torch.zeros(4, dtype=torch.long, device="meta")
    for metric in _built_ins():
        metric.update_state(y, p)
        assert metric.result().device.type == "meta", metric
        metric.reset_state()
        assert metric.result().device.type == "meta", metric  # reset keeps the state where it is
    for metric in _sparse_built_ins():
        metric.update_state(labels, p, torch.ones(4, device="meta"))
        assert metric.result().device.type == "meta", metric
    tracker = M.Mean()
    tracker.update(p.sum(), 4)
    assert tracker.result().device.type == "meta"


def test_state_built_under_inference_mode_still_updates_in_training():  # ME4: evaluate, then fit
    for metric in (M.get("mae"), M.AUC(), M.Recall(), M.get("acc")):
        with torch.inference_mode():
            metric.update_state(T([[1.0], [0.0]]), T([[0.7], [0.2]]))
        metric.reset_state()
        metric.update_state(T([[1.0], [0.0]]), T([[0.9], [0.6]]))
        assert float(metric.result()) > 0, metric


def test_results_are_float32_scalars_without_gradients():
    p = torch.rand(3, 3, requires_grad=True)
    for metric in _built_ins():
        metric.update_state(torch.ones(3, 3), p)
        result = metric.result()
        assert result.shape == () and result.dtype == torch.float32 and not result.requires_grad, metric
