"""Optuna search over the paper's MODNet space, on training data only.

Space: batch size {16, 32, 128}, learning rate 1e-4..1e-2 (log), n_features 50..256 (capped
at the input dimension), depth 1..4, width 32..256 (log). Each trial fits on a random part of
the data it is given and scores MAE on the rest (``validation_fraction``); the search stops
after ``n_trials`` or after ``patience`` trials in a row that do not improve the best.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from .estimators import MODNetHead

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
