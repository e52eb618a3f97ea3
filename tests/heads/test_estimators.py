import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from hacknip_ase.heads import HEADS, MLPHead, RidgeHead, XGBoostHead, make_head
from hacknip_ase.heads import transforms

HEAD_NAMES = list(HEADS)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_regressor_beats_dummy_on_held_out(name, regressors, embeddings, alloys, split):
    train, test = split
    y = alloys[1]
    dummy_mae = np.mean(np.abs(y[test] - y[train].mean()))
    mae = np.mean(np.abs(regressors[name].predict_embeddings(embeddings[test]) - y[test]))
    print(f"\n{name}: held-out MAE {mae:.4f} eV/atom, dummy {dummy_mae:.4f}")
    assert mae < 0.5 * dummy_mae


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_classifier_probabilities(name, classifiers, embeddings, labels, split):
    train, test = split
    predictor = classifiers[name]
    proba = predictor.predict_proba_embeddings(embeddings[test])
    assert proba.shape == (len(test), 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    p1 = proba[:, 1]
    prevalence = np.full(len(test), labels[train].mean())
    # calibrated-looking: far better Brier score and log loss than the constant prevalence,
    # and the labels follow the probabilities (high p -> positive)
    assert brier_score_loss(labels[test], p1) < 0.5 * brier_score_loss(labels[test], prevalence)
    assert log_loss(labels[test], np.clip(p1, 1e-6, 1 - 1e-6)) < log_loss(labels[test], prevalence)
    assert roc_auc_score(labels[test], p1) > 0.9
    assert labels[test][p1 > 0.8].mean() > 0.8 and labels[test][p1 < 0.2].mean() < 0.2
    predicted = predictor.predict_embeddings(embeddings[test])
    np.testing.assert_array_equal(predicted, (p1 >= 0.5).astype(int))


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_sklearn_interface(name):
    head = make_head(name)
    classifier = make_head(name, "classification")
    assert is_regressor(head) and is_classifier(classifier)
    params = head.get_params()
    assert params == clone(head).get_params()
    key = next(iter(params))
    head.set_params(**{key: params[key]})
    assert not any(k.endswith("_") for k in vars(head))  # __init__ stores parameters only


def test_target_transform_inverted_on_predict():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = 10 ** (X @ np.array([0.5, -0.3, 0.2, 0.0, 0.1]) + 1.0)  # log-normal, like a modulus
    plain = RidgeHead(alpha=1e-6).fit(X[:150], y[:150])
    logged = RidgeHead(alpha=1e-6, target_transform="log10").fit(X[:150], y[:150])
    np.testing.assert_allclose(logged.predict(X[150:]), y[150:], rtol=1e-4)
    assert np.mean(np.abs(plain.predict(X[150:]) - y[150:])) > 100 * np.mean(np.abs(logged.predict(X[150:]) - y[150:]))


def test_transform_functions():
    x = np.array([0.1, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(transforms.inverse("neglog1m", transforms.forward("-log10(1-x)", x)), x)
    np.testing.assert_allclose(transforms.forward("neglog1m", [0.9, 0.99]), [1.0, 2.0])
    np.testing.assert_allclose(transforms.inverse("log10", transforms.forward("log10", x)), x)
    with pytest.raises(ValueError, match="> 0"):
        transforms.forward("log10", [1.0, 0.0])
    with pytest.raises(ValueError, match="< 1"):
        transforms.forward("neglog1m", [1.0])
    with pytest.raises(ValueError, match="unknown target transform"):
        transforms.canonical("sqrt")


def test_seeded_heads_are_reproducible(embeddings, alloys, split):
    train, test = split
    X, y = embeddings[train, 3], alloys[1][train]
    for head in (XGBoostHead(n_estimators=50), MLPHead(max_iter=50)):
        a = clone(head).fit(X, y).predict(embeddings[test, 3])
        b = clone(head).fit(X, y).predict(embeddings[test, 3])
        np.testing.assert_array_equal(a, b)
    changed = MLPHead(max_iter=50, random_state=1).fit(X, y).predict(embeddings[test, 3])
    assert not np.array_equal(changed, a)


def test_classifier_rejects_more_than_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        make_head("ridge", "classification").fit(np.eye(3), [0, 1, 2])
