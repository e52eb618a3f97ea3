"""Run one task x backbone x head end to end and write its result file.

Flow: load the task (molecule tasks relax their molecules with the same backbone), featurize
every structure once through the engine and its cache, then per official split: fit a
:class:`hacknip_ase.heads.Predictor` on the training rows only (it chooses the depth by inner
cross-validation on them, or on the split's validation part for tasks with
``select_on_valid``, and refits on train + valid; the object ``hacknip fit`` saves), predict the
test rows, score with the task's own metrics (:meth:`Task.score_split`). Each finished fold is written
at once (:class:`ResultWriter`), so a killed run resumes after its last finished fold. Matbench
folds are also recorded in matbench's own objects as they finish (:class:`~.matbench_record.MatbenchRecord`:
matbench scores them), and a finished Matbench run gets matbench's ``results.json.gz``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np

from .config import FrozenOptions, RunConfig
from .matbench_record import MatbenchRecord, matbench_results_path, with_matbench_scores
from .recipe import Recipe, recipe_for
from .results import ResultWriter, result_path

logger = logging.getLogger(__name__)

MOLECULE_FAMILIES = ("moleculenet", "electrolytes")
VALID_RULE = ("depth chosen on each split's validation part (heads fitted on its training part), "
              "then the head refitted on train + valid")


def fit_predictor(X, y, nip, head: str, task_type: str, *, seed: int, head_params: Mapping | None = None,
                  inner_cv: int | None = None, holdout: float | None = None, scheme: Mapping | None = None,
                  target_name: str = "target", recipe: Recipe | None = None, descriptors: Sequence = ()):
    """The :class:`~hacknip_ase.heads.Predictor` of one training part (selection and seeding are
    :meth:`Predictor.fit`'s; ``scheme`` fixes cv (folds or a splitter of these rows) /
    validation_fraction instead of the size rule). ``recipe`` adds the feature families, transform
    and tuning; ``descriptors`` are its extra sources as (info, rows of X) pairs."""
    from hacknip_ase.heads import Predictor
    from hacknip_ase.heads.selection import selection_scheme

    recipe = recipe or Recipe(head=head)
    if scheme is None:
        scheme = selection_scheme(len(y), recipe.head, inner_cv, holdout)
    info = _source_info(nip)
    if X.shape[2] != info["dim"]:  # per-row task features appended to every depth (AIMD temperature)
        info = {**info, "dim": int(X.shape[2])}
    infos, arrays = [info, *(d for d, _ in descriptors)], [X, *(x for _, x in descriptors)]
    return Predictor.fit(arrays if len(arrays) > 1 else X, y, backbone=infos if len(infos) > 1 else info,
                         head=recipe.head, task=task_type, target_name=target_name,
                         head_params=dict(head_params) if head_params else None, cv=scheme["cv"] or 5,
                         validation_fraction=scheme["validation_fraction"], random_state=seed,
                         **recipe.fit_options())


def _source_info(source) -> dict:
    info = source.info
    return dict(info) if isinstance(info, dict) else info.as_dict()


def get_source(name: str, *, device: str = "cpu", cache_dir=None, nip=None):
    """A NIP backbone by registry name, or a descriptor source ("composition"; "physics",
    simulated with the run's backbone ``nip``)."""
    from hacknip_ase.sources import NAMES, build_source

    if name in NAMES:
        return build_source(name, backbone=nip, cache_dir=cache_dir)
    from hacknip_ase.backbones import get_backbone

    return get_backbone(name, device=device)


def load_task(task, backbone, *, data_dir=None, limit: int | None = None, relax: str = "backbone",
              progress: bool = True):
    """Load ``task``; molecule tasks build their molecules with the ``relax`` recipe of
    :data:`hacknip_ase.molecules.RECIPES` ("backbone": relaxed with ``backbone``, cached per backbone)."""
    from hacknip_ase.molecules import RECIPES

    options = {}
    if limit is not None:
        options["n" if task.family == "synthetic" else "limit"] = int(limit)
    if task.family in MOLECULE_FAMILIES:
        if relax not in RECIPES:
            raise ValueError(f"relax must be one of {sorted(RECIPES)}, got {relax!r}")
        settings = RECIPES[relax]
        options.update(settings=settings, progress=progress)
        if settings.uses_calculator:
            from hacknip_ase.calculator import EmbeddingCalculator

            options["calculator"] = EmbeddingCalculator(backbone)
    if limit is not None and task.family not in ("synthetic", "moleculenet"):
        raise ValueError(f"--limit is only supported for generated and MoleculeNet tasks, not {task.name}")
    data = task.load(data_dir, **options)
    if task.family in MOLECULE_FAMILIES:
        from dataclasses import asdict

        data.meta["relaxation"] = {"recipe": relax, **asdict(options["settings"])}  # recorded by task_header
    return data


def task_header(task, data, **subset) -> dict:
    """The ``task`` block of a result file; ``subset`` (training fraction, test limit) from
    :func:`~.finetune_run.subset_header` when a run uses part of each split."""
    header = {"name": task.name, "family": task.family, "task_type": task.task_type, "metrics": list(task.metrics),
              "split": task.split_description, "n_rows": len(data), "n_excluded": len(data.excluded),
              "excluded": [e.__dict__ for e in data.excluded[:50]], "notes": list(data.notes),
              "target_names": list(data.target_names), "feature_names": list(data.feature_names)}
    if "relaxation" in data.meta:
        header["relaxation"] = data.meta["relaxation"]
    return {**header, **subset}


def embed(data, backbone, *, cache_dir=None, featurize_batch_size: int = 32, progress: bool = True):
    """(n, n_depths, dim[+n_features]) embeddings of every row, and a mask of rows that have one.

    Mixtures (CE) are concentration-weighted sums of their molecules' embeddings; extra
    per-row features (AIMD temperature) are appended to every depth, so depth selection
    still compares depths and the head always sees them.
    """
    from hacknip_ase.featurize import featurize
    from hacknip_ase.sources import is_source

    from ..tasks.electrolytes import mixture_embeddings

    if is_source(backbone):  # a descriptor source: computed from each structure
        if data.inputs and isinstance(data.inputs[0], Mapping):
            raise ValueError(f"{backbone.name} descriptors need one structure per row, not mixtures")
        X = backbone.embed(data.inputs, progress=progress)
        return X, np.ones(len(data), dtype=bool), {"backbone": backbone.info, "options": {}, "cache_identity": None,
                                                   "skipped": []}
    if data.inputs and isinstance(data.inputs[0], Mapping):
        names = list(data.molecules)
        fs = featurize([data.molecules[n] for n in names], backbone=backbone, ids=names, cache_dir=cache_dir,
                       batch_size=featurize_batch_size, progress=progress, on_error="skip")
        by_id = dict(zip(fs.ids, fs.embeddings, strict=True))
        present = np.array([all(m in by_id for m in mix) for mix in data.inputs])
        shape = fs.embeddings.shape[1:]
        X = np.zeros((len(data), *shape), dtype=np.float32)
        if present.any():
            X[present] = mixture_embeddings([m for m, ok in zip(data.inputs, present, strict=True) if ok], by_id)
    else:
        fs = featurize(data.inputs, backbone=backbone, ids=data.ids, cache_dir=cache_dir,
                       batch_size=featurize_batch_size, progress=progress, on_error="skip")
        by_id = dict(zip(fs.ids, fs.embeddings, strict=True))
        present = np.array([i in by_id for i in data.ids])
        X = np.zeros((len(data), *fs.embeddings.shape[1:]), dtype=np.float32)
        X[present] = np.stack([by_id[i] for i in np.asarray(data.ids)[present]])
    if data.features is not None:
        extra = np.asarray(data.features, dtype=np.float32).reshape(len(data), 1, -1)
        X = np.concatenate([X, np.broadcast_to(extra, (len(data), X.shape[1], extra.shape[2]))], axis=2)
    return X, present, fs.metadata


def run(task_name: str, backbone: str = "chgnet", head: str = "xgboost", config: RunConfig = RunConfig(), *,
        recipe: Recipe | None = None, head_params: Mapping | None = None,
        options: FrozenOptions = FrozenOptions()) -> dict:
    """Run ``task_name`` with ``backbone`` embeddings and ``head``; returns the result record.

    ``head`` may name a preset (:data:`~.recipe.PRESETS`, e.g. "auto"); ``recipe`` gives the
    feature families, transform and tuning option by option instead. ``backbone`` may be
    "composition" (composition descriptors alone: the baseline without a NIP). ``config.folds``
    restricts the run to the named splits (smoke runs); ``config.limit`` shrinks generated and
    MoleculeNet tasks. The result file is ``<results_dir>/<task>/<backbone>__<recipe label>.json``.
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from hacknip_ase.provenance import feature_versions
    from hacknip_ase.heads.selection import validation_split

    from ..tasks import CLASSIFICATION, get_task
    from hacknip_ase.provenance import run_versions

    start = time.perf_counter()
    recipe = recipe or recipe_for(head)
    task = get_task(task_name)
    c, seed, progress = config, config.seed, config.progress
    timing: dict[str, float] = {}
    t = time.perf_counter()
    nip = get_source(backbone, device=c.device, cache_dir=c.cache_dir)
    timing["backbone"] = time.perf_counter() - t

    t = time.perf_counter()
    data = load_task(task, nip, data_dir=c.data_dir, limit=c.limit, relax=options.relax, progress=progress)
    timing["load"] = time.perf_counter() - t  # includes molecule relaxation for molecule tasks
    t = time.perf_counter()
    X, present, feature_meta = embed(data, nip, cache_dir=c.cache_dir, featurize_batch_size=options.featurize_batch_size,
                                     progress=progress)
    if backbone in recipe.descriptors:
        raise ValueError(f"--features {backbone} repeats the run's own backbone; multi-NIP adds another one")
    descriptors = []
    for name in recipe.descriptors:  # descriptor sources, or another NIP's embeddings (multi-NIP)
        source = get_source(name, device=c.device, cache_dir=c.cache_dir, nip=nip)
        X_source, present_source, _ = embed(data, source, cache_dir=c.cache_dir,
                                            featurize_batch_size=options.featurize_batch_size, progress=progress)
        present &= present_source  # a row another NIP cannot embed cannot train either
        descriptors.append((_source_info(source), X_source))
    timing["featurize"] = time.perf_counter() - t

    classification = task.task_type == CLASSIFICATION
    all_splits = list(task.splits(data))
    header = {
        "task": task_header(task, data, n_featurize_skipped=int((~present).sum())),
        "model": frozen_model(nip, recipe, head_params, classification, inner_cv=options.inner_cv,
                              holdout=options.holdout, rule=VALID_RULE if task.select_on_valid else None,
                              descriptors=[info for info, _ in descriptors]),
        "seeds": {"head": seed, "selection": seed, "split": sorted({s.seed for s in all_splits} - {None}),
                  **({"per_split": "head and selection of split seed_k seeded with head seed + k"}
                     if task.seeded_replicates else {})},
        "limit": c.limit,
        "versions": {**run_versions(), **feature_versions(backbone),
                     **{k: v for d in recipe.descriptors for k, v in feature_versions(d).items()}},
        "featurization": {k: feature_meta.get(k) for k in ("backbone", "options", "cache_identity", "skipped")},
        "command": c.command,
    }
    path = result_path(c.results_dir, task.name, backbone, recipe.label())
    writer = ResultWriter(path, header, resume=c.resume)
    matbench = None
    if task.family == "matbench":  # matbench records every fold, resumed ones first
        model = header["model"]
        matbench = MatbenchRecord({task.name: data}, params={"backbone": model["backbone"]["name"],
                                                              "model": model["backbone"]["model"],
                                                              "head": model["head"]})
        matbench.record_folds(task.name, writer.record["folds"])

    folds = c.folds
    splits = [s for s in all_splits if folds is None or s.name in folds]
    targets = np.asarray(data.targets)
    multi = targets.ndim == 2
    fold_seconds = 0.0
    # One BLAS thread for the heads: their matrices are small, and on a few cores threaded BLAS
    # inside many short fits is several times slower than one thread (measured: MLP fits x8).
    limiter = threadpool_limits(limits=1, user_api="blas")
    try:
        for split in tqdm(splits, desc=f"{task.name} {backbone} {recipe.label()}", unit="fold", disable=not progress):
            if split.name in writer.done:
                continue
            t_fold = time.perf_counter()
            train = split.train[present[split.train]]  # rows the backbone could not embed cannot train
            test = np.asarray(split.test)
            scheme = None
            if task.select_on_valid:
                valid = split.valid[present[split.valid]]
                scheme = {"cv": validation_split(len(train), len(valid)), "validation_fraction": None}
                fit_rows = np.concatenate([train, valid])
            else:
                fit_rows = train
            fold_seed = seed + split.seed if task.seeded_replicates and split.seed is not None else seed
            labels = range(targets.shape[1]) if multi else [None]
            preds, best, curves, choices, seconds = [], [], [], [], {"select_fit": 0.0, "predict": 0.0}
            cpu_start = time.process_time()
            for k in labels:
                y = targets[:, k] if multi else targets
                t = time.perf_counter()
                predictor = fit_predictor(X[fit_rows], y[fit_rows], nip, recipe.head, task.task_type, seed=fold_seed,
                                          head_params=head_params, inner_cv=options.inner_cv, holdout=options.holdout,
                                          scheme=scheme, target_name=data.target_names[k or 0], recipe=recipe,
                                          descriptors=[(info, x[fit_rows]) for info, x in descriptors])  # no test row
                seconds["select_fit"] += time.perf_counter() - t
                t = time.perf_counter()
                test_sources = [X[test], *(x[test] for _, x in descriptors)]
                pred = predict_scores(predictor, test_sources if descriptors else X[test], classification)
                # a test row without an embedding gets the training mean (counted in n_imputed)
                pred[~present[test]] = float(np.mean(y[fit_rows]))
                seconds["predict"] += time.perf_counter() - t
                preds.append(pred)
                best.append([d for _, d in predictor.depths])
                curves.append(predictor.selection["curve"])
                used = {key: predictor.selection[key] for key in ("cv", "validation_fraction")}
                choices.append(recipe_choices(predictor))
            y_pred = np.column_stack(preds) if multi else preds[0]
            metrics = task.score_split(data, split, y_pred)
            if matbench is not None:
                metrics = with_matbench_scores(metrics, matbench.record(task.name, split.name,
                                                                        [data.ids[i] for i in test], y_pred))
            seconds["total"] = time.perf_counter() - t_fold
            seconds["cpu"] = time.process_time() - cpu_start
            fold_seconds += seconds["total"]
            writer.add_fold(split.name, metrics=metrics, ids=[data.ids[i] for i in test], y_true=targets[test],
                            y_pred=y_pred, seed=split.seed, n_train=len(train), n_valid=len(split.valid),
                            best_depths=best if multi else best[0], selection_curve=curves if multi else curves[0],
                            seconds=seconds, selection=used, n_imputed=int((~present[test]).sum()),
                            head_seed=fold_seed, **({"choices": choices if multi else choices[0]}
                                                    if not recipe.is_plain else {}))
    finally:
        limiter.restore_original_limits()
    timing["folds"] = fold_seconds
    extra = {}
    if matbench is not None and folds is None:
        t = time.perf_counter()
        extra["matbench_results"] = matbench.write(matbench_results_path(path)).name
        timing["matbench_write"] = time.perf_counter() - t
    timing["total"] = time.perf_counter() - start
    return writer.finish(timing, **extra)


def frozen_model(nip, recipe: Recipe | str, head_params: Mapping | None, classification: bool, *,
                 rule: str | None = None, descriptors: Sequence[Mapping] = (), **selection) -> dict:
    """The ``model`` block of a frozen-embedding result (``selection``: inner_cv, holdout; ``rule``
    defaults to the size rule of :func:`hacknip_ase.heads.selection.selection_scheme`). ``head``
    is the row's name (:meth:`Recipe.label`); ``recipe`` what it fits (absent for the plain
    paper protocol); ``descriptors`` the infos of the recipe's extra sources (their settings'
    hash among them, so that a changed physics setting is another run, not a resumed one)."""
    from hacknip_ase.heads.selection import SELECTION_RULE

    recipe = recipe if isinstance(recipe, Recipe) else Recipe(head=recipe)
    rule = SELECTION_RULE if rule is None else rule
    block = {"kind": "frozen", "backbone": _source_info(nip), "head": recipe.label(),
             "head_params": dict(head_params or {}),
             "selection": {"candidates": "single depths" if recipe.candidates == "single" else recipe.candidates,
                           "scoring": "roc_auc" if classification else "mae", "rule": rule, **selection}}
    if not recipe.is_plain:
        block["recipe"] = recipe.as_dict()
    if descriptors:
        block["descriptors"] = [dict(info) for info in descriptors]
    return block


def recipe_choices(predictor) -> dict:
    """What the recipe's stages chose on one training part: features, transform, tuned parameters."""
    selection = predictor.selection or {}
    names = [r["name"] for r in predictor.backbones]
    from hacknip_ase.heads.selection import candidate_label

    out = {"features": candidate_label(predictor.depths, names if len(names) > 1 else None)}
    if "transform" in selection:
        out["transform"] = selection["transform"]["chosen"]
        out["transform_scores"] = {str(c["transform"]): c["score"] for c in selection["transform"]["candidates"]}
    if "tuning" in selection:
        out["tuning"] = selection["tuning"]
    return out


def predict_scores(predictor, X, classification: bool) -> np.ndarray:
    """Predictions of a :class:`~hacknip_ase.heads.Predictor` to score: P(class 1) for
    classification, values for regression."""
    if classification:
        return np.asarray(predictor.predict_proba_embeddings(X)[:, 1], dtype=float)
    return np.asarray(predictor.predict_embeddings(X), dtype=float)
