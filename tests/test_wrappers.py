"""SKLearnClassifier / SKLearnRegressor: scikit-learn's own estimator checks, and values against sklearn.

scikit-learn's check suite runs on both estimators (with ``fit_kwargs={"seed": 0}`` so fit is
reproducible and the determinism checks run too); the other tests compare scores, probabilities and
cross-validation results with sklearn's metrics and with the module's outputs computed by torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew

sklearn = pytest.importorskip("sklearn", reason="the wrappers need scikit-learn: pip install scikit-learn")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss, r2_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from epochwise.wrappers import SKLearnClassifier, SKLearnRegressor  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny nets: one intra-op thread is many times faster on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_classifier(X, y, hidden=8, learning_rate=0.01):
    net = nn.Sequential(nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, len(np.unique(y))))
    model = ew.Model(net, device="cpu")
    model.compile(optimizer=ew.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    return model


def build_binary(X, y):
    model = ew.Model(nn.Sequential(nn.Linear(X.shape[1], 8), nn.ReLU(), nn.Linear(8, 1)), device="cpu")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def build_regressor(X, y, hidden=8, learning_rate=0.01):
    net = nn.Sequential(nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, y.shape[1]))
    model = ew.Model(net, device="cpu")
    model.compile(optimizer=ew.optimizers.Adam(learning_rate), loss="mse")
    return model


def classification(n=120, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, features)) * 3
    y = rng.integers(0, classes, n)
    return centers[y] + rng.normal(size=(n, features)), y


def regression(n=120, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    return x, x @ np.arange(1.0, features + 1) + 0.1 * rng.normal(size=n)


X, Y = classification()
XR, YR = regression()
FIT = {"epochs": 5, "batch_size": 16, "seed": 0}


# --- scikit-learn's own checks ----------------------------------------------------------------------
@parametrize_with_checks(
    [
        SKLearnClassifier(build_classifier, fit_kwargs={"epochs": 2, "seed": 0}),
        SKLearnRegressor(build_regressor, fit_kwargs={"epochs": 2, "seed": 0}),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --- values against scikit-learn and torch --------------------------------------------------------
def test_classifier_score_proba_and_labels_agree_with_sklearn_and_torch():
    labels = np.array(["cat", "dog", "eel"])[Y]
    clf = SKLearnClassifier(build_classifier, model_kwargs={"learning_rate": 0.05}, fit_kwargs=FIT).fit(X, labels)
    assert clf.classes_.tolist() == ["cat", "dog", "eel"] and clf.n_features_in_ == 4
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    with torch.no_grad():  # the module's logits through torch's softmax
        expected = torch.softmax(clf.model_.module(torch.as_tensor(X, dtype=torch.float32)), dim=1).numpy()
    assert np.allclose(proba, expected, atol=1e-6)
    predicted = clf.predict(X)
    assert predicted.tolist() == clf.classes_[expected.argmax(axis=1)].tolist()
    assert clf.score(X, labels) == accuracy_score(labels, predicted)
    assert clf.score(X, labels) > 0.9  # separable blobs
    assert clf.history_ == clf.model_.history.history and clf.epoch_ == 5


def test_binary_classifier_with_one_sigmoid_output():
    y = np.where(Y == 0, -1, 7)  # two integer labels, neither 0/1
    clf = SKLearnClassifier(build_binary, fit_kwargs=FIT).fit(X, y)
    proba = clf.predict_proba(X)
    with torch.no_grad():
        p = torch.sigmoid(clf.model_.module(torch.as_tensor(X, dtype=torch.float32))).numpy().ravel()
    assert np.allclose(proba, np.stack([1 - p, p], axis=1), atol=1e-6)
    assert clf.predict(X).tolist() == np.where(p > 0.5, 7, -1).tolist()
    assert clf.score(X, y) == accuracy_score(y, clf.predict(X))


def test_regressor_score_is_r2_and_predictions_keep_the_target_shape():
    reg = SKLearnRegressor(build_regressor, fit_kwargs={**FIT, "epochs": 30}).fit(XR, YR)
    pred = reg.predict(XR)
    assert pred.shape == (len(XR),) and pred.dtype == np.float64
    with torch.no_grad():
        expected = reg.model_.module(torch.as_tensor(XR, dtype=torch.float32)).numpy().ravel()
    assert np.allclose(pred, expected, atol=1e-6)
    assert reg.score(XR, YR) == pytest.approx(r2_score(YR, pred), abs=1e-12)
    two = SKLearnRegressor(build_regressor, fit_kwargs=FIT).fit(XR, np.stack([YR, -YR], axis=1))
    assert two.predict(XR).shape == (len(XR), 2)


def test_validation_data_and_class_weight_take_the_labels():
    labels = np.array(["cat", "dog", "eel"])[Y]
    fit = {**FIT, "validation_data": (X[:40], labels[:40])}
    clf = SKLearnClassifier(build_classifier, fit_kwargs=fit).fit(X[40:], labels[40:])
    # the last epoch's val_loss is the crossentropy of the final model on the validation labels
    assert clf.history_["val_loss"][-1] == pytest.approx(log_loss(labels[:40], clf.predict_proba(X[:40])), rel=1e-5)
    weighted = SKLearnClassifier(build_classifier, fit_kwargs={**FIT, "class_weight": {"dog": 3.0}}).fit(X, labels)
    by_sample = SKLearnClassifier(build_classifier, fit_kwargs=FIT).fit(
        X, labels, sample_weight=np.where(labels == "dog", 3.0, 1.0))
    assert np.allclose(weighted.predict_proba(X), by_sample.predict_proba(X), atol=1e-6)
    with pytest.raises(ValueError, match=r"class_weight holds labels \['cow'\] that are not in the training labels"):
        SKLearnClassifier(build_classifier, fit_kwargs={**FIT, "class_weight": {"cow": 2.0}}).fit(X, labels)


def test_cross_val_score_equals_clone_fit_score_on_each_fold():
    clf = SKLearnClassifier(build_classifier, fit_kwargs=FIT)
    folds = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(clf, X, Y, cv=folds)
    by_hand = [clone(clf).fit(X[tr], Y[tr]).score(X[te], Y[te]) for tr, te in folds.split(X)]
    assert scores.tolist() == by_hand  # seeded: the same numbers, fold by fold


def test_clone_gives_an_unfitted_estimator_with_equal_params():
    clf = SKLearnClassifier(build_classifier, model_kwargs={"hidden": 4}, fit_kwargs=FIT).fit(X, Y)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert copy.fit_kwargs is not clf.fit_kwargs  # sklearn deep-copies the dicts
    with pytest.raises(NotFittedError):
        copy.predict(X)


def test_the_same_seed_gives_the_same_fit_and_another_seed_another():
    def proba(seed):
        return SKLearnClassifier(build_classifier, fit_kwargs={**FIT, "seed": seed}).fit(X, Y).predict_proba(X)

    assert np.array_equal(proba(3), proba(3))
    assert not np.allclose(proba(3), proba(4))
    unseeded = SKLearnClassifier(build_classifier, fit_kwargs={"epochs": 1})
    assert not np.allclose(unseeded.fit(X, Y).predict_proba(X), unseeded.fit(X, Y).predict_proba(X))
    assert SKLearnClassifier(build_classifier).__sklearn_tags__().non_deterministic
    assert not SKLearnClassifier(build_classifier, fit_kwargs={"seed": 0}).__sklearn_tags__().non_deterministic


def test_nested_params_reach_model_kwargs_and_fit_kwargs():
    given = {"epochs": 2}
    clf = SKLearnClassifier(build_classifier, fit_kwargs=given)
    assert clf.get_params()["fit_kwargs__epochs"] == 2 and "fit_kwargs__epochs" not in clf.get_params(deep=False)
    clf.set_params(fit_kwargs__batch_size=16, model_kwargs__hidden=5)
    assert clf.fit_kwargs == {"epochs": 2, "batch_size": 16} and clf.model_kwargs == {"hidden": 5}
    assert given == {"epochs": 2}  # the dict passed in is not changed
    clf.fit(X, Y)
    assert clf.model_.module[0].out_features == 5


def test_grid_search_over_batch_size_and_learning_rate():
    grid = {"fit_kwargs__batch_size": [16, 64], "model_kwargs__learning_rate": [1e-4, 0.05]}
    search = GridSearchCV(SKLearnClassifier(build_classifier, fit_kwargs=FIT), grid, cv=2).fit(X, Y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["model_kwargs__learning_rate"] == 0.05  # 1e-4 barely moves in 5 epochs
    best = search.best_estimator_
    assert best.fit_kwargs["batch_size"] == search.best_params_["fit_kwargs__batch_size"]
    assert best.model_.optimizer.learning_rate == pytest.approx(0.05)
    steps = -(-len(X) // best.fit_kwargs["batch_size"]) * 5  # refit on all of X: the batch size was used
    assert best.model_.optimizer.iterations == steps


def test_pipeline_with_a_scaler_equals_scaling_by_hand():
    pipe = make_pipeline(StandardScaler(), SKLearnClassifier(build_classifier, fit_kwargs=FIT)).fit(X, Y)
    scaled = StandardScaler().fit_transform(X)
    alone = SKLearnClassifier(build_classifier, fit_kwargs=FIT).fit(scaled, Y)
    assert np.allclose(pipe.predict_proba(X), alone.predict_proba(scaled))


def test_warm_start_continues_the_fitted_model():
    clf = SKLearnClassifier(build_classifier, warm_start=True, fit_kwargs={**FIT, "epochs": 2}).fit(X, Y)
    first, steps = clf.model_, clf.model_.optimizer.iterations
    clf.fit(X, Y)
    assert clf.model_ is first and clf.model_.optimizer.iterations == 2 * steps
    cold = SKLearnClassifier(build_classifier, fit_kwargs={**FIT, "epochs": 2}).fit(X, Y)
    model = cold.model_
    assert cold.fit(X, Y).model_ is not model
    with pytest.raises(ValueError, match=r"y \(warm_start=True\) holds labels \[9\] that are not in the training"):
        clf.fit(X, np.where(Y == 2, 9, Y))


def test_a_model_instance_is_copied_with_its_weights_for_each_fit():
    model = build_classifier(X, Y)
    start = {k: v.clone() for k, v in model.module.state_dict().items()}
    clf = SKLearnClassifier(model, fit_kwargs=FIT)
    a = clf.fit(X, Y).predict_proba(X)
    assert clf.model_ is not model and all(torch.equal(start[k], v) for k, v in model.module.state_dict().items())
    assert np.array_equal(clf.fit(X, Y).predict_proba(X), a)  # each fit starts from the given weights
    assert model.optimizer.iterations == 0


# --- errors before training -----------------------------------------------------------------------
def uncompiled(X, y):
    return ew.Model(nn.Linear(X.shape[1], 3), device="cpu")


def _not_a_model(X, y):
    return nn.Linear(X.shape[1], 3)


def narrow(X, y):
    model = ew.Model(nn.Linear(X.shape[1], 2), device="cpu")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize(
    "estimator, error, message",
    [
        (SKLearnClassifier("mlp"), TypeError, r"SKLearnClassifier\(model='mlp'\): model must be a function build"),
        (SKLearnClassifier(_not_a_model), TypeError, "the build function returned Linear; it must return a compiled"),
        (SKLearnClassifier(uncompiled), ValueError, r"the model must be compiled; call model.compile"),
        (SKLearnClassifier(build_classifier, model_kwargs={"hiden": 3}), TypeError,
         r"cannot be called as build\(X=..., y=..., \*\*model_kwargs\) with model_kwargs \['hiden'\]"),
        (SKLearnClassifier(build_classifier, fit_kwargs={"epoch": 3}), TypeError,
         r"'epoch' in fit_kwargs is not an argument of epochwise.Model.fit. Did you mean 'epochs'"),
        (SKLearnClassifier(build_classifier, fit_kwargs=[("epochs", 3)]), TypeError,
         r"fit_kwargs must be a dict of keyword arguments or None"),
        (SKLearnClassifier(narrow), ValueError, r"the module gives 2 outputs per sample but y has 3 classes"),
        (SKLearnClassifier(build_classifier(X, Y), model_kwargs={"hidden": 3}), ValueError,
         r"model_kwargs \['hidden'\] are for a build function"),
        (SKLearnRegressor(narrow), ValueError, r"the module gives 2 outputs per sample but y has 1 column"),
    ],
)
def test_wrong_arguments_are_clear_errors(estimator, error, message):
    y = YR[: len(X)] if isinstance(estimator, SKLearnRegressor) else Y
    with pytest.raises(error, match=message):
        estimator.fit(X, y)
    with pytest.raises(NotFittedError):  # a failed fit leaves the estimator unfitted
        estimator.predict(X)


def test_one_class_and_unknown_fit_arguments_are_errors():
    with pytest.raises(ValueError, match=r"y holds one class \(\[4\]\); a classifier needs at least two"):
        SKLearnClassifier(build_classifier).fit(X, np.full(len(X), 4))
    with pytest.raises(TypeError, match=r"'x' in the fit\(\) call is not an argument .* X and y are fit's own"):
        SKLearnClassifier(build_classifier).fit(X, Y, x=X)


def test_missing_sklearn_is_a_clear_import_error(monkeypatch):
    monkeypatch.setattr("epochwise.wrappers._SKLEARN", False)
    with pytest.raises(ImportError, match="SKLearnRegressor needs scikit-learn: pip install scikit-learn"):
        SKLearnRegressor(build_regressor)
