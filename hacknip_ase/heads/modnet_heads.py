"""MODNet heads (``modnet.models.MODNetModel`` on a ``MODData``), saved as plain Keras weight
arrays and rebuilt from their hyperparameters (no Keras model deserialization)."""

from __future__ import annotations

import numpy as np

from .base import ClassifierHead, Head, RegressorHead, safe_head


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
    _array_attrs = Head._array_attrs + ("feature_indices_", "mm_scale_", "mm_min_")

    # the parameters and defaults both heads share (the classifier's own); the regressor adds target_transform
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


@safe_head
class MODNetHead(_MODNet, RegressorHead):
    __doc__ = "MODNet (``modnet.models.MODNetModel`` on a ``MODData``) regressor." + _MODNET_DOC

    _meta_attrs = Head._meta_attrs + ("y_mean_", "y_scale_")

    def __init__(self, n_features: int = 64, depth: int = 2, width: int = 128, learning_rate: float = 1e-3,
                 batch_size: int = 32, epochs: int = 300, validation_fraction: float = 0.1, patience: int = 30,
                 activation: str = "relu", cross_nmi: str = "gaussian",
                 random_state: int = 0, target_transform: str | None = None):
        super().__init__(n_features, depth, width, learning_rate, batch_size, epochs, validation_fraction, patience,
                         activation, cross_nmi, random_state)
        self.target_transform = target_transform

    def _fit(self, Xs, z):
        self.y_mean_ = float(z.mean())
        self.y_scale_ = float(z.std()) or 1.0
        self._train(Xs, (z - self.y_mean_) / self.y_scale_, n_classes=0)

    def _decision(self, Xs):
        return self._raw(Xs)[:, 0] * self.y_scale_ + self.y_mean_


@safe_head
class MODNetClassifierHead(_MODNet, ClassifierHead):
    __doc__ = "MODNet binary classifier (softmax output)." + _MODNET_DOC

    def _fit(self, Xs, yb):
        self._train(Xs, yb, n_classes=2)

    def _proba1(self, Xs):
        return self._raw(Xs)[:, 1]
