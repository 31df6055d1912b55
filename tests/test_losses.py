"""Losses by Keras name: formulas, reductions, rank alignment, wrappers and the checks of `validate`.

Numbers come from the test vectors of rule LO8 (docs/behaviour.md), closed forms, or torch / scikit-learn.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mean_absolute_percentage_error, mean_squared_log_error
from torch import nn

import epochwise.losses as L

T = torch.tensor
BCE_Y, BCE_P = [[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]]
CCE_Y, CCE_P = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
MSE_Y, MSE_P = [[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]

# LO8: (loss, y_true, y_pred, sample_weight, expected) - all verified on Keras 3.15.1.
LO8_VECTORS = {
    "bce per sample": (L.BinaryCrossentropy(reduction="none"), BCE_Y, BCE_P, None, [0.916291, 0.713558]),
    "bce mean": (L.BinaryCrossentropy(), BCE_Y, BCE_P, None, 0.814924),
    "bce sample_weight": (L.BinaryCrossentropy(), BCE_Y, BCE_P, [0.8, 0.2], 0.437872),
    "bce sum": (L.BinaryCrossentropy(reduction="sum"), BCE_Y, BCE_P, None, 1.629849),
    "bce label_smoothing": (L.BinaryCrossentropy(label_smoothing=0.2), BCE_Y, BCE_P, None, 0.794651),
    "bce logits": (
        L.BinaryCrossentropy(from_logits=True),
        [0, 1, 0, 0],
        [-18.6, 0.51, 2.94, -12.8],
        None,
        0.865458,
    ),
    "cce per sample": (L.CategoricalCrossentropy(reduction="none"), CCE_Y, CCE_P, None, [0.051293, 2.302585]),
    "cce mean": (L.CategoricalCrossentropy(), CCE_Y, CCE_P, None, 1.176939),
    "cce label_smoothing": (L.CategoricalCrossentropy(label_smoothing=0.1), CCE_Y, CCE_P, None, 1.459136),
    "scce labels (n,)": (L.SparseCategoricalCrossentropy(), [1, 2], CCE_P, None, 1.176939),
    "scce labels (n, 1)": (L.SparseCategoricalCrossentropy(), [[1], [2]], CCE_P, None, 1.176939),
    "mse": (L.MeanSquaredError(), MSE_Y, MSE_P, None, 0.5),
    "mse sample_weight": (L.MeanSquaredError(), MSE_Y, MSE_P, [1.0, 0.0], 0.25),
    "mse mean_with_sample_weight": (
        L.MeanSquaredError(reduction="mean_with_sample_weight"),
        MSE_Y,
        MSE_P,
        [1.0, 0.0],
        0.5,
    ),
    "huber": (L.Huber(), [[0.0, 1.0]], [[0.6, 3.0]], None, 0.84),
    "mae": (L.MeanAbsoluteError(), [[0.0, 1.0]], [[0.6, 3.0]], None, 1.3),
    "bce clipped": (L.BinaryCrossentropy(), [[1.0]], [[0.0]], None, 16.118095),
}


@pytest.mark.parametrize("case", LO8_VECTORS, ids=list(LO8_VECTORS))
def test_lo8_vectors(case):  # LO8
    loss, y, p, sw, expected = LO8_VECTORS[case]
    out = loss(T(y), T(p), None if sw is None else T(sw))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, T(expected), atol=1e-5, rtol=1e-5)


def per_sample_mse(y, p):
    return ((y - p) ** 2).mean(-1)


Y4 = T([[0.0], [1.0], [2.0], [3.0]])
P4 = T([[1.0], [3.0], [2.5], [0.0]])


@pytest.mark.parametrize(
    "reduction, weights, expected",
    [
        ("sum_over_batch_size", [1, 0, 0, 0], lambda ls: ls[0] / 4),  # LO2: zero weights still count
        ("mean", [1, 0, 0, 0], lambda ls: ls[0] / 4),
        ("sum", [1, 2, 0, 0], lambda ls: ls[0] + 2 * ls[1]),
        ("mean_with_sample_weight", [1, 2, 0, 0], lambda ls: (ls[0] + 2 * ls[1]) / 3),
        ("mean_with_sample_weight", None, lambda ls: ls.mean()),
        ("mean_with_sample_weight", [0, 0, 0, 0], lambda ls: torch.tensor(0.0)),  # no 0/0
        ("none", [1, 0, 2, 0], lambda ls: ls * T([1.0, 0.0, 2.0, 0.0])),
        (None, None, lambda ls: ls),
    ],
)
def test_reductions(reduction, weights, expected):  # LO2
    per_sample = per_sample_mse(Y4, P4)
    sw = None if weights is None else T(weights, dtype=torch.float32)
    out = L.MeanSquaredError(reduction=reduction)(Y4, P4, sample_weight=sw)
    torch.testing.assert_close(out, expected(per_sample))


def test_unknown_reduction_is_rejected():  # LO2
    with pytest.raises(ValueError, match="mean_with_sample_weight"):
        L.MeanSquaredError(reduction="avg")


def test_temporal_sample_weights_divide_by_n_times_t():  # LO4
    y, p = torch.zeros(2, 3, 1), torch.ones(2, 3, 1)  # squared error 1 at every (sample, step)
    sw = T([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(L.MeanSquaredError()(y, p, sw), T(3 / 6))
    # per-sample weights broadcast over the timesteps
    torch.testing.assert_close(L.MeanSquaredError()(y, p, T([1.0, 0.0])), T(3 / 6))


def test_sample_weight_that_does_not_fit_names_the_shapes():  # LO1
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\)"):
        L.MeanSquaredError()(Y4, P4, T([1.0, 2.0, 3.0]))


def test_ignore_class_masks_and_excludes_from_mean():  # LO3
    logits = T([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    labels = T([0, -1, 2, -1])
    loss = L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    torch.testing.assert_close(loss(labels, logits), F.cross_entropy(logits, labels, ignore_index=-1))
    per_sample = L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction="none")(
        labels, logits
    )
    assert per_sample[1] == 0 and per_sample[3] == 0
    summed = L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction="sum")(
        labels, logits
    )
    torch.testing.assert_close(summed, F.cross_entropy(logits, labels, ignore_index=-1, reduction="sum"))


@pytest.mark.parametrize("y_shape, p_shape", [((4,), (4, 1)), ((4, 1), (4,))])
def test_rank_alignment_never_broadcasts_to_n_by_n(y_shape, p_shape):  # LO1
    y, p = Y4.reshape(y_shape), P4.reshape(p_shape)
    expected = ((Y4 - P4) ** 2).mean()
    torch.testing.assert_close(L.MeanSquaredError()(y, p), expected)
    with pytest.warns(UserWarning):  # plain torch broadcasts to (4, 4) and gets another number
        assert not torch.isclose(F.mse_loss(p, y), expected)


def test_casts_to_float32_and_accepts_arrays():  # LO1 step 1, X4
    out = L.MeanSquaredError()(
        np.array([[0], [1]], dtype=np.int64), torch.tensor([[0.5], [1.5]], dtype=torch.float64)
    )
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, T(0.25))


def test_rank1_elementwise_losses_weight_each_sample():  # LO6 ⚠ fixed: rank 1 is not averaged over the batch
    y, z = T([0.0, 1.0, 0.0, 0.0]), T([-18.6, 0.51, 2.94, -12.8])
    per_sample = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    sw = T([1.0, 0.0, 3.0, 0.0])
    out = L.BinaryCrossentropy(from_logits=True)(y, z, sw)
    torch.testing.assert_close(out, (per_sample * sw).sum() / 4)
    none = L.MeanSquaredError(reduction="none")(Y4.flatten(), P4.flatten())
    torch.testing.assert_close(none, per_sample_mse(Y4, P4))


def test_from_logits_none_means_probabilities_when_called_directly():
    p = T(CCE_P)
    assert L.CategoricalCrossentropy()(T(CCE_Y), p) == L.CategoricalCrossentropy(from_logits=False)(
        T(CCE_Y), p
    )


Z = T([[1.5, -0.3, 0.2], [-1.0, 2.0, 0.7], [0.3, 0.3, -2.2]])
LABELS = T([0, 1, 2])


@pytest.mark.parametrize(
    "make, y, activate",
    [
        (L.CategoricalCrossentropy, F.one_hot(LABELS, 3).float(), lambda z: z.softmax(-1)),
        (L.SparseCategoricalCrossentropy, LABELS, lambda z: z.softmax(-1)),
        (L.BinaryCrossentropy, T([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]), torch.sigmoid),
    ],
)
def test_from_logits_equals_probabilities_path(make, y, activate):  # LO6
    torch.testing.assert_close(
        make(from_logits=True)(y, Z), make(from_logits=False)(y, activate(Z)), atol=1e-5, rtol=1e-5
    )


def test_logsoftmax_output_is_exact_as_logits():  # LO6: log_softmax is idempotent
    log_p = Z.log_softmax(-1)
    loss = L.SparseCategoricalCrossentropy(from_logits=True)
    torch.testing.assert_close(loss(LABELS, log_p), loss(LABELS, Z))


SOFT = T([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
REG_Y = T([[0.5, 2.0], [1.5, 0.2], [3.0, 1.0]])
REG_P = T([[0.7, 1.0], [1.0, 0.9], [4.5, 1.1]])


@pytest.mark.parametrize(
    "loss, y, p, reference",
    [
        (L.SparseCategoricalCrossentropy(from_logits=True), LABELS, Z, lambda y, p: F.cross_entropy(p, y)),
        (L.CategoricalCrossentropy(from_logits=True), SOFT, Z, lambda y, p: F.cross_entropy(p, y)),
        (
            L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2),
            F.one_hot(LABELS, 3).float(),
            Z,
            lambda y, p: F.cross_entropy(p, LABELS, label_smoothing=0.2),
        ),
        (
            L.BinaryCrossentropy(from_logits=True),
            SOFT,
            Z,
            lambda y, p: F.binary_cross_entropy_with_logits(p, y),
        ),
        (L.BinaryCrossentropy(), SOFT, Z.sigmoid(), lambda y, p: F.binary_cross_entropy(p, y)),
        (L.MeanSquaredError(), REG_Y, REG_P, lambda y, p: F.mse_loss(p, y)),
        (L.MeanAbsoluteError(), REG_Y, REG_P, lambda y, p: F.l1_loss(p, y)),
        (L.Huber(delta=0.5), REG_Y, REG_P, lambda y, p: F.huber_loss(p, y, delta=0.5)),
        (L.KLDivergence(), SOFT, Z.softmax(-1), lambda y, p: F.kl_div(p.log(), y, reduction="batchmean")),
        (L.Poisson(), REG_Y, REG_P, lambda y, p: F.poisson_nll_loss(p, y, log_input=False, eps=1e-7)),
        (L.CosineSimilarity(), REG_Y, REG_P, lambda y, p: -F.cosine_similarity(p, y, dim=-1).mean()),
        (L.LogCosh(), REG_Y, REG_P, lambda y, p: torch.log(torch.cosh(p - y)).mean()),
        (L.Hinge(), T([[1.0, 0.0]] * 3), REG_P - 0.5, lambda y, p: torch.relu(1 - (2 * y - 1) * p).mean()),
        (L.Hinge(), T([[1.0, -1.0]] * 3), REG_P - 1, lambda y, p: torch.relu(1 - y * p).mean()),
        (L.SquaredHinge(), T([[1.0, -1.0]] * 3), REG_P - 1, lambda y, p: torch.relu(1 - y * p).pow(2).mean()),
        (
            L.CategoricalHinge(),
            F.one_hot(LABELS, 3).float(),
            Z,
            lambda y, p: torch.relu((p * (1 - y)).amax(-1) - (p * y).sum(-1) + 1).mean(),
        ),
        (
            L.MeanAbsolutePercentageError(),
            REG_Y,
            REG_P,
            lambda y, p: 100 * T(mean_absolute_percentage_error(y.numpy(), p.numpy()), dtype=torch.float32),
        ),
        (
            L.MeanSquaredLogarithmicError(),
            REG_Y,
            REG_P,
            lambda y, p: T(mean_squared_log_error(y.numpy(), p.numpy()), dtype=torch.float32),
        ),
    ],
    ids=lambda v: v.name if isinstance(v, L.Loss) else "",
)
def test_matches_torch_and_sklearn_references(loss, y, p, reference):  # LO6, LO7
    torch.testing.assert_close(loss(y, p), reference(y, p).float(), atol=1e-5, rtol=1e-5)


def test_probabilities_are_renormalised_and_clipped():  # LO6
    unnormalised = T([[1.0, 3.0, 0.0]])  # renormalised to [.25, .75, 0]
    torch.testing.assert_close(L.SparseCategoricalCrossentropy()(T([1]), unnormalised), T(-math.log(0.75)))
    torch.testing.assert_close(L.SparseCategoricalCrossentropy()(T([2]), unnormalised), T(-math.log(1e-7)))


def test_cce_over_one_class_warns():  # LO6
    with pytest.warns(SyntaxWarning, match="binary_crossentropy"):
        L.CategoricalCrossentropy()(T([[1.0]]), T([[0.3]]))


BUILTIN = [
    L.BinaryCrossentropy,
    L.CategoricalCrossentropy,
    L.SparseCategoricalCrossentropy,
    L.MeanSquaredError,
    L.MeanAbsoluteError,
    L.MeanAbsolutePercentageError,
    L.MeanSquaredLogarithmicError,
    L.Huber,
    L.LogCosh,
    L.KLDivergence,
    L.Poisson,
    L.CosineSimilarity,
    L.Hinge,
    L.SquaredHinge,
    L.CategoricalHinge,
]
PROBABILITY_TARGETS = (L.BinaryCrossentropy, L.CategoricalCrossentropy, L.KLDivergence, L.CategoricalHinge)


def targets_for(loss: L.Loss) -> torch.Tensor:
    if isinstance(loss, L.SparseCategoricalCrossentropy):
        return LABELS
    return SOFT if isinstance(loss, PROBABILITY_TARGETS) else REG_Y.repeat(1, 2)[:, :3]


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda c: c.__name__)
def test_gradients_flow(cls):  # LO1: differentiable, finite
    loss = cls()
    p = Z.softmax(-1).clone().requires_grad_(True)
    loss(targets_for(loss), p).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda c: c.__name__)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean_with_sample_weight", "none"])
def test_stays_on_the_tensors_device_without_syncs(cls, reduction):
    # meta tensors have no values: any .item() / bool(tensor) inside the loss would raise
    meta = torch.device("meta")
    loss = cls(reduction=reduction)
    out = loss(targets_for(loss).to(meta), Z.softmax(-1).to(meta), torch.ones(3, device=meta))
    assert out.device == meta and out.shape == (() if reduction != "none" else (3,))
    masked = L.SparseCategoricalCrossentropy(ignore_class=1, reduction=reduction)
    assert masked(LABELS.to(meta), Z.to(meta)).device == meta


def test_mse_gradient_matches_closed_form():
    p = REG_P.clone().requires_grad_(True)
    L.MeanSquaredError()(REG_Y, p).backward()
    torch.testing.assert_close(p.grad, 2 * (REG_P - REG_Y) / REG_P.numel())


ALL_NAMES = [
    ("binary_crossentropy", L.BinaryCrossentropy, "binary_crossentropy"),
    ("bce", L.BinaryCrossentropy, "binary_crossentropy"),
    ("BCE", L.BinaryCrossentropy, "binary_crossentropy"),
    ("categorical_crossentropy", L.CategoricalCrossentropy, "categorical_crossentropy"),
    ("sparse_categorical_crossentropy", L.SparseCategoricalCrossentropy, "sparse_categorical_crossentropy"),
    ("crossentropy", L.AutoCrossentropy, "crossentropy"),
    ("ce", L.AutoCrossentropy, "ce"),
    ("mean_squared_error", L.MeanSquaredError, "mean_squared_error"),
    ("mse", L.MeanSquaredError, "mean_squared_error"),
    ("MSE", L.MeanSquaredError, "mean_squared_error"),
    ("mean_absolute_error", L.MeanAbsoluteError, "mean_absolute_error"),
    ("mae", L.MeanAbsoluteError, "mean_absolute_error"),
    ("mape", L.MeanAbsolutePercentageError, "mean_absolute_percentage_error"),
    ("msle", L.MeanSquaredLogarithmicError, "mean_squared_logarithmic_error"),
    ("huber", L.Huber, "huber"),
    ("huber_loss", L.Huber, "huber"),
    ("logcosh", L.LogCosh, "log_cosh"),
    ("log_cosh", L.LogCosh, "log_cosh"),
    ("kl_divergence", L.KLDivergence, "kl_divergence"),
    ("kld", L.KLDivergence, "kl_divergence"),
    ("kullback_leibler_divergence", L.KLDivergence, "kl_divergence"),
    ("poisson", L.Poisson, "poisson"),
    ("cosine_similarity", L.CosineSimilarity, "cosine_similarity"),
    ("hinge", L.Hinge, "hinge"),
    ("squared_hinge", L.SquaredHinge, "squared_hinge"),
    ("categorical_hinge", L.CategoricalHinge, "categorical_hinge"),
    ("MeanSquaredError", L.MeanSquaredError, "mean_squared_error"),
]


@pytest.mark.parametrize("name, cls, canonical", ALL_NAMES, ids=[n for n, _, _ in ALL_NAMES])
def test_every_name_and_alias_resolves(name, cls, canonical):
    loss = L.get(name)
    assert type(loss) is cls and loss.name == canonical
    if hasattr(loss, "from_logits"):
        assert loss.from_logits is None  # decided from the module later


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'mean_squared_error'") as info:
        L.get("mean_sqared_error")
    assert "loss(y_true, y_pred)" in str(info.value) and "torch.nn.MSELoss()" in str(info.value)


@pytest.mark.parametrize("bad", [3, None, L.MeanSquaredError, nn.MSELoss])
def test_wrong_types_say_what_is_accepted(bad):
    with pytest.raises(TypeError, match="instance|loss must be"):
        L.get(bad)


def test_loss_instance_is_returned_as_is():
    loss = L.Huber(delta=2.0)
    assert L.get(loss) is loss


def test_get_config_round_trip():
    loss = L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255, reduction="sum")
    clone = type(loss).from_config(loss.get_config())
    assert (
        clone.get_config()
        == loss.get_config()
        == {
            "name": "sparse_categorical_crossentropy",
            "reduction": "sum",
            "from_logits": True,
            "ignore_class": 255,
            "axis": -1,
        }
    )


def test_torch_loss_module_is_called_in_torch_order():
    loss = L.get(nn.CrossEntropyLoss())
    assert isinstance(loss, L.TorchLoss) and loss.name == "cross_entropy_loss"
    torch.testing.assert_close(loss(LABELS, Z), F.cross_entropy(Z, LABELS))
    with pytest.raises(ValueError, match="reduction='none'"):
        loss(LABELS, Z, sample_weight=T([1.0, 0.0, 1.0]))


def test_torch_functional_loss_is_called_in_torch_order():
    loss = L.get(F.cross_entropy)
    assert isinstance(loss, L.TorchLoss) and loss.name == "cross_entropy"
    torch.testing.assert_close(loss(LABELS, Z), F.cross_entropy(Z, LABELS))


def test_torch_loss_with_reduction_none_takes_sample_weights():  # LO2
    sw = T([1.0, 0.0, 2.0])
    out = L.get(nn.CrossEntropyLoss(reduction="none"))(LABELS, Z, sample_weight=sw)
    torch.testing.assert_close(out, (F.cross_entropy(Z, LABELS, reduction="none") * sw).sum() / 3)


def test_torch_loss_gets_rank_alignment():  # LO1
    torch.testing.assert_close(L.get(nn.MSELoss())(Y4.flatten(), P4), ((Y4 - P4) ** 2).mean())


def test_callable_in_keras_order_is_weighted_and_reduced():
    def absolute_cubed(y_true, y_pred):
        return (y_pred - y_true).abs().pow(3).mean(-1)

    loss = L.get(absolute_cubed)
    assert isinstance(loss, L.LossFunctionWrapper) and loss.name == "absolute_cubed"
    per_sample = (P4 - Y4).abs().pow(3).flatten()
    torch.testing.assert_close(loss(Y4, P4, sample_weight=T([1.0, 0.0, 0.0, 0.0])), per_sample[0] / 4)
    assert L.get(lambda y, p: (y - p).mean()).name == "lambda"


def test_callable_returning_a_scalar_cannot_take_weights():
    loss = L.get(lambda y, p: ((y - p) ** 2).mean())
    torch.testing.assert_close(loss(Y4, P4), ((Y4 - P4) ** 2).mean())
    with pytest.raises(ValueError, match="one value per sample"):
        loss(Y4, P4, sample_weight=torch.ones(4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        L.get(lambda y, p: 1.0)(Y4, P4)


def test_auto_crossentropy_picks_the_variant_from_shapes():  # LO6, ME1
    cases = [
        (T([[1.0], [0.0], [1.0]]), Z[:, :1], L.BinaryCrossentropy),
        (LABELS, Z, L.SparseCategoricalCrossentropy),
        (LABELS[:, None], Z, L.SparseCategoricalCrossentropy),
        (SOFT, Z, L.CategoricalCrossentropy),
    ]
    for y, z, cls in cases:
        auto = L.get("ce")
        auto.from_logits = True  # as the Model sets it after infer_from_logits
        out = auto(y, z)
        assert type(auto.resolved) is cls and auto.resolved.from_logits is True
        torch.testing.assert_close(out, cls(from_logits=True)(y, z))


# ---- validate(): all targets against the first batch's output ----


def test_validate_accepts_targets_with_more_rows_than_the_batch():
    L.SparseCategoricalCrossentropy().validate(torch.randint(0, 3, (100,)), Z)
    L.MeanSquaredError().validate(torch.randn(100), torch.randn(8, 1))  # (n,) vs (n, 1): LO1
    L.CategoricalCrossentropy().validate(F.one_hot(torch.randint(0, 3, (50,)), 3), Z)
    L.BinaryCrossentropy().validate(torch.randint(0, 2, (50, 1)).float(), torch.rand(8, 1))
    L.SparseCategoricalCrossentropy(ignore_class=255).validate(T([0, 2, 255, 1]), Z)


@pytest.mark.parametrize(
    "loss, y_true, y_pred, message",
    [
        (
            L.SparseCategoricalCrossentropy(),
            F.one_hot(torch.arange(10) % 3, 3),
            Z,
            r"categorical_crossentropy.*argmax",
        ),
        (L.CategoricalCrossentropy(), torch.arange(10) % 3, Z, r"sparse_categorical_crossentropy.*one_hot"),
        (L.CategoricalCrossentropy(), torch.zeros(10, 1), Z, r"sparse_categorical_crossentropy"),
        (L.SparseCategoricalCrossentropy(), T([0, 1, 7]), Z, r"\[0, 3\).*3 outputs.*min 0, max 7"),
        (L.SparseCategoricalCrossentropy(), T([1, 2, 3]), Z, r"min 1, max 3.*1-based"),
        (L.SparseCategoricalCrossentropy(), T([-1, 0, 2]), Z, r"min -1, max 2"),
        (L.SparseCategoricalCrossentropy(), T([0.0, 1.5, 2.0]), Z, r"non-integer.*min 0, max 2"),
        (L.SparseCategoricalCrossentropy(), T([0, 0]), Z[:, :1], r"binary_crossentropy"),
        (L.SparseCategoricalCrossentropy(), torch.zeros(5, 4), Z, r"labels of shape \(\.\.\) are expected"),
        (L.CategoricalCrossentropy(), torch.zeros(5, 1), Z[:, :1], r"always be 0.*binary_crossentropy"),
        (L.BinaryCrossentropy(), T([[0.0], [2.0]]), Z[:, :1], r"\[0, 1\].*min 0, max 2"),
        (L.BinaryCrossentropy(), T([0, 1, 2]).float(), Z, r"sparse_categorical_crossentropy"),
        (
            L.MeanSquaredError(),
            torch.zeros(20, 3),
            torch.zeros(8, 10),
            r"\(\.\., 10\) does not fit.*\(\.\., 3\).*mean_squared_error",
        ),
        (L.MeanSquaredError(), torch.zeros(20, 1), torch.zeros(8, 3), r"\(\.\., 3\) does not fit"),
        (L.MeanSquaredError(), T([[float("nan")], [1.0]]), torch.zeros(8, 1), r"NaN"),
        (L.MeanSquaredError(), torch.zeros(20, 1), torch.tensor(0.5), r"scalar"),
    ],
)
def test_validate_errors_name_problem_and_fix(loss, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        loss.validate(y_true, y_pred)


def test_validate_of_auto_crossentropy_resolves_first():
    with pytest.raises(ValueError, match=r"min 0, max 5"):
        L.get("crossentropy").validate(T([0, 5]), Z)


def test_validate_of_torch_loss_turns_failures_into_advice():
    L.get(nn.CrossEntropyLoss()).validate(torch.arange(30) % 3, Z)
    with pytest.raises(ValueError, match=r"shape \(3, 3\).*nn.CrossEntropyLoss wants"):
        L.get(nn.CrossEntropyLoss()).validate((torch.arange(30) % 3)[:, None, None], Z)


def test_validate_of_callable_reports_its_error():
    def broken(y_true, y_pred):
        raise RuntimeError("boom")

    with pytest.raises(ValueError, match=r"'broken' failed.*boom.*Keras order"):
        L.get(broken).validate(torch.zeros(10, 3), Z)


# ---- deciding logits vs probabilities from the module ----


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).softmax(-1)


@pytest.mark.parametrize(
    "module, from_logits, reason",
    [
        (nn.Sequential(nn.Linear(4, 3)), True, "logits: module ends in Linear"),
        (nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1)), False, "probabilities: module ends in Softmax"),
        (nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()), False, "probabilities: module ends in Sigmoid"),
        (
            nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=-1)),
            True,
            "log-probabilities: module ends in LogSoftmax, treated as logits",
        ),
        (nn.Sequential(nn.Linear(4, 3), nn.Sequential(nn.ReLU(), nn.Softmax(-1))), False, "ends in Softmax"),
        (
            nn.Sequential(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid()), nn.Identity()),
            False,
            "ends in Sigmoid",
        ),
        (nn.Sequential(nn.Linear(4, 3), nn.Sequential()), True, "ends in Linear"),
        (Custom(), True, "outputs treated as logits (Custom does not end in Softmax/Sigmoid"),
        (nn.DataParallel(nn.Sequential(nn.Linear(4, 3), nn.Softmax(-1))), False, "ends in Softmax"),
    ],
)
def test_infer_from_logits(module, from_logits, reason):
    decided, why = L.infer_from_logits(module)
    assert decided is from_logits and reason in why


def test_looks_like_probabilities():
    probs = Z.softmax(-1)
    assert L.looks_like_probabilities(probs, L.CategoricalCrossentropy())
    assert L.looks_like_probabilities(probs, L.SparseCategoricalCrossentropy())
    assert not L.looks_like_probabilities(Z, L.SparseCategoricalCrossentropy())
    assert not L.looks_like_probabilities(
        T([[0.2, 0.3, 0.1]]), L.CategoricalCrossentropy()
    )  # rows don't sum to 1
    assert L.looks_like_probabilities(Z.sigmoid(), L.BinaryCrossentropy())
    assert L.looks_like_probabilities(Z[:, :1].sigmoid(), L.get("ce"))
    assert not L.looks_like_probabilities(probs, L.MeanSquaredError())


def test_no_warnings_on_the_normal_path():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.get("sparse_categorical_crossentropy")(LABELS, Z.softmax(-1))
