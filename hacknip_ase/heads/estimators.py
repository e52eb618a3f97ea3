"""The head registry: short names ("ridge", "xgboost", "mlp", "modnet") -> (regressor, classifier).

The heads themselves live one family per module (:mod:`.ridge_heads`, :mod:`.xgboost_heads`,
:mod:`.mlp_heads`, :mod:`.modnet_heads`) on the shared machinery of :mod:`.base`; they are all
importable from here and from :mod:`hacknip_ase.heads`.
"""

from __future__ import annotations

from .base import SAFE_HEADS
from .mlp_heads import MLPClassifierHead, MLPHead
from .modnet_heads import MODNetClassifierHead, MODNetHead
from .ridge_heads import RidgeClassifierHead, RidgeHead
from .xgboost_heads import XGBOOST_OBJECTIVES, XGBoostClassifierHead, XGBoostHead

__all__ = ["HEADS", "SAFE_HEADS", "XGBOOST_OBJECTIVES", "MLPClassifierHead", "MLPHead", "MODNetClassifierHead",
           "MODNetHead", "RidgeClassifierHead", "RidgeHead", "XGBoostClassifierHead", "XGBoostHead", "make_head"]

#: short names used by Predictor.fit(head=...): name -> (regressor, classifier)
HEADS = {
    "ridge": (RidgeHead, RidgeClassifierHead),
    "xgboost": (XGBoostHead, XGBoostClassifierHead),
    "mlp": (MLPHead, MLPClassifierHead),
    "modnet": (MODNetHead, MODNetClassifierHead),
}


def make_head(name: str, task: str = "regression", **params):
    """A head by short name ("ridge", "xgboost", "mlp", "modnet") and task."""
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    try:
        pair = HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; valid: {', '.join(HEADS)}") from None
    return pair[task == "classification"](**params)
