"""A trained predictor: head + chosen depth(s) + backbone identity, saved to one safe file
(:mod:`.predictor_file`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import PredictorMismatchError
from ..provenance import predictor_versions
from .domain import DomainDistance
from .feature_sources import build_sources, embed, pbc_kind
from .predictor_file import FORMAT, FORMAT_VERSION, read_predictor_file, reading, write_predictor_file
from .selection import (
    DepthSelector,
    as_sources,
    candidate_label,
    cv_label,
    inner_splitter,
    normalize_candidate,
    selection_scheme,
    take_depths,
)
from .stages import choose_transform, initial_head, tune_head

_IDENTITY_FIELDS = ("name", "model", "weights_sha256", "n_depths", "dim")
def _info_dict(info) -> dict:
    """Identity of a backbone or descriptor source (BackboneInfo, built Backbone,
    CompositionSource or dict) as stored in the file."""
    info = getattr(info, "info", info)
    record = info if isinstance(info, dict) else info.as_dict()
    kept = {key: record[key] for key in _IDENTITY_FIELDS}
    if record.get("kind"):
        kept["kind"] = record["kind"]
    return kept


def _is_descriptor(record: dict) -> bool:
    return record.get("kind") == "descriptors"


class Predictor:
    """A fitted head on chosen embedding depth(s) of one or several frozen backbones.

    Build with :meth:`fit` (embeddings) or :meth:`fit_structures` (ase Atoms); use with
    :meth:`predict`, :meth:`predict_embeddings`, or as a head of ``EmbeddingCalculator``.
    """

    def __init__(self, head, depths, backbones: Sequence, *, target_name: str, units: str = "",
                 task: str = "regression", domain: DomainDistance | None = None, n_train: int | None = None,
                 seeds: dict | None = None, selection: dict | None = None, versions: dict | None = None,
                 inputs: dict | None = None, training_pbc: str | None = None):
        self.head = head
        self.backbones = [_info_dict(b) for b in backbones]
        self.depths = normalize_candidate(depths, len(self.backbones))
        self.target_name = target_name
        self.units = units
        self.task = task
        self.domain = domain
        self.n_train = n_train
        self.seeds = seeds or {}
        self.selection = selection
        self.versions = versions or predictor_versions()
        #: how inputs became structures (``hacknip fit``: table columns, molecule recipe), reused by predict
        self.inputs = inputs
        #: "all" (every training structure fully periodic), "none" (none periodic: molecules),
        #: "mixed", or None (not recorded): a structure of a kind the head never saw is out of domain
        self.training_pbc = training_pbc

    # -- training ------------------------------------------------------------------------
    @classmethod
    def fit(cls, X, y, *, backbone, head="xgboost", task: str = "regression", target_name: str = "target",
            units: str = "", transform: str | None = None, depths=None, candidates="single", cv="auto",
            validation_fraction: float | None = None, scoring: str | None = None, head_params: dict | None = None,
            tune_trials: int = 0, tune_patience: int | None = None, tune_cpu_budget: float | None = None,
            random_state: int = 0, progress: bool = False, domain_max_reference: int | None = None) -> Predictor:
        """Train on embeddings ``X`` ((n, n_depths, dim), or a list of them for multi-NIP).

        ``backbone`` is the BackboneInfo (or built Backbone, or list for multi-NIP) that made
        ``X``; a descriptor source (:class:`~hacknip_ase.composition.CompositionSource`) counts
        as one more backbone with one depth. ``head`` is a short name ("ridge", "xgboost",
        "mlp", "modnet") or an estimator.

        Every choice below is made on the inner splits of this data only, in stages on the same
        splits: (1) unless ``depths`` fixes them, :class:`DepthSelector` picks the depth(s) among
        ``candidates``; (2) ``transform="auto"`` then picks the target transform among those the
        targets allow (:func:`~hacknip_ase.heads.transforms.candidates`: none, log10, log1p) for
        the chosen features; (3) ``tune_trials`` > 0 then searches the head's hyperparameters
        with Optuna (xgboost: on the same inner splits, stopping after ``tune_patience`` stale
        trials or ``tune_cpu_budget`` CPU seconds; modnet: the paper's space on a 20 % hold-out).
        ``cv="auto"`` takes :func:`~hacknip_ase.heads.selection.selection_scheme` (5-fold for
        small data, fewer folds or one 20 % hold-out for large data or slow heads), the rule the
        benchmarks use; ``cv`` may also be a splitter of the rows of ``X`` (e.g.
        :func:`~hacknip_ase.heads.selection.validation_split` to select on an explicit validation
        part; the head is then refitted on all rows). ``random_state`` seeds the inner splits,
        the search and the head. ``domain_max_reference`` caps the applicability domain's
        reference set (seeded subset).

        ``selection`` then records each stage (``curve``; ``transform``; ``tuning``), the scheme
        and ``held_out``: the inner-split predictions of the chosen depth(s) and transform
        (values, or P(class 1)) at training ``rows``, made by heads that did not see those rows
        (with the untuned head when tuning).
        """
        infos = list(backbone) if isinstance(backbone, (list, tuple)) else [backbone]
        sources = as_sources(X)
        if len(sources) != len(infos):
            raise ValueError(f"got {len(sources)} embedding arrays for {len(infos)} backbones")
        for source, info in zip(sources, infos, strict=True):
            record = _info_dict(info)
            if source.shape[1:] != (record["n_depths"], record["dim"]):
                raise PredictorMismatchError(
                    f"embeddings of shape {source.shape[1:]} do not come from {record['name']} "
                    f"({record['n_depths']} depths x {record['dim']})")
        y = np.asarray(y)
        auto_transform = isinstance(transform, str) and transform == "auto"
        if task == "classification":
            if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
                raise ValueError("classification labels must be numbers or booleans (e.g. 0/1)")
            y = y.astype(float) if y.dtype == bool else y
            if transform is not None:
                raise ValueError("target transforms apply to regression only")
        estimator = initial_head(head, task, None if auto_transform else transform, head_params, random_state)
        names = [_info_dict(i)["name"] for i in infos]
        if isinstance(cv, str) and cv == "auto":
            scheme = selection_scheme(len(y), head if isinstance(head, str) else None, holdout=validation_fraction)
            inner = scheme["cv"] or 5
        elif validation_fraction:
            scheme, inner = {"cv": None, "validation_fraction": validation_fraction}, 5
        else:
            scheme, inner = {"cv": cv_label(cv), "validation_fraction": None}, cv
        scoring = scoring or ("roc_auc" if task == "classification" else "neg_mean_absolute_error")
        splitter = inner_splitter(task == "classification", inner, scheme["validation_fraction"], random_state)
        selection = None
        held_out = None
        fitted = None
        if depths is None:
            # backbone names label the curve only when there are several ("chgnet:3" vs "3")
            # the depth stage's refit is the final head only when no later stage changes it
            selector = DepthSelector(estimator, candidates=candidates, cv=inner,
                                     validation_fraction=scheme["validation_fraction"], scoring=scoring,
                                     random_state=random_state, source_names=names if len(names) > 1 else None,
                                     verbose=int(progress), refit=not (auto_transform or tune_trials))
            selector.fit(sources, y)
            chosen, fitted = selector.best_depths_, getattr(selector, "estimator_", None)
            held_out = selector.best_held_out_predictions_
            best_entry = next(e for e in selector.selection_curve_ if tuple(map(tuple, e["candidate"])) == chosen)
            selection = {"curve": selector.selection_curve_, "scoring": selector.scoring_, **scheme,
                         "random_state": random_state}
        else:
            chosen = normalize_candidate(depths, len(sources))
            best_entry = None
        features = take_depths(sources, chosen)
        if auto_transform:
            record, estimator, held_out = choose_transform(estimator, features, y, splitter, scoring,
                                                           best_entry, held_out)
            selection = dict(selection or {"scoring": scoring, **scheme, "random_state": random_state},
                             transform=record)
        if tune_trials:
            fitted, tuning = tune_head(estimator, task, features, y, splitter, scoring, tune_trials, tune_patience,
                                       tune_cpu_budget, random_state)
            selection = dict(selection or {"scoring": scoring, **scheme, "random_state": random_state},
                             tuning=tuning)
        if held_out is not None:
            rows = np.flatnonzero(np.isfinite(held_out))
            selection["held_out"] = {"rows": rows.tolist(), "y_pred": held_out[rows].tolist()}
        if fitted is None:
            fitted = estimator.fit(features, y)
        head_params_used = fitted.get_params(deep=False)
        seeds = {"random_state": random_state, "head_random_state": head_params_used.get("random_state")}
        return cls(fitted, chosen, infos, target_name=target_name, units=units, task=task,
                   domain=DomainDistance(max_reference=domain_max_reference, random_state=random_state).fit(features),
                   n_train=len(y), seeds=seeds, selection=selection)


    @classmethod
    def fit_structures(cls, structures, targets, *, backbone="chgnet", batch_size: int = 32,
                       backbone_options: dict | None = None, **fit_options) -> Predictor:
        """Embed ase Atoms with ``backbone`` and :meth:`fit`.

        ``backbone`` is a name, a built Backbone, or a list of feature sources: backbones
        (multi-NIP) and "composition" (:mod:`hacknip_ase.composition`: Magpie, stoichiometry,
        valence-orbital descriptors), e.g. ``["chgnet", "composition"]`` with
        ``candidates="all"`` lets inner CV choose among a depth, all depths, composition alone,
        a depth plus composition, and everything; ``transform="auto"`` and ``tune_trials`` add
        the other choices (see :meth:`fit`). ``backbone_options`` go to NIP backbones.
        """
        backbones = build_sources(backbone, backbone_options)
        structures = list(structures)
        X = [embed(b, structures, batch_size) for b in backbones]
        predictor = cls.fit(X if len(X) > 1 else X[0], targets, backbone=[_info_dict(b) for b in backbones],
                            **fit_options)
        predictor.training_pbc = pbc_kind(structures)
        return predictor

    # -- prediction ----------------------------------------------------------------------
    def features(self, embeddings) -> np.ndarray:
        sources = as_sources(embeddings)
        if len(sources) != len(self.backbones):
            raise PredictorMismatchError(f"predictor needs embeddings from {self.backbone_label}, "
                                         f"got {len(sources)} array(s)")
        for source, record in zip(sources, self.backbones, strict=True):
            if source.shape[1:] != (record["n_depths"], record["dim"]):
                raise PredictorMismatchError(f"embeddings of shape {source.shape[1:]} do not fit {record['name']} "
                                             f"({record['n_depths']} depths x {record['dim']})")
        return take_depths(sources, self.depths)

    def predict_embeddings(self, embeddings) -> np.ndarray:
        """Predictions (in ``units``; class labels for classifiers) from embeddings."""
        return self.head.predict(self.features(embeddings))

    def predict_proba_embeddings(self, embeddings) -> np.ndarray:
        """(n, 2) class probabilities; column 1 is ``classes_[1]``."""
        if self.task != "classification":
            raise ValueError("predict_proba is for classification predictors")
        return self.head.predict_proba(self.features(embeddings))

    def domain_distance(self, embeddings, periodic=None) -> np.ndarray:
        """Normalized nearest-neighbour distance to the training embeddings (see :mod:`.domain`).

        ``periodic`` (one bool per row, or one for all): a structure whose periodicity the
        training set never had (a molecule for a head trained on crystals only, or the reverse)
        gets ``inf``, whatever its embedding.
        """
        return self._distance(self.features(embeddings), periodic)

    def _distance(self, features, periodic) -> np.ndarray:
        distance = self.domain.distance(features)
        if periodic is not None and self.training_pbc in ("all", "none"):
            unseen = ~np.asarray(periodic, dtype=bool) if self.training_pbc == "all" else np.asarray(periodic, dtype=bool)
            distance = np.where(np.broadcast_to(unseen, distance.shape), np.inf, distance)
        return distance

    def embed(self, structures, backbone=None, batch_size: int = 32):
        """Embeddings of ``structures`` from the backbone(s) this predictor was trained on."""
        if backbone is None:
            backbone = [r if _is_descriptor(r) else (r["name"], {"model": r["model"]}) for r in self.backbones]
        elif len(self.backbones) > 1 and not isinstance(backbone, (list, tuple)):
            # one built NIP given: the descriptor sources are computed here (physics with that NIP)
            backbone = [backbone if not _is_descriptor(r) else r for r in self.backbones]
        backbones = build_sources(backbone, None)
        if len(backbones) != len(self.backbones):
            raise PredictorMismatchError(f"predictor needs {self.backbone_label}")
        for b in backbones:
            self.check_backbone(b.info, multi=True)
        X = [embed(b, structures, batch_size) for b in backbones]
        return X if len(X) > 1 else X[0]

    def predict(self, structures, backbone=None) -> np.ndarray:
        """Predictions for ase Atoms (builds the stored backbone(s) unless one is given)."""
        return self.predict_embeddings(self.embed(structures, backbone))

    # -- calculator API --------------------------------------------------------------------
    @property
    def backbone_label(self) -> str:
        return " + ".join(f"{r['name']} {r['model']}" for r in self.backbones)

    def check_backbone(self, info, *, multi: bool = False) -> None:
        """Raise PredictorMismatchError unless ``info`` is the backbone (and weights) trained on."""
        given = _info_dict(info)
        nips = [r for r in self.backbones if not _is_descriptor(r)]
        if len(nips) > 1 and not multi:
            raise PredictorMismatchError(
                f"predictor {self.target_name!r} was trained on concatenated embeddings of {self.backbone_label}; "
                "one backbone cannot provide them (use Predictor.predict with all backbones)")
        for record in self.backbones:
            if record["name"] == given["name"] and record["model"] == given["model"]:
                break
        else:
            raise PredictorMismatchError(
                f"predictor {self.target_name!r} was trained on {self.backbone_label} embeddings, "
                f"not {given['name']} {given['model']}")
        if record["weights_sha256"] != given["weights_sha256"]:
            raise PredictorMismatchError(
                f"predictor {self.target_name!r} was trained on {record['name']} weights with sha256 "
                f"{record['weights_sha256'][:12]}..., the backbone has {given['weights_sha256'][:12]}...")
        if (record["n_depths"], record["dim"]) != (given["n_depths"], given["dim"]):
            raise PredictorMismatchError(
                f"predictor {self.target_name!r} expects {record['n_depths']} depths x {record['dim']}, "
                f"the backbone gives {given['n_depths']} x {given['dim']}")

    def property_names(self, name: str) -> list[str]:
        extra = [f"{name}_probability"] if self.task == "classification" else []
        return [name, *extra, f"{name}_domain_distance"]

    def register_outputs(self, name: str) -> list[str]:
        """Register the ASE properties of this head under ``name``; returns their names."""
        from ..outputs import register_output

        names = self.property_names(name)
        for prop in names:
            register_output(prop, (), float)
        return names

    def predict_properties(self, name: str, embeddings, periodic: bool | None = None, atoms=None,
                           backbone=None) -> dict:
        """ASE results for one structure: value, (probability,) domain distance (inf for a
        structure whose periodicity the training set never had, see :meth:`domain_distance`).

        ``embeddings`` are the (1, n_depths, dim) embeddings of the one NIP this predictor uses;
        its descriptor sources (composition, physics) are computed from ``atoms`` (physics with
        ``backbone``, the calculator's built NIP).
        """
        features = self.features(self._with_descriptors(embeddings, atoms, backbone))
        if len(features) != 1:
            raise ValueError("predict_properties takes the embeddings of one structure")
        results = {f"{name}_domain_distance": float(self._distance(features, periodic)[0])}
        if self.task == "classification":
            proba = self.head.predict_proba(features)[0]
            results[f"{name}_probability"] = float(proba[1])
            results[name] = float(np.asarray(self.head.classes_)[int(proba[1] >= 0.5)])
        else:
            results[name] = float(self.head.predict(features)[0])
        return results

    def _with_descriptors(self, embeddings, atoms, backbone=None):
        """The list of all sources' arrays for one structure, given its NIP embeddings."""
        if not any(_is_descriptor(r) for r in self.backbones):
            return embeddings
        if atoms is None:
            raise ValueError(f"predictor {self.target_name!r} also uses descriptors computed from the structure: "
                             "pass atoms=")
        if not hasattr(self, "_descriptor_sources"):  # built once: matminer loads its tables per featurizer
            records = [r for r in self.backbones if _is_descriptor(r)]
            built = build_sources(([backbone] if backbone is not None else []) + records, None)[-len(records):]
            self._descriptor_sources = {r["name"]: source for r, source in zip(records, built, strict=True)}
        nip = np.asarray(embeddings)
        return [self._descriptor_sources[r["name"]].embed([atoms]) if _is_descriptor(r) else nip
                for r in self.backbones]

    # -- persistence ------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "target_name": self.target_name, "units": self.units, "task": self.task,
            "transform": self.head.get_params().get("target_transform"),
            "backbones": self.backbones, "depths": [list(p) for p in self.depths],
            "depths_label": candidate_label(self.depths, [r["name"] for r in self.backbones]),
            "n_train": self.n_train, "seeds": self.seeds, "selection": self.selection, "versions": self.versions,
            "inputs": self.inputs, "training_pbc": self.training_pbc,
        }

    def save(self, path) -> None:
        """Write the predictor to one file (see :mod:`.predictor_file` for the format)."""
        write_predictor_file(path, self.metadata(), self.head, self.domain)

    def __repr__(self) -> str:
        return (f"Predictor({self.target_name!r} [{self.units}], {type(self.head).__name__} on "
                f"{self.backbone_label} depths {candidate_label(self.depths)}, n_train={self.n_train})")


def load_predictor(path, *, trust: bool = False) -> Predictor:
    """Load a saved predictor. Pickled heads (custom estimators) need ``trust=True``.

    A file that is not a whole predictor (damaged, truncated, of another format) raises
    :class:`~hacknip_ase.errors.PredictorFileError` naming the file and what is wrong.
    """
    with reading(path):
        meta, head, domain = read_predictor_file(path, trust)
        return Predictor(head, [tuple(p) for p in meta["depths"]], meta["backbones"], target_name=meta["target_name"],
                         units=meta["units"], task=meta["task"], domain=domain, n_train=meta["n_train"],
                         seeds=meta["seeds"], selection=meta["selection"], versions=meta["versions"],
                         inputs=meta.get("inputs"), training_pbc=meta.get("training_pbc"))
