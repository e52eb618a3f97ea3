"""The choices :meth:`~hacknip_ase.heads.Predictor.fit` makes after the depth, each on the inner
splits of the training data only: the head it starts from, the target transform (stage 2) and
the head's hyperparameters (stage 3)."""

from __future__ import annotations

from sklearn.base import clone

from .estimators import HEADS, make_head
from .modnet_heads import MODNetHead
from .selection import score_on_splits, summarize_scores
from .transforms import candidates as allowed_transforms
from .transforms import canonical
from .tuning import tune_modnet, tune_xgboost
from .xgboost_heads import XGBoostClassifierHead, XGBoostHead


def initial_head(head, task, transform, params, random_state):
    """The unfitted head the stages start from: a short name built with ``params`` (seeded with
    ``random_state`` unless ``params`` seed it), or the given estimator; with ``transform`` set."""
    if isinstance(head, str):
        cls = HEADS.get(head, (None, None))[task == "classification"]
        params = dict(params or {})
        if cls is not None and "random_state" in cls().get_params():
            params.setdefault("random_state", random_state)
        if transform is not None:
            params["target_transform"] = canonical(transform)
        return make_head(head, task, **params)
    if params:
        raise ValueError("head_params only applies to a head given by name")
    if transform is not None:
        if "target_transform" not in head.get_params():
            raise ValueError(f"{type(head).__name__} takes no target_transform")
        head = head.set_params(target_transform=canonical(transform))
    return head


def choose_transform(estimator, features, y, splitter, scoring, untransformed_entry, untransformed_held_out):
    """Stage 2: the target transform with the best inner score on the chosen features."""
    if "target_transform" not in estimator.get_params():
        raise ValueError(f"{type(estimator).__name__} takes no target_transform")
    entries, held = [], []
    for name in allowed_transforms(y):
        if name is None and untransformed_entry is not None:  # already scored on these splits
            entry = {k: untransformed_entry[k] for k in ("score", "std", "fold_scores")}
            predictions = untransformed_held_out
        else:
            scores, predictions = score_on_splits(clone(estimator).set_params(target_transform=name), features,
                                                  y, splitter, scoring)
            entry = summarize_scores(scores)
        entries.append({"transform": name, **entry})
        held.append(predictions)
    best = max(range(len(entries)), key=lambda k: entries[k]["score"])  # first of equals: no transform
    chosen = entries[best]["transform"]
    return ({"candidates": entries, "chosen": chosen}, clone(estimator).set_params(target_transform=chosen),
            held[best])


def tune_head(estimator, task, features, y, splitter, scoring, n_trials, patience, cpu_budget, random_state):
    """Stage 3: the head's hyperparameters, searched on training data only."""
    if isinstance(estimator, (XGBoostHead, XGBoostClassifierHead)):
        return tune_xgboost(features, y, splitter, base=estimator, scoring=scoring, n_trials=n_trials,
                            patience=patience or 15, cpu_budget=cpu_budget, random_state=random_state)
    if task == "regression" and isinstance(estimator, MODNetHead):
        fitted, study = tune_modnet(features, y, n_trials=n_trials, patience=patience or 10, base=estimator,
                                    random_state=random_state)
        return fitted, {"space": "modnet", "best_params": study.best_params, "n_trials": len(study.trials),
                        "best_value": study.best_value}
    raise ValueError("tune_trials needs the xgboost head or the modnet regression head")
