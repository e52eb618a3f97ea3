"""Leak-free choice of the embedding depth(s) a head is trained on.

:class:`DepthSelector` scores every candidate depth (or concatenation of depths, or of several
backbones' depths: "multi-NIP") by inner cross-validation or a validation split *of the data
passed to fit*, then refits the head on all of it. Given only a training fold, it never sees
the test fold; :func:`nested_cross_val_predict` runs the whole thing inside an outer CV.
:func:`selection_scheme` is the size rule (inner folds or one hold-out) that
:meth:`~hacknip_ase.heads.Predictor.fit` applies by default, for ``hacknip fit`` and the
benchmark harness alike.

A candidate is a tuple of ``(source, depth)`` pairs, ``source`` indexing the list of
embedding arrays (always 0 for a single backbone); its features are the listed depths'
vectors concatenated in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, PredefinedSplit, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit, check_cv
from sklearn.utils.validation import check_is_fitted

Candidate = tuple[tuple[int, int], ...]

#: Training rows up to which depth selection uses 5-fold / 3-fold inner CV, per head (above: one
#: 20 % hold-out). Expensive heads get fewer inner fits so the offline suite fits a CPU budget.
SELECTION_LIMITS = {"ridge": (2000, 6000), "xgboost": (2000, 6000), "mlp": (0, 1100), "modnet": (0, 300)}
SELECTION_RULE = ("inner CV on the training part only: ridge/xgboost 5-fold up to 2,000 training rows, 3-fold up "
                  "to 6,000; mlp 3-fold up to 1,100; modnet 3-fold up to 300; above, one 20 % hold-out")


def selection_scheme(n_train: int, head: str | None = None, inner_cv: int | None = None,
                     holdout: float | None = None) -> dict:
    """How depths are chosen on ``n_train`` rows (see ``SELECTION_RULE``): ``{"cv", "validation_fraction"}``.

    ``inner_cv`` or ``holdout`` override the rule. The candidates are only the 5-6 single
    depths, and a 20 % hold-out of a large training part is already hundreds to thousands of
    rows, enough to rank them. Heads not named in ``SELECTION_LIMITS`` get xgboost's limits.
    """
    if holdout:
        return {"cv": None, "validation_fraction": float(holdout)}
    if inner_cv:
        return {"cv": int(inner_cv), "validation_fraction": None}
    five, three = SELECTION_LIMITS.get(head, SELECTION_LIMITS["xgboost"])
    if n_train <= five:
        return {"cv": 5, "validation_fraction": None}
    if n_train <= three:
        return {"cv": 3, "validation_fraction": None}
    return {"cv": None, "validation_fraction": 0.2}


def validation_split(n_train: int, n_valid: int) -> PredefinedSplit:
    """One split of ``n_train + n_valid`` rows, the last ``n_valid`` of them held out for selection."""
    return PredefinedSplit(np.r_[np.full(n_train, -1), np.zeros(n_valid, dtype=int)])


def cv_label(cv) -> str | int:
    """JSON-able record of an inner-split scheme: the fold count, or what the given splits are."""
    if isinstance(cv, (int, np.integer)):
        return int(cv)
    if isinstance(cv, PredefinedSplit):
        return f"given validation part ({int((cv.test_fold >= 0).sum())} rows)"
    return type(cv).__name__


def as_sources(X) -> list[np.ndarray]:
    """The list of (n, n_depths, dim) arrays behind ``X`` (one array, or one per backbone)."""
    sources = [np.asarray(x) for x in X] if isinstance(X, (list, tuple)) else [np.asarray(X)]
    for x in sources:
        if x.ndim != 3:
            raise ValueError(f"embeddings must have shape (n, n_depths, dim), got {x.shape}")
    if len({len(x) for x in sources}) != 1:
        raise ValueError("embeddings of different backbones must cover the same structures")
    return sources


def take_depths(X, candidate: Candidate) -> np.ndarray:
    """(n, total_dim) features of ``candidate`` from embeddings ``X``."""
    sources = as_sources(X)
    return np.concatenate([sources[s][:, d, :] for s, d in candidate], axis=1)


def take_rows(X, index):
    return [x[index] for x in X] if isinstance(X, (list, tuple)) else np.asarray(X)[index]


def normalize_candidate(spec, n_sources: int = 1) -> Candidate:
    """``3`` -> ((0, 3),); ``(2, 3)`` -> ((0, 2), (0, 3)); ``((0, 3), (1, 2))`` kept."""
    if isinstance(spec, (int, np.integer)):
        spec = [int(spec)]
    pairs = []
    for item in spec:
        if isinstance(item, (int, np.integer)):
            if n_sources != 1:
                raise ValueError("with several backbones give candidates as (source, depth) pairs")
            pairs.append((0, int(item)))
        else:
            source, depth = item
            pairs.append((int(source), int(depth)))
    if not pairs:
        raise ValueError("a candidate needs at least one depth")
    return tuple(pairs)


def candidate_label(candidate: Candidate, names: Sequence[str] | None = None) -> str:
    parts = []
    for s, d in candidate:
        prefix = f"{names[s]}:" if names else (f"{s}:" if any(src for src, _ in candidate) else "")
        parts.append(f"{prefix}{d}")
    return "+".join(parts)


def inner_splitter(classifier: bool, cv=5, validation_fraction: float | None = None, random_state: int = 0):
    """The inner splits every selection stage scores on: one shuffled hold-out of
    ``validation_fraction``, shuffled (stratified for classifiers) ``cv`` folds, or the given splitter."""
    if validation_fraction:
        cls = StratifiedShuffleSplit if classifier else ShuffleSplit
        return cls(n_splits=1, test_size=validation_fraction, random_state=random_state)
    if not isinstance(cv, (int, np.integer)):
        return check_cv(cv)
    cls = StratifiedKFold if classifier else KFold
    return cls(n_splits=cv, shuffle=True, random_state=random_state)


def score_on_splits(head, features: np.ndarray, y: np.ndarray, splitter, scoring: str) -> tuple[list[float], np.ndarray]:
    """(``splitter``: a splitter or a list of (train, test) positions.) Scores of clones of ``head`` fitted on each inner training part and scored on its held-out
    part (what ``cross_val_score`` gives), and the held-out predictions (NaN where never held out;
    P(class 1) for classifiers)."""
    scorer = get_scorer(scoring)
    classifier = is_classifier(head)
    held_out = np.full(len(y), np.nan)
    scores = []
    pairs = splitter.split(features, y) if hasattr(splitter, "split") else splitter
    for train, test in pairs:
        fitted = clone(head).fit(features[train], y[train])
        scores.append(float(scorer(fitted, features[test], y[test])))
        held_out[test] = fitted.predict_proba(features[test])[:, 1] if classifier else fitted.predict(features[test])
    return scores, held_out


def summarize_scores(scores: Sequence[float]) -> dict:
    return {"score": float(np.mean(scores)), "std": float(np.std(scores)), "fold_scores": [float(v) for v in scores]}


class DepthSelector(BaseEstimator):
    """Pick the depth(s) by inner CV on the fit data, then refit ``head`` on all of it.

    Parameters
    ----------
    head : estimator
        Any scikit-learn estimator on (n, features) matrices (e.g. a head from
        :mod:`hacknip_ase.heads.estimators`); cloned for every fit.
    candidates : "single", "concat", "multi", "all" or list
        "single": every depth of every backbone alone. "concat": plus each backbone's depths
        all concatenated. "multi": plus, for several backbones, each backbone's best single
        depth concatenated (chosen by the same inner CV). "all": all of these, plus every
        depth of every source concatenated. A list gives candidates explicitly (ints, tuples
        of ints, or tuples of (source, depth) pairs). Duplicates (a one-depth source's
        "concatenation") are scored once.
    cv : int, cross-validation splitter or iterable of (train, validation) positions
        Inner folds (an int: shuffled, stratified for classifiers), or given splits of the fit
        data, e.g. ``PredefinedSplit`` to select on an explicit validation part; ignored when
        ``validation_fraction`` is set.
    validation_fraction : float, optional
        Score on one random validation split of the fit data instead of inner CV.
    scoring : str, optional
        scikit-learn scorer name; default "neg_mean_absolute_error" for regression,
        "roc_auc" for classification. Higher is better.
    random_state : int
        Seed of the inner splits (the same splits score every candidate).
    source_names : list of str, optional
        Backbone names, for readable labels in the selection curve.
    verbose : int
        > 0 shows a progress bar over the candidates scored.
    refit : bool
        Refit ``head`` on all the fit data with the chosen depth(s) (``estimator_``); False when
        a later choice (a target transform, tuning) fits the final head anyway.
    """

    def __init__(self, head, candidates="single", cv: int = 5, validation_fraction: float | None = None,
                 scoring: str | None = None, random_state: int = 0, source_names=None, verbose: int = 0,
                 refit: bool = True):
        self.refit = refit
        self.head = head
        self.candidates = candidates
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.scoring = scoring
        self.random_state = random_state
        self.source_names = source_names
        self.verbose = verbose

    # -- fitting -------------------------------------------------------------------------
    def _splitter(self):
        return inner_splitter(is_classifier(self.head), self.cv, self.validation_fraction, self.random_state)

    def _scoring(self) -> str:
        if self.scoring is not None:
            return self.scoring
        return "roc_auc" if is_classifier(self.head) else "neg_mean_absolute_error"

    def _score(self, X, y, candidate: Candidate) -> tuple[dict, np.ndarray]:
        """Curve entry of ``candidate`` and its held-out predictions (NaN where never held out).

        Scores are what ``cross_val_score`` gives on the same splits; the held-out predictions
        are values, or P(class 1) for classifiers.
        """
        features = take_depths(X, candidate)
        scores, held_out = score_on_splits(self.head, features, y, self._splitter(), self._scoring())
        entry = {"candidate": [list(p) for p in candidate], "label": candidate_label(candidate, self.source_names),
                 **summarize_scores(scores)}
        return entry, held_out

    def fit(self, X, y):
        sources = as_sources(X)
        y = np.asarray(y)
        if len(y) != len(sources[0]):
            raise ValueError(f"embeddings have {len(sources[0])} rows but y has {len(y)} values")
        from tqdm.auto import tqdm

        curve: list[dict] = []
        held_out: list[np.ndarray] = []
        seen: set[Candidate] = set()
        bar = tqdm(total=self._n_candidates(sources), desc="depth selection", unit="candidate",
                   disable=not self.verbose)

        def score(candidate):
            if candidate not in seen:
                for s, d in candidate:
                    if not (0 <= s < len(sources) and 0 <= d < sources[s].shape[1]):
                        raise ValueError(f"candidate {candidate} is outside the embeddings")
                seen.add(candidate)
                entry, predictions = self._score(sources, y, candidate)
                curve.append(entry)
                held_out.append(predictions)
                bar.update()

        mode = self.candidates
        if isinstance(mode, str):
            if mode not in ("single", "concat", "multi", "all"):
                raise ValueError(f"unknown candidates {mode!r}; valid: single, concat, multi, all, or a list")
            singles = [((s, d),) for s, x in enumerate(sources) for d in range(x.shape[1])]
            for candidate in singles:
                score(candidate)
            if mode in ("concat", "all"):
                for s, x in enumerate(sources):
                    score(tuple((s, d) for d in range(x.shape[1])))
            if mode in ("multi", "all") and len(sources) > 1:
                best_per_source = []
                for s in range(len(sources)):
                    own = [c for c in curve if len(c["candidate"]) == 1 and c["candidate"][0][0] == s]
                    best_per_source.append(tuple(max(own, key=lambda c: c["score"])["candidate"][0]))
                score(tuple(best_per_source))
            if mode == "all" and len(sources) > 1:
                score(tuple((s, d) for s, x in enumerate(sources) for d in range(x.shape[1])))
        else:
            for spec in mode:
                score(normalize_candidate(spec, len(sources)))
        bar.close()
        best_index = max(range(len(curve)), key=lambda k: curve[k]["score"])  # first of equals: the simplest
        best = curve[best_index]
        self.selection_curve_ = curve
        #: held-out predictions of the chosen candidate in the inner splits (NaN: never held out)
        self.best_held_out_predictions_ = held_out[best_index]
        self.best_depths_ = tuple(tuple(p) for p in best["candidate"])
        self.best_score_ = best["score"]
        self.scoring_ = self._scoring()
        if self.refit:
            self.estimator_ = clone(self.head).fit(take_depths(sources, self.best_depths_), y)
            if hasattr(self.estimator_, "classes_"):
                self.classes_ = self.estimator_.classes_
        return self

    def _n_candidates(self, sources) -> int:
        if not isinstance(self.candidates, str):
            return len(self.candidates)
        n = sum(x.shape[1] for x in sources)
        if self.candidates in ("concat", "all"):
            n += len(sources)
        several = len(sources) > 1
        return n + int(self.candidates in ("multi", "all") and several) + int(self.candidates == "all" and several)

    # -- prediction ----------------------------------------------------------------------
    def transform(self, X) -> np.ndarray:
        """The chosen features of ``X``."""
        check_is_fitted(self, "best_depths_")
        return take_depths(X, self.best_depths_)

    def predict(self, X):
        return self.estimator_.predict(self.transform(X))

    def predict_proba(self, X):
        return self.estimator_.predict_proba(self.transform(X))

    def score(self, X, y):
        return self.estimator_.score(self.transform(X), y)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if is_classifier(self.head) else "regressor"
        return tags


def nested_cross_val_predict(selector: DepthSelector, X, y, *, cv: int = 5, random_state: int = 0):
    """Out-of-fold predictions of ``selector`` with selection redone inside every outer fold.

    Returns ``(predictions, folds)``; each fold dict holds its ``train``/``test`` indices, the
    chosen ``best_depths`` and the ``selection_curve`` computed from its training part only.
    """
    y = np.asarray(y)
    n = len(y)
    classifier = is_classifier(selector)
    splitter = (StratifiedKFold if classifier else KFold)(n_splits=cv, shuffle=True, random_state=random_state)
    predictions = np.empty(n, dtype=float if not classifier else y.dtype)
    folds = []
    for train, test in splitter.split(np.zeros(n), y):
        fitted = clone(selector).fit(take_rows(X, train), y[train])
        predictions[test] = fitted.predict(take_rows(X, test))
        folds.append({"train": train, "test": test, "best_depths": fitted.best_depths_,
                      "selection_curve": fitted.selection_curve_})
    return predictions, folds
