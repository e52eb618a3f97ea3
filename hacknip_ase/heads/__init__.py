"""Shallow heads on frozen-NIP embeddings: estimators, leak-free depth selection, saved predictors."""

from .domain import DomainDistance
from .estimators import (HEADS, MLPClassifierHead, MLPHead, MODNetClassifierHead, MODNetHead, RidgeClassifierHead,
                         RidgeHead, XGBoostClassifierHead, XGBoostHead, make_head)
from .predictor import Predictor, load_predictor
from .selection import DepthSelector, nested_cross_val_predict

__all__ = ["DepthSelector", "DomainDistance", "HEADS", "MLPClassifierHead", "MLPHead", "MODNetClassifierHead",
           "MODNetHead", "Predictor", "RidgeClassifierHead", "RidgeHead", "XGBoostClassifierHead", "XGBoostHead",
           "load_predictor", "make_head", "nested_cross_val_predict"]
