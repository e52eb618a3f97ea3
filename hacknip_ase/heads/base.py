"""What every head shares: input checks, standardization, the regression / classification API
and the array state a saved head is rebuilt from without pickle.

Every head standardizes its inputs itself, fixes its seed (``random_state``) and predicts
through plain arrays it owns (``coef_``, ``coefs_``, an XGBoost booster, Keras weights), so a
saved and reloaded head gives bit-identical predictions and no component needs pickle.
Regressors take an optional ``target_transform`` ("log10", "log1p", "ln", "neglog1m") that is
fitted on and inverted on predict; classifiers are binary and give ``predict_proba``. Inputs may
hold NaN (a descriptor that could not be computed, e.g. a modulus of a molecule): trees route
it as missing, the other heads read it as the training mean.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted

from ..files import json_default
from .standardization import standardization
from .transforms import forward, inverse

#: Only these heads can be rebuilt from a saved file without pickle (see predictor_file.py).
SAFE_HEADS: dict[str, type] = {}


def safe_head(cls):
    """Class decorator: list ``cls`` among the heads a file rebuilds from its state (no pickle)."""
    SAFE_HEADS[cls.__name__] = cls
    return cls


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


class Head(BaseEstimator):
    """Input checks, standardization and the array state a saved head is rebuilt from."""

    #: fitted attributes saved as arrays / as JSON (subclasses extend)
    _array_attrs: tuple[str, ...] = ("x_mean_", "x_scale_")
    _meta_attrs: tuple[str, ...] = ("n_features_in_",)

    #: True for heads that handle missing values themselves (trees); the others see a missing
    #: value (NaN: a descriptor that could not be computed) as the training mean
    _keeps_nan = False

    def _fit_scaler(self, X) -> np.ndarray:
        X = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
        self.n_features_in_ = X.shape[1]
        self.x_mean_, self.x_scale_ = standardization(X)
        return self._standardized(X)

    def _scale(self, X) -> np.ndarray:
        check_is_fitted(self, "x_mean_")
        X = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"{type(self).__name__} was fitted on {self.n_features_in_} features, "
                             f"got {X.shape[1]}")
        return self._standardized(X)

    def _standardized(self, X) -> np.ndarray:
        Xs = (X - self.x_mean_) / self.x_scale_
        return Xs if self._keeps_nan else np.nan_to_num(Xs, nan=0.0)

    # -- safe state ---------------------------------------------------------------------
    def get_state(self) -> tuple[dict, dict[str, np.ndarray], dict[str, bytes]]:
        """(JSON metadata, arrays, raw blobs) from which :meth:`from_state` rebuilds the head."""
        check_is_fitted(self, "x_mean_")
        meta = {name: _jsonable(getattr(self, name)) for name in self._meta_attrs}
        arrays = {name: np.asarray(getattr(self, name)) for name in self._array_attrs}
        return meta, arrays, {}

    @classmethod
    def from_state(cls, params: dict, meta: dict, arrays: dict, blobs: dict):
        head = cls(**params)
        for name in cls._meta_attrs:
            setattr(head, name, meta[name])
        for name in cls._array_attrs:
            setattr(head, name, arrays[name])
        head._restore(meta, arrays, blobs)
        return head

    def _restore(self, meta, arrays, blobs) -> None:
        """Rebuild non-array parts (boosters, networks)."""


class RegressorHead(RegressorMixin, Head):
    """Regression: fit on the transformed target, predict on the original scale."""

    task = "regression"

    def fit(self, X, y):
        Xs = self._fit_scaler(X)
        z = forward(self.target_transform, np.ravel(np.asarray(y, dtype=float)))
        if len(z) != len(Xs):
            raise ValueError(f"X has {len(Xs)} rows but y has {len(z)} values")
        if not np.all(np.isfinite(z)):
            raise ValueError("targets must be finite")
        self._fit(Xs, z)
        return self

    def predict(self, X) -> np.ndarray:
        return inverse(self.target_transform, self._decision(self._scale(X)))


class ClassifierHead(ClassifierMixin, Head):
    """Binary classification: ``classes_[1]`` is the positive class."""

    task = "classification"
    _meta_attrs = Head._meta_attrs + ("classes_",)

    def fit(self, X, y):
        Xs = self._fit_scaler(X)
        y = np.ravel(np.asarray(y))
        if len(y) != len(Xs):
            raise ValueError(f"X has {len(Xs)} rows but y has {len(y)} labels")
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"binary classification needs exactly two classes, got {classes.tolist()}")
        self.classes_ = classes
        self._fit(Xs, (y == classes[1]).astype(np.int64))
        return self

    def predict_proba(self, X) -> np.ndarray:
        p1 = np.clip(self._proba1(self._scale(X)), 0.0, 1.0)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X) -> np.ndarray:
        return np.asarray(self.classes_)[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    @classmethod
    def from_state(cls, params, meta, arrays, blobs):
        head = super().from_state(params, meta, arrays, blobs)
        head.classes_ = np.asarray(head.classes_)
        return head


def _jsonable(value):
    """A fitted attribute as stored in the file: numpy values as JSON, anything else as it is."""
    return json_default(value) if isinstance(value, np.ndarray | np.generic) else value
