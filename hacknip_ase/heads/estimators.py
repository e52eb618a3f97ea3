"""Shallow heads on (n, dim) embedding matrices, behind the scikit-learn estimator API.

Every head standardizes its inputs itself, fixes its seed (``random_state``) and predicts
through plain arrays it owns (``coef_``, ``coefs_``, an XGBoost booster, Keras weights), so a
saved and reloaded head gives bit-identical predictions and no component needs pickle.
Regressors take an optional ``target_transform`` ("log10", "log1p", "ln", "neglog1m") that is
fitted on and inverted on predict; classifiers are binary and give ``predict_proba``. Inputs may
hold NaN (a descriptor that could not be computed, e.g. a modulus of a molecule): trees route
it as missing, the other heads read it as the training mean.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted

from . import transforms

#: Only these heads can be rebuilt from a saved file without pickle (see predictor.py).
SAFE_HEADS: dict[str, type] = {}


def _register(cls):
    SAFE_HEADS[cls.__name__] = cls
    return cls


def standardization(X) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales of ``X`` ignoring NaN (missing); an all-NaN column gets mean 0 and
    a constant one scale 1, so both pass as zeros."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, scale = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    return np.where(np.isfinite(mean), mean, 0.0), np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


class _Head(BaseEstimator):
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


class _RegressorHead(RegressorMixin, _Head):
    """Regression: fit on the transformed target, predict on the original scale."""

    task = "regression"

    def fit(self, X, y):
        Xs = self._fit_scaler(X)
        z = transforms.forward(self.target_transform, np.ravel(np.asarray(y, dtype=float)))
        if len(z) != len(Xs):
            raise ValueError(f"X has {len(Xs)} rows but y has {len(z)} values")
        if not np.all(np.isfinite(z)):
            raise ValueError("targets must be finite")
        self._fit(Xs, z)
        return self

    def predict(self, X) -> np.ndarray:
        return transforms.inverse(self.target_transform, self._decision(self._scale(X)))


class _ClassifierHead(ClassifierMixin, _Head):
    """Binary classification: ``classes_[1]`` is the positive class."""

    task = "classification"
    _meta_attrs = _Head._meta_attrs + ("classes_",)

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


# ---------------------------------------------------------------------------------------
# Ridge baseline
# ---------------------------------------------------------------------------------------
_ALPHAS = tuple(np.logspace(-3, 4, 15))


class _Linear:
    _array_attrs = _Head._array_attrs + ("coef_", "intercept_")


@_register
class RidgeHead(_Linear, _RegressorHead):
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


@_register
class RidgeClassifierHead(_Linear, _ClassifierHead):
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
        return _sigmoid(Xs @ self.coef_ + self.intercept_)


# ---------------------------------------------------------------------------------------
# XGBoost
# ---------------------------------------------------------------------------------------
class _XGBoost:
    _keeps_nan = True  # xgboost learns a default direction for missing values at every split

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


@_register
class XGBoostHead(_XGBoost, _RegressorHead):
    """Gradient-boosted trees (xgboost ``hist``); ``n_jobs`` threads, seeded.

    ``objective`` is xgboost's regression loss: "reg:squarederror" (default),
    "reg:absoluteerror" or "reg:pseudohubererror" (the tuning space tries all three: the
    benchmarks score MAE).
    """

    def __init__(self, n_estimators: int = 400, learning_rate: float = 0.05, max_depth: int = 4,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, random_state: int = 0, n_jobs: int = 1,
                 target_transform: str | None = None, objective: str = "reg:squarederror"):
        self.objective = objective
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.target_transform = target_transform

    def _fit(self, Xs, z):
        if self.objective not in XGBOOST_OBJECTIVES:
            raise ValueError(f"unknown xgboost objective {self.objective!r}; valid: {', '.join(XGBOOST_OBJECTIVES)}")
        self._train(Xs, z, self.objective)

    def _decision(self, Xs):
        return self._raw(Xs).astype(float)


@_register
class XGBoostClassifierHead(_XGBoost, _ClassifierHead):
    """Gradient-boosted trees with a logistic objective."""

    def __init__(self, n_estimators: int = 300, learning_rate: float = 0.05, max_depth: int = 4,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, random_state: int = 0, n_jobs: int = 1):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit(self, Xs, yb):
        self._train(Xs, yb, "binary:logistic")

    def _proba1(self, Xs):
        return self._raw(Xs).astype(float)


# ---------------------------------------------------------------------------------------
# MLP (scikit-learn trains it; prediction is our own numpy forward pass on the weights)
# ---------------------------------------------------------------------------------------
class _MLP:
    def _train(self, Xs, target, classifier: bool):
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        cls = MLPClassifier if classifier else MLPRegressor
        model = cls(hidden_layer_sizes=tuple(self.hidden_layer_sizes), activation="relu", alpha=self.alpha,
                    batch_size=self.batch_size, learning_rate_init=self.learning_rate_init,
                    max_iter=self.max_iter, early_stopping=self.early_stopping,
                    validation_fraction=self.validation_fraction, n_iter_no_change=self.n_iter_no_change,
                    random_state=self.random_state)
        model.fit(Xs, target)
        self.n_layers_ = len(model.coefs_)
        for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
            setattr(self, f"coef{i}_", w)
            setattr(self, f"intercept{i}_", b)

    def _forward(self, Xs):
        h = Xs
        for i in range(self.n_layers_):
            h = h @ getattr(self, f"coef{i}_") + getattr(self, f"intercept{i}_")
            if i < self.n_layers_ - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def get_state(self):
        meta, arrays, blobs = super().get_state()
        for i in range(self.n_layers_):
            arrays[f"coef{i}_"] = getattr(self, f"coef{i}_")
            arrays[f"intercept{i}_"] = getattr(self, f"intercept{i}_")
        return meta, arrays, blobs

    def _restore(self, meta, arrays, blobs):
        for i in range(self.n_layers_):
            setattr(self, f"coef{i}_", arrays[f"coef{i}_"])
            setattr(self, f"intercept{i}_", arrays[f"intercept{i}_"])


@_register
class MLPHead(_MLP, _RegressorHead):
    """ReLU multilayer perceptron (Adam, early stopping on a split of the fit data)."""

    _meta_attrs = _Head._meta_attrs + ("n_layers_", "y_mean_", "y_scale_")

    def __init__(self, hidden_layer_sizes=(128, 64), alpha: float = 1e-3, batch_size: int | str = "auto",
                 learning_rate_init: float = 1e-3, max_iter: int = 1000, early_stopping: bool = True,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 30, random_state: int = 0,
                 target_transform: str | None = None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.target_transform = target_transform

    def _fit(self, Xs, z):
        # a standardized target keeps Adam's step size meaningful for eV and GPa alike
        self.y_mean_ = float(z.mean())
        self.y_scale_ = float(z.std()) or 1.0
        self._train(Xs, (z - self.y_mean_) / self.y_scale_, classifier=False)

    def _decision(self, Xs):
        return self._forward(Xs) * self.y_scale_ + self.y_mean_


@_register
class MLPClassifierHead(_MLP, _ClassifierHead):
    """ReLU multilayer perceptron with a logistic output.

    No early stopping by default: on small sets the held-out accuracy it watches plateaus at
    once and leaves the probabilities far from 0/1 (L2 ``alpha`` regularizes instead).
    """

    _meta_attrs = _ClassifierHead._meta_attrs + ("n_layers_",)

    def __init__(self, hidden_layer_sizes=(128, 64), alpha: float = 1e-3, batch_size: int | str = "auto",
                 learning_rate_init: float = 1e-3, max_iter: int = 500, early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 30, random_state: int = 0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state

    def _fit(self, Xs, yb):
        self._train(Xs, yb, classifier=True)

    def _proba1(self, Xs):
        return _sigmoid(self._forward(Xs))


# ---------------------------------------------------------------------------------------
# MODNet
# ---------------------------------------------------------------------------------------
def modnet_layers(depth: int, width: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """MODNet's 4-block ``num_neurons`` for ``depth`` hidden layers, halving the width per block.

    MODNet builds blocks 1-3 for a single target (block 4 is unused there), so depth 4 puts
    two layers in the first block.
    """
    if not 1 <= depth <= 4:
        raise ValueError(f"MODNet depth must be in 1..4, got {depth}")
    widths = [max(int(width) // 2**i, 4) for i in range(3)]
    blocks = ([widths[0]] * max(1, depth - 2), [widths[1]] if depth >= 2 else [],
              [widths[2]] if depth >= 3 else [], [])
    return blocks


class _MODNet:
    _array_attrs = _Head._array_attrs + ("feature_indices_", "mm_scale_", "mm_min_")

    def _train(self, Xs, target, n_classes: int):
        import pandas as pd
        import tensorflow as tf
        from modnet.models import MODNetModel
        from modnet.preprocessing import MODData

        tf.keras.utils.set_random_seed(self.random_state)  # python, numpy and TF seeds
        # keras validation_split takes the last rows: shuffle so it is a random split
        order = np.random.default_rng(self.random_state).permutation(len(Xs))
        Xs, target = Xs[order], target[order]
        names = [f"f{i}" for i in range(Xs.shape[1])]
        ids = [f"s{i}" for i in range(len(Xs))]
        data = MODData(df_featurized=pd.DataFrame(Xs, columns=names, index=ids),
                       targets=target.reshape(-1, 1), target_names=["y"], structure_ids=ids,
                       num_classes={"y": n_classes})
        if int(self.n_features) >= Xs.shape[1]:
            data.optimal_features = names  # every feature is kept: ranking them changes nothing
        else:
            cross_nmi = None
            if self.cross_nmi == "gaussian":
                # MODNet's kNN cross-NMI costs O(dim^2) mutual-information fits (minutes for
                # 320 features); |Pearson r| is the Linfoot-normalized MI of a Gaussian pair.
                cross_nmi = pd.DataFrame(np.abs(np.nan_to_num(np.corrcoef(Xs, rowvar=False))),
                                         index=names, columns=names)
            elif self.cross_nmi != "knn":
                raise ValueError(f"cross_nmi must be 'gaussian' or 'knn', got {self.cross_nmi!r}")
            data.feature_selection(n=int(self.n_features), cross_nmi=cross_nmi, n_jobs=1,
                                   random_state=self.random_state)
        optimal = data.get_optimal_descriptors()
        n_feat = min(int(self.n_features), len(optimal))
        self.num_neurons_ = modnet_layers(self.depth, self.width)
        model = MODNetModel([[["y"]]], {"y": 1.0}, num_neurons=self.num_neurons_, n_feat=n_feat,
                            num_classes={"y": n_classes}, act=self.activation)
        callbacks = None
        if self.validation_fraction:
            callbacks = [tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience,
                                                          restore_best_weights=True)]
        model.fit(data, val_fraction=self.validation_fraction, lr=self.learning_rate, epochs=self.epochs,
                  batch_size=self.batch_size, xscale="minmax", callbacks=callbacks, verbose=0)
        self.n_features_used_ = n_feat
        self.feature_indices_ = np.array([names.index(f) for f in model.optimal_descriptors[:n_feat]])
        scaler = model._scaler  # MODNet's min-max scaling of the selected features
        self.mm_scale_ = np.asarray(scaler.scale_, dtype=float)
        self.mm_min_ = np.asarray(scaler.min_, dtype=float)
        self.keras_ = model.model
        self.n_classes_ = n_classes

    def _network_input(self, Xs):
        return Xs[:, self.feature_indices_] * self.mm_scale_ + self.mm_min_

    def _raw(self, Xs):
        import tensorflow as tf

        x = tf.constant(self._network_input(Xs), dtype=tf.float32)
        return np.asarray(self.keras_(x, training=False), dtype=float)

    def get_state(self):
        meta, arrays, blobs = super().get_state()
        meta.update(n_features_used_=self.n_features_used_, num_neurons_=[list(b) for b in self.num_neurons_],
                    n_classes_=self.n_classes_)
        weights = self.keras_.get_weights()
        meta["n_weights"] = len(weights)
        for i, w in enumerate(weights):
            arrays[f"keras{i}"] = w
        return meta, arrays, blobs

    def _restore(self, meta, arrays, blobs):
        from modnet.models import MODNetModel

        # Rebuild the architecture from its hyperparameters, then load plain weight arrays:
        # no Keras model deserialization (which can run code) is involved.
        self.n_features_used_ = meta["n_features_used_"]
        self.num_neurons_ = tuple(meta["num_neurons_"])
        self.n_classes_ = meta["n_classes_"]
        model = MODNetModel([[["y"]]], {"y": 1.0}, num_neurons=self.num_neurons_, n_feat=self.n_features_used_,
                            num_classes={"y": self.n_classes_}, act=self.activation)
        model.model.set_weights([arrays[f"keras{i}"] for i in range(meta["n_weights"])])
        self.keras_ = model.model


_MODNET_DOC = """
    Parameters follow the paper's search space: ``n_features`` (50-256, capped at the input
    dimension) kept by MODNet's NMI feature selection, ``depth`` (1-4) hidden layers of width
    ``width`` (32-256, halving per block), ``learning_rate``, ``batch_size``. With
    ``validation_fraction`` > 0 training stops early on a random split of the fit data.
    ``cross_nmi`` is the feature-feature redundancy MODNet's selection uses: "gaussian"
    (|Pearson r|, fast) or "knn" (MODNet's own kNN mutual information, O(dim^2), slow).
"""


@_register
class MODNetHead(_MODNet, _RegressorHead):
    __doc__ = "MODNet (``modnet.models.MODNetModel`` on a ``MODData``) regressor." + _MODNET_DOC

    _meta_attrs = _Head._meta_attrs + ("y_mean_", "y_scale_")

    def __init__(self, n_features: int = 64, depth: int = 2, width: int = 128, learning_rate: float = 1e-3,
                 batch_size: int = 32, epochs: int = 300, validation_fraction: float = 0.1, patience: int = 30,
                 activation: str = "relu", cross_nmi: str = "gaussian",
                 random_state: int = 0, target_transform: str | None = None):
        self.n_features = n_features
        self.depth = depth
        self.width = width
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.activation = activation
        self.cross_nmi = cross_nmi
        self.random_state = random_state
        self.target_transform = target_transform

    def _fit(self, Xs, z):
        self.y_mean_ = float(z.mean())
        self.y_scale_ = float(z.std()) or 1.0
        self._train(Xs, (z - self.y_mean_) / self.y_scale_, n_classes=0)

    def _decision(self, Xs):
        return self._raw(Xs)[:, 0] * self.y_scale_ + self.y_mean_


@_register
class MODNetClassifierHead(_MODNet, _ClassifierHead):
    __doc__ = "MODNet binary classifier (softmax output)." + _MODNET_DOC

    def __init__(self, n_features: int = 64, depth: int = 2, width: int = 128, learning_rate: float = 1e-3,
                 batch_size: int = 32, epochs: int = 300, validation_fraction: float = 0.1, patience: int = 30,
                 activation: str = "relu", cross_nmi: str = "gaussian",
                 random_state: int = 0):
        self.n_features = n_features
        self.depth = depth
        self.width = width
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.activation = activation
        self.cross_nmi = cross_nmi
        self.random_state = random_state

    def _fit(self, Xs, yb):
        self._train(Xs, yb, n_classes=2)

    def _proba1(self, Xs):
        return self._raw(Xs)[:, 1]


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


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
