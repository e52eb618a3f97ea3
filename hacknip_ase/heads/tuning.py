"""Optuna searches over head hyperparameters, on training data only.

MODNet (the paper's space): batch size {16, 32, 128}, learning rate 1e-4..1e-2 (log),
n_features 50..256 (capped at the input dimension), depth 1..4, width 32..256 (log). Each trial
fits on a random part of the data it is given and scores MAE on the rest
(``validation_fraction``); the search stops after ``n_trials`` or after ``patience`` trials in
a row that do not improve the best.

XGBoost (:func:`tune_xgboost`): trees 200..1000 (log), learning rate 0.01..0.2 (log), depth
3..7, row subsampling 0.5..1, column subsampling 0.2..0.9, min child weight 1..20 (log), L2
1e-3..10 (log), loss squared / absolute / pseudo-Huber. (Bounded so that one trial costs a few
CPU seconds on Matbench-sized training parts: on 400 rows x 466 features a 1,500-tree depth-8
trial scored by 5 inner folds took ~36 CPU-s.) Each trial is scored on the inner
splits it is given (the same splits the depth and transform choices used), so the search, like
every other choice, sees the training part only; it stops after ``n_trials``, after
``patience`` stale trials, or once ``cpu_budget`` CPU seconds are spent. The first trial is the
untuned default, so tuning can only keep or improve the inner score.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from .modnet_heads import MODNetHead
from .selection import score_on_splits
from .xgboost_heads import XGBOOST_OBJECTIVES

BATCH_SIZES = (16, 32, 128)


class StopWhenStale:
    """Optuna callback: stop the study after ``patience`` completed trials without a new best."""

    def __init__(self, patience: int = 10) -> None:
        self.patience = patience

    def __call__(self, study, trial) -> None:
        import optuna

        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            return
        best = study.best_trial.number
        if sum(t.number > best for t in complete) >= self.patience:
            study.stop()


def suggest_modnet_params(trial, n_input: int) -> dict:
    """One point of the paper's MODNet search space."""
    low = min(50, n_input)
    return {
        "batch_size": trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "n_features": trial.suggest_int("n_features", low, min(256, n_input)),
        "depth": trial.suggest_int("depth", 1, 4),
        "width": trial.suggest_int("width", 32, 256, log=True),
    }


def tune_modnet(X, y, *, n_trials: int = 50, patience: int = 10, validation_fraction: float = 0.2,
                base: MODNetHead | None = None, random_state: int = 0, timeout: float | None = None):
    """Search, then refit the best MODNet on all of ``X, y``. Returns ``(head, study)``."""
    import optuna

    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    base = base if base is not None else MODNetHead(random_state=random_state)
    X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=validation_fraction, random_state=random_state)

    def objective(trial):
        head = clone(base).set_params(**suggest_modnet_params(trial, X.shape[1]))
        head.fit(X_fit, y_fit)
        return float(np.mean(np.abs(head.predict(X_val) - y_val)))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=random_state))
    study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[StopWhenStale(patience)])
    head = clone(base).set_params(**study.best_params).fit(X, y)
    return head, study


class StopAfterCPU:
    """Optuna callback: stop once the process has spent ``budget`` CPU seconds since it was made.

    CPU time, not wall time: on a shared machine wall time depends on the neighbours.
    """

    def __init__(self, budget: float | None) -> None:
        self.budget = budget
        self.start = time.process_time()
        self.hit = False

    def __call__(self, study, trial) -> None:
        if self.budget is not None and time.process_time() - self.start >= self.budget:
            self.hit = True
            study.stop()


def suggest_xgboost_params(trial, names=None) -> dict:
    """One point of the XGBoost search space (see the module docstring), restricted to ``names``
    (the parameters the head has: a classifier has no regression ``objective``)."""
    space = {
        "n_estimators": lambda: trial.suggest_int("n_estimators", 200, 1000, log=True),
        "learning_rate": lambda: trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "max_depth": lambda: trial.suggest_int("max_depth", 3, 7),
        "subsample": lambda: trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": lambda: trial.suggest_float("colsample_bytree", 0.2, 0.9),
        "min_child_weight": lambda: trial.suggest_float("min_child_weight", 1.0, 20.0, log=True),
        "reg_lambda": lambda: trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        "objective": lambda: trial.suggest_categorical("objective", list(XGBOOST_OBJECTIVES)),
    }
    return {name: suggest() for name, suggest in space.items() if names is None or name in names}


def tune_xgboost(X, y, splitter, *, base, scoring: str = "neg_mean_absolute_error", n_trials: int = 40,
                 patience: int = 15, cpu_budget: float | None = None, random_state: int = 0):
    """TPE search of the XGBoost space scored on ``splitter``'s inner splits of ``X, y``; refits
    the best on all of them. Returns ``(head, record)``; ``record`` holds the best parameters, the
    trials run, the CPU seconds spent and whether the budget stopped the search."""
    import optuna

    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    splits = list(splitter.split(X, y))  # fixed once: every trial sees the same splits
    defaults = {k: v for k, v in base.get_params().items() if k in _XGBOOST_SPACE}

    def objective(trial):
        head = clone(base).set_params(**suggest_xgboost_params(trial, defaults))
        scores, _ = score_on_splits(head, X, y, splits, scoring)
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=random_state))
    study.enqueue_trial(defaults)
    budget = StopAfterCPU(cpu_budget)
    study.optimize(objective, n_trials=n_trials, callbacks=[StopWhenStale(patience), budget])
    best = dict(study.best_params)
    head = clone(base).set_params(**best).fit(X, y)
    record = {"space": "xgboost", "best_params": best, "best_score": float(study.best_value),
              "default_score": float(study.trials[0].value), "n_trials": len(study.trials),
              "cpu_seconds": round(time.process_time() - budget.start, 1), "cpu_budget": cpu_budget,
              "stopped_by_budget": budget.hit, "seed": random_state, "best_trial": study.best_trial.number}
    return head, record


_XGBOOST_SPACE = ("n_estimators", "learning_rate", "max_depth", "subsample", "colsample_bytree", "min_child_weight",
                  "reg_lambda", "objective")
