"""Ridge baselines: ridge regression and its probabilistic analogue, L2-penalized logistic regression."""

from __future__ import annotations

import numpy as np

from .base import ClassifierHead, Head, RegressorHead, safe_head, sigmoid

_ALPHAS = tuple(np.logspace(-3, 4, 15))


class _Linear:
    _array_attrs = Head._array_attrs + ("coef_", "intercept_")


@safe_head
class RidgeHead(_Linear, RegressorHead):
    """Ridge regression; ``alpha=None`` picks it by efficient leave-one-out on the fit data."""

    def __init__(self, alpha: float | None = None, target_transform: str | None = None):
        self.alpha = alpha
        self.target_transform = target_transform

    def _fit(self, Xs, z):
        from sklearn.linear_model import Ridge, RidgeCV

        model = RidgeCV(alphas=_ALPHAS) if self.alpha is None else Ridge(alpha=self.alpha)
        model.fit(Xs, z)
        self.coef_ = np.asarray(model.coef_, dtype=float)
        self.intercept_ = np.asarray(model.intercept_, dtype=float)

    def _decision(self, Xs):
        return Xs @ self.coef_ + self.intercept_


@safe_head
class RidgeClassifierHead(_Linear, ClassifierHead):
    """L2-penalized logistic regression (the ridge analogue that gives probabilities)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def _fit(self, Xs, yb):
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1.0 / self.alpha, max_iter=5000)
        model.fit(Xs, yb)
        self.coef_ = model.coef_[0].astype(float)
        self.intercept_ = np.asarray(model.intercept_[0], dtype=float)

    def _proba1(self, Xs):
        return sigmoid(Xs @ self.coef_ + self.intercept_)
