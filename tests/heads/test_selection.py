import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from hacknip_ase.heads import DepthSelector, RidgeHead, nested_cross_val_predict
from hacknip_ase.heads.selection import selection_scheme, take_depths

SEEN = []  # (phase, row fingerprints) of every call the spy gets, in order


def _rows(X):
    return frozenset(row.tobytes() for row in np.asarray(X, dtype=np.float64))


class SpyHead(RegressorMixin, BaseEstimator):
    """A ridge head that records which rows it is fitted on and asked to predict."""

    def fit(self, X, y):
        SEEN.append(("fit", _rows(X)))
        self.head_ = RidgeHead().fit(X, y)
        return self

    def predict(self, X):
        SEEN.append(("predict", _rows(X)))
        return self.head_.predict(X)


def test_selection_never_sees_the_test_fold(embeddings, alloys):
    SEEN.clear()
    # equal compositions give equal depth-0 vectors; tag every row so fingerprints are unique
    X = embeddings.astype(np.float64)
    X[:, :, 0] += 1e-3 * np.arange(len(X))[:, None]
    y = alloys[1]
    selector = DepthSelector(SpyHead(), candidates="concat", cv=3)
    predictions, folds = nested_cross_val_predict(selector, X, y, cv=4)
    n_inner_calls = 0
    fold = 0
    for phase, rows in SEEN:
        test = folds[fold]["test"]
        test_rows = _rows(take_depths(X[test], folds[fold]["best_depths"]))
        if phase == "predict" and rows == test_rows:  # the one outer prediction ends the fold
            fold += 1
            continue
        any_depth_test = set().union(*(_rows(X[test][:, d]) for d in range(X.shape[1])))
        full_test = _rows(X[test].reshape(len(test), -1))
        assert not rows & (any_depth_test | full_test), f"selection in outer fold {fold} saw test rows"
        n_inner_calls += 1
    assert fold == 4
    # 6 candidates x 3 inner folds x (fit, predict to score, predict kept as held-out prediction) + refit
    assert n_inner_calls == 4 * (6 * 3 * 3 + 1)
    assert np.mean(np.abs(predictions - y)) < 0.3 * np.mean(np.abs(y - y.mean()))


def test_selection_curve_and_refit(embeddings, alloys, split):
    train, _ = split
    X, y = embeddings[train], alloys[1][train]
    selector = DepthSelector(RidgeHead(), cv=4).fit(X, y)
    curve = selector.selection_curve_
    assert [c["candidate"] for c in curve] == [[[0, d]] for d in range(X.shape[1])]
    best = max(curve, key=lambda c: c["score"])
    assert selector.best_depths_ == ((0, best["candidate"][0][1]),)
    assert all(c["score"] < 0 and len(c["fold_scores"]) == 4 for c in curve)  # negative MAE
    # depth 0 is the element embedding only: it cannot see strain, so it must score worst
    assert curve[0]["score"] == min(c["score"] for c in curve)
    refit = RidgeHead().fit(take_depths(X, selector.best_depths_), y)
    np.testing.assert_allclose(selector.predict(X), refit.predict(take_depths(X, selector.best_depths_)))
    again = DepthSelector(RidgeHead(), cv=4).fit(X, y)
    assert again.selection_curve_ == curve  # fixed seed: same inner splits


def test_validation_split_and_explicit_candidates(embeddings, alloys, split):
    train, _ = split
    selector = DepthSelector(RidgeHead(), candidates=[1, (2, 3), 4], validation_fraction=0.25)
    selector.fit(embeddings[train], alloys[1][train])
    assert [c["label"] for c in selector.selection_curve_] == ["1", "2+3", "4"]
    assert all(len(c["fold_scores"]) == 1 for c in selector.selection_curve_)
    assert selector.transform(embeddings[:2]).shape[1] == 64 * len(selector.best_depths_)


