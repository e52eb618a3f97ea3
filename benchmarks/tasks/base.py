"""The task interface the harness consumes: load data, iterate splits, score predictions."""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn import metrics as skm

from hacknip_ase.molecules import Excluded

from ..data import DataFile, is_present

__all__ = ["CLASSIFICATION", "REGRESSION", "Excluded", "Split", "Task", "TaskData", "kfold_splits"]

REGRESSION = "regression"
CLASSIFICATION = "classification"


@dataclass(frozen=True)
class Split:
    """One fold or seed: row positions into :class:`TaskData`. ``train, test = split`` works."""

    name: str  #: "fold_0", "seed_3" ...
    train: np.ndarray
    test: np.ndarray
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  #: MoleculeNet's valid part
    seed: int | None = None

    def __iter__(self):
        return iter((self.train, self.test))


@dataclass
class TaskData:
    """A loaded task. Row ``i`` is ``ids[i]``, ``inputs[i]``, ``targets[i]``, ``features[i]``.

    ``inputs`` holds ``ase.Atoms``; for mixture tasks each input is a ``{molecule_id: mol/L}``
    dict and ``molecules`` maps molecule ids to their (relaxed) ``Atoms``.
    """

    ids: list[str]
    inputs: list
    targets: np.ndarray  #: (n,) or (n, n_targets) for multi-label tasks
    target_names: tuple[str, ...]
    features: np.ndarray | None = None  #: extra per-row features appended to the embedding
    feature_names: tuple[str, ...] = ()
    molecules: dict | None = None
    excluded: list[Excluded] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: e.g. molecules whose relaxation did not converge
    meta: dict = field(default_factory=dict)  #: what splits() needs (SMILES, fold ids, ...)

    def __len__(self) -> int:
        return len(self.ids)


class Task(abc.ABC):
    """A benchmark task: data files, how to load them, its official splits and metrics."""

    name: str
    family: str
    task_type: str  #: REGRESSION or CLASSIFICATION
    metrics: tuple[str, ...]  #: keys of score(); the first is the headline metric
    split_description: str
    literature_size: int | None = None  #: rows in the published benchmark
    size_note: str = ""  #: why our count differs from the literature, if it does
    #: Splits are seeded replicates ("seed_k"): the head and depth selection of split k are seeded
    #: with run seed + k, so replicates of a deterministic split (scaffold) still vary the model.
    seeded_replicates: bool = False
    #: Depth and head chosen on the split's ``valid`` part (head fitted on ``train``), then refitted on
    #: train + valid, as MoleculeNet intends; otherwise by inner CV on ``train``.
    select_on_valid: bool = False

    @property
    @abc.abstractmethod
    def files(self) -> Sequence[DataFile]:
        """Data files this task reads (the first is the main one)."""

    @abc.abstractmethod
    def load(self, data_dir: str | os.PathLike | None = None, **options) -> TaskData:
        """Read (and download if needed) the data; rows it cannot use go to ``excluded``."""

    @abc.abstractmethod
    def splits(self, data: TaskData) -> Iterator[Split]:
        """The official folds/seeds as row positions into ``data``."""

    @abc.abstractmethod
    def count(self, data_dir: str | os.PathLike | None = None) -> int:
        """Rows ``load`` gives, found without building structures (for ``hacknip-bench tasks``)."""

    def is_present(self, data_dir: str | os.PathLike | None = None) -> bool:
        return all(is_present(f, data_dir) for f in self.files)

    def score(self, y_true, y_pred) -> dict[str, float]:
        """Metrics on targets as ``load`` gives them (classification: ``y_pred`` are P(class 1))."""
        if self.task_type == CLASSIFICATION:
            return classification_scores(y_true, y_pred)
        return regression_scores(y_true, y_pred)

    def score_split(self, data: TaskData, split: Split, y_pred) -> dict[str, float]:
        """Metrics of one split's test predictions; tasks add split-aware ones (unseen-host MAE)."""
        return self.score(np.asarray(data.targets)[split.test], y_pred)

    def __repr__(self) -> str:
        return f"<Task {self.name} ({self.family}, {self.task_type})>"


def regression_scores(y_true, y_pred) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "mse": float(skm.mean_squared_error(y_true, y_pred)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def classification_scores(y_true, y_prob, threshold: float = 0.5) -> dict[str, float]:
    """ROC-AUC and accuracy; multi-label targets are averaged over labels (MoleculeNet's way)."""
    y_true, y_prob = np.asarray(y_true, float), np.asarray(y_prob, float)
    if y_true.ndim == 1:
        y_true, y_prob = y_true[:, None], y_prob[:, None]
    aucs, accs = [], []
    for k in range(y_true.shape[1]):
        aucs.append(skm.roc_auc_score(y_true[:, k], y_prob[:, k]))
        accs.append(skm.accuracy_score(y_true[:, k], y_prob[:, k] >= threshold))
    scores = {"roc_auc": float(np.mean(aucs)), "accuracy": float(np.mean(accs))}
    if len(aucs) > 1:
        scores.update({f"roc_auc_{k}": float(a) for k, a in enumerate(aucs)})
    return scores


def kfold_splits(n: int, *, n_splits: int = 5, seed: int, prefix: str = "") -> Iterator[Split]:
    """Shuffled k-fold (80/20 for k=5), the scheme Matbench uses, with a recorded seed;
    split names are ``f"{prefix}fold_{k}"``."""
    from sklearn.model_selection import KFold

    for k, (train, test) in enumerate(KFold(n_splits, shuffle=True, random_state=seed).split(np.arange(n))):
        yield Split(f"{prefix}fold_{k}", train, test, seed=seed)
