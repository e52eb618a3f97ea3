"""ReLU multilayer perceptrons: scikit-learn trains them; prediction is our own numpy forward
pass on the weights, so a reloaded head needs no pickled scikit-learn object."""

from __future__ import annotations

import numpy as np

from .base import ClassifierHead, Head, RegressorHead, safe_head, sigmoid


class _MLP:
    # the parameters both heads share; each head's signature gives its defaults (sklearn reads it)
    def __init__(self, hidden_layer_sizes, alpha, batch_size, learning_rate_init, max_iter, early_stopping,
                 validation_fraction, n_iter_no_change, random_state):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state

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


@safe_head
class MLPHead(_MLP, RegressorHead):
    """ReLU multilayer perceptron (Adam, early stopping on a split of the fit data)."""

    _meta_attrs = Head._meta_attrs + ("n_layers_", "y_mean_", "y_scale_")

    def __init__(self, hidden_layer_sizes=(128, 64), alpha: float = 1e-3, batch_size: int | str = "auto",
                 learning_rate_init: float = 1e-3, max_iter: int = 1000, early_stopping: bool = True,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 30, random_state: int = 0,
                 target_transform: str | None = None):
        super().__init__(hidden_layer_sizes, alpha, batch_size, learning_rate_init, max_iter, early_stopping,
                         validation_fraction, n_iter_no_change, random_state)
        self.target_transform = target_transform

    def _fit(self, Xs, z):
        # a standardized target keeps Adam's step size meaningful for eV and GPa alike
        self.y_mean_ = float(z.mean())
        self.y_scale_ = float(z.std()) or 1.0
        self._train(Xs, (z - self.y_mean_) / self.y_scale_, classifier=False)

    def _decision(self, Xs):
        return self._forward(Xs) * self.y_scale_ + self.y_mean_


@safe_head
class MLPClassifierHead(_MLP, ClassifierHead):
    """ReLU multilayer perceptron with a logistic output.

    No early stopping by default: on small sets the held-out accuracy it watches plateaus at
    once and leaves the probabilities far from 0/1 (L2 ``alpha`` regularizes instead).
    """

    _meta_attrs = ClassifierHead._meta_attrs + ("n_layers_",)

    def __init__(self, hidden_layer_sizes=(128, 64), alpha: float = 1e-3, batch_size: int | str = "auto",
                 learning_rate_init: float = 1e-3, max_iter: int = 500, early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 30, random_state: int = 0):
        super().__init__(hidden_layer_sizes, alpha, batch_size, learning_rate_init, max_iter, early_stopping,
                         validation_fraction, n_iter_no_change, random_state)

    def _fit(self, Xs, yb):
        self._train(Xs, yb, classifier=True)

    def _proba1(self, Xs):
        return sigmoid(self._forward(Xs))