def test_multi_backbone_candidates(embeddings, alloys, split):
    train, _ = split
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(len(embeddings), 3, 8))  # a second "backbone" that knows nothing
    X = [embeddings[train], noise[train]]
    selector = DepthSelector(RidgeHead(), candidates="multi", cv=3, source_names=["chgnet", "noise"])
    selector.fit(X, alloys[1][train])
    labels = [c["label"] for c in selector.selection_curve_]
    assert labels[:5] == [f"chgnet:{d}" for d in range(5)] and labels[5:8] == [f"noise:{d}" for d in range(3)]
    singles = selector.selection_curve_[:8]
    best_chgnet = max(singles[:5], key=lambda c: c["score"])["candidate"][0]
    best_noise = max(singles[5:], key=lambda c: c["score"])["candidate"][0]
    assert selector.selection_curve_[8]["candidate"] == [best_chgnet, best_noise]
    assert selector.best_depths_[0][0] == 0  # the informative backbone wins
    assert selector.predict([embeddings[:3], noise[:3]]).shape == (3,)
    with pytest.raises(ValueError, match="same structures"):
        selector.fit([embeddings, noise[:10]], alloys[1])


def test_selection_scheme_by_head_and_size():
    s = selection_scheme
    assert s(500, "xgboost") == {"cv": 5, "validation_fraction": None}
    assert s(3000, "xgboost")["cv"] == 3 and s(9000, "xgboost") == {"cv": None, "validation_fraction": 0.2}
    assert s(1000, "mlp")["cv"] == 3 and s(1200, "mlp")["validation_fraction"] == 0.2
    assert s(300, "modnet")["cv"] == 3 and s(301, "modnet")["validation_fraction"] == 0.2
    assert s(9000, "xgboost", inner_cv=4)["cv"] == 4 and s(100, "ridge", holdout=0.3)["validation_fraction"] == 0.3


def test_held_out_predictions_of_the_chosen_depth_match_its_score():
    rng = np.random.default_rng(1)
    y = rng.normal(size=60)
    X = rng.normal(size=(60, 3, 4))
    X[:, 2, 0] = y + 0.01 * rng.normal(size=60)  # only depth 2 carries the target
    selector = DepthSelector(RidgeHead(), cv=4).fit(X, y)
    held_out = selector.best_held_out_predictions_
    assert selector.best_depths_ == ((0, 2),) and np.isfinite(held_out).all()  # k-fold: every row once
    # the curve's score is the mean over folds of -MAE; the pooled MAE of equal folds is the same number
    assert -np.mean(np.abs(held_out - y)) == pytest.approx(selector.best_score_)
    holdout = DepthSelector(RidgeHead(), validation_fraction=0.25).fit(X, y).best_held_out_predictions_
    assert np.isfinite(holdout).sum() == 15  # one 25 % hold-out: the other rows were never held out


def test_a_given_validation_part_is_the_only_scored_part(embeddings, alloys, split):
    """MoleculeNet's protocol: heads fit on train, depths scored on valid, refit on both; nothing else seen."""
    from hacknip_ase.heads import Predictor
    from hacknip_ase.heads.selection import validation_split

    train_valid, test = split
    X = embeddings.astype(np.float64)
    X[:, :, 0] += 1e-3 * np.arange(len(X))[:, None]  # unique fingerprints
    y = alloys[1]
    train, valid = train_valid[:-8], train_valid[-8:]
    rows = np.concatenate([train, valid])
    SEEN.clear()
    selector = DepthSelector(SpyHead(), cv=validation_split(len(train), len(valid))).fit(X[rows], y[rows])
    *scoring, (last_phase, refit_rows) = SEEN
    depth_rows = [lambda part, d=d: _rows(X[part][:, d]) for d in range(X.shape[1])]
    for phase, seen in scoring:
        assert seen in [f(train if phase == "fit" else valid) for f in depth_rows]
    assert last_phase == "fit" and refit_rows == _rows(take_depths(X[rows], selector.best_depths_))
    assert not any(seen & _rows(take_depths(X[test], selector.best_depths_)) for _, seen in SEEN)
    for entry in selector.selection_curve_:  # each score: a head fit on train, MAE on valid
        d = entry["candidate"][0][1]
        head = RidgeHead().fit(X[train][:, d], y[train])
        assert entry["score"] == pytest.approx(-np.mean(np.abs(head.predict(X[valid][:, d]) - y[valid])))
    predictor = Predictor.fit(X[rows], y[rows], backbone={"name": "x", "model": "m", "weights_sha256": "0",
                                                            "n_depths": X.shape[1], "dim": X.shape[2]},
                              head="ridge", cv=validation_split(len(train), len(valid)))
    assert predictor.selection["cv"] == "given validation part (8 rows)"
    assert predictor.depths == selector.best_depths_ and predictor.n_train == len(rows)
