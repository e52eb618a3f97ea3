"""Gradient-boosted trees (XGBoost ``hist``), saved in XGBoost's own JSON format."""

from __future__ import annotations

import numpy as np

from .base import ClassifierHead, RegressorHead, safe_head


class _XGBoost:
    _keeps_nan = True  # xgboost learns a default direction for missing values at every split

    # the parameters both heads share; each head's signature gives its defaults (sklearn reads it)
    def __init__(self, n_estimators, learning_rate, max_depth, subsample, colsample_bytree, min_child_weight,
                 reg_lambda, random_state, n_jobs):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _train(self, Xs, target, objective):
        import xgboost as xgb

        params = {
            "objective": objective, "eta": self.learning_rate, "max_depth": self.max_depth,
            "subsample": self.subsample, "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight, "lambda": self.reg_lambda,
            "seed": self.random_state, "nthread": self.n_jobs, "tree_method": "hist",
        }
        self.booster_ = xgb.train(params, xgb.DMatrix(Xs, label=target), num_boost_round=self.n_estimators)

    def _raw(self, Xs):
        return self.booster_.inplace_predict(np.ascontiguousarray(Xs))

    def get_state(self):
        meta, arrays, blobs = super().get_state()
        blobs["xgboost.json"] = bytes(self.booster_.save_raw(raw_format="json"))  # XGBoost's own format
        return meta, arrays, blobs

    def _restore(self, meta, arrays, blobs):
        import xgboost as xgb

        self.booster_ = xgb.Booster()
        self.booster_.load_model(bytearray(blobs["xgboost.json"]))
        self.booster_.set_param({"nthread": self.n_jobs})


XGBOOST_OBJECTIVES = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror")


@safe_head
class XGBoostHead(_XGBoost, RegressorHead):
    """Gradient-boosted trees (xgboost ``hist``); ``n_jobs`` threads, seeded.

    ``objective`` is xgboost's regression loss: "reg:squarederror" (default),
    "reg:absoluteerror" or "reg:pseudohubererror" (the tuning space tries all three: the
    benchmarks score MAE).
    """

    def __init__(self, n_estimators: int = 400, learning_rate: float = 0.05, max_depth: int = 4,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, random_state: int = 0, n_jobs: int = 1,
                 target_transform: str | None = None, objective: str = "reg:squarederror"):
        super().__init__(n_estimators, learning_rate, max_depth, subsample, colsample_bytree, min_child_weight,
                         reg_lambda, random_state, n_jobs)
        self.objective = objective
        self.target_transform = target_transform

    def _fit(self, Xs, z):
        if self.objective not in XGBOOST_OBJECTIVES:
            raise ValueError(f"unknown xgboost objective {self.objective!r}; valid: {', '.join(XGBOOST_OBJECTIVES)}")
        self._train(Xs, z, self.objective)

    def _decision(self, Xs):
        return self._raw(Xs).astype(float)


@safe_head
class XGBoostClassifierHead(_XGBoost, ClassifierHead):
    """Gradient-boosted trees with a logistic objective."""

    def __init__(self, n_estimators: int = 300, learning_rate: float = 0.05, max_depth: int = 4,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, random_state: int = 0, n_jobs: int = 1):
        super().__init__(n_estimators, learning_rate, max_depth, subsample, colsample_bytree, min_child_weight,
                         reg_lambda, random_state, n_jobs)

    def _fit(self, Xs, yb):
        self._train(Xs, yb, "binary:logistic")

    def _proba1(self, Xs):
        return self._raw(Xs).astype(float)
