"""Data-efficiency study: frozen embeddings + a shallow head versus fine-tuning, by training size.

For one task, per fold, per training fraction and per subset seed, both approaches train on the
same random subset of the fold's training rows (:func:`~.subsets.training_subset`, nested
across fractions for a seed) and are scored on the same test rows. Every run is its own result
file, ``<results_dir>/<task>/efficiency/<approach>__f<fraction>__s<seed>.json`` (resumable):

- ``frozen_<head>``: cached all-depth embeddings; the depth chosen by inner CV on the training
  subset only (the harness's :func:`~.run.fit_predictor`), the head refitted on it.
- ``finetune``: :func:`~.finetune_run.run_finetune` on the subset (early stopping on a split of it).

:func:`summarize_study` reads a study back (points and crossover); its figures and text are
drawn by the report layer (:mod:`benchmarks.report.efficiency`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .config import DEFAULT_RESULTS_DIR, FinetuneOptions, RunConfig
from .finetune_run import HEAD as FINETUNE, run_finetune
from .results import ResultWriter, read_result
from .run import load_task, task_header
from .subsets import efficiency_path, fraction_label, select_folds, subset_header, test_subset, training_subset

logger = logging.getLogger(__name__)

#: The issue's fractions of the training data and subset seeds (5 random subsets each).
FRACTIONS = (0.001, 0.01, 0.1, 1.0)
SUBSET_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_FOLDS = ("fold_0",)


@dataclass(frozen=True)
class StudyPlan:
    """What a study runs: approaches ("frozen", "finetune"; None: both), training fractions
    (``finetune_fractions`` restricts fine-tuning, the expensive side), subset seeds, and the
    frozen approach's head."""

    approaches: Sequence[str] | None = None
    fractions: Sequence[float] | None = None
    finetune_fractions: Sequence[float] | None = None
    subset_seeds: Sequence[int] | None = None
    head: str = "xgboost"
    head_params: Mapping | None = None


def frozen_name(head: str) -> str:
    return f"frozen_{head}"


def plan(fractions: Sequence[float], subset_seeds: Sequence[int]) -> list[tuple[float, int]]:
    """(fraction, seed) pairs; the whole training fold is one subset, so it gets the first seed only."""
    return [(f, s) for f in fractions for s in (subset_seeds[:1] if f >= 1 else subset_seeds)]


def run_study(task_name: str, backbone: str = "chgnet", config: RunConfig = RunConfig(), *,
              study: StudyPlan = StudyPlan(), finetune: FinetuneOptions = FinetuneOptions()) -> dict:
    """Run every missing (approach, fraction, seed) of the study; returns :func:`summarize_study`'s
    report (without figures: :func:`benchmarks.report.efficiency.make_figures` draws them).

    ``config.folds`` defaults to :data:`DEFAULT_FOLDS`; ``finetune`` gives the fine-tuning
    recipe's changes (max_epochs, patience, train_batch_size) and ``test_limit``, which applies
    to both approaches (its fraction and subset seed are set per run).
    """
    from hacknip_ase.backbones import get_backbone

    from ..tasks import get_task

    approaches = list(study.approaches or ("frozen", "finetune"))
    fractions = list(study.fractions or FRACTIONS)
    finetune_fractions = list(study.finetune_fractions or fractions)
    subset_seeds = list(study.subset_seeds if study.subset_seeds is not None else SUBSET_SEEDS)
    task = get_task(task_name)
    nip = get_backbone(backbone, device=config.device)
    data = load_task(task, nip, data_dir=config.data_dir, limit=config.limit, progress=config.progress)
    splits = select_folds(list(task.splits(data)), list(config.folds or DEFAULT_FOLDS))
    test_limit = finetune.test_limit
    if "frozen" in approaches:
        X, present, meta = _embed_needed(data, nip, splits, plan(fractions, subset_seeds), test_limit,
                                         cache_dir=config.cache_dir, progress=config.progress)
        for fraction, subset_seed in plan(fractions, subset_seeds):
            run_frozen(task, data, X, present, splits, nip, config, head=study.head, head_params=study.head_params,
                       fraction=fraction, subset_seed=subset_seed, test_limit=test_limit, featurization=meta)
    if "finetune" in approaches:
        fold_config = replace(config, folds=[s.name for s in splits])
        for fraction, subset_seed in plan(finetune_fractions, subset_seeds):
            run_finetune(task.name, backbone, fold_config,
                         options=replace(finetune, train_fraction=fraction, subset_seed=subset_seed),
                         path=efficiency_path(config.results_dir, task.name, FINETUNE, fraction, subset_seed),
                         data=data, nip=nip)
    report = summarize_study(task.name, backbone, results_dir=config.results_dir)
    report.pop("found")
    return report


def _embed_needed(data, nip, splits, pairs, test_limit, *, cache_dir, progress):
    """Embeddings (n, n_depths, dim) of only the rows some frozen run uses (others stay zero).

    A study on a few small fractions needs a small part of a large task; the rest is never
    featurized. Goes through the harness's :func:`~.run.embed` and the engine's cache.
    """
    from .run import embed

    needed = set()
    for split in splits:
        needed.update(test_subset(split.test, test_limit).tolist())
        for fraction, subset_seed in pairs:
            needed.update(training_subset(split.train, fraction, subset_seed).tolist())
    rows = np.array(sorted(needed), dtype=int)
    part = replace(data, ids=[data.ids[i] for i in rows], inputs=[data.inputs[i] for i in rows],
                   targets=np.asarray(data.targets)[rows],
                   features=None if data.features is None else np.asarray(data.features)[rows])
    t = time.perf_counter()
    X_part, present_part, meta = embed(part, nip, cache_dir=cache_dir, progress=progress)
    meta = {k: meta.get(k) for k in ("backbone", "options", "cache_identity", "skipped")}
    meta.update(n_embedded=len(rows), seconds=time.perf_counter() - t)
    X = np.zeros((len(data), *X_part.shape[1:]), dtype=np.float32)
    present = np.zeros(len(data), dtype=bool)
    X[rows], present[rows] = X_part, present_part
    return X, present, meta


def run_frozen(task, data, X, present, splits, nip, config: RunConfig = RunConfig(), *, head: str, fraction: float,
               subset_seed: int, head_params: Mapping | None = None, test_limit=None, featurization=None) -> dict:
    """The frozen-embedding approach on one training subset of each split; returns the record."""
    from threadpoolctl import threadpool_limits

    from hacknip_ase.provenance import run_versions
    from hacknip_ase.heads.selection import SELECTION_RULE, selection_scheme

    from .run import fit_predictor, frozen_model, predict_scores

    start = time.perf_counter()
    seed = config.seed
    classification = task.task_type == "classification"
    header = {
        "task": task_header(task, data, **subset_header(train_fraction=fraction, subset_seed=subset_seed,
                                                        test_limit=test_limit)),
        "model": frozen_model(nip, head, head_params, classification,
                              rule=SELECTION_RULE + "; inner folds capped at the subset size"),
        "seeds": {"head": seed, "selection": seed, "subset": subset_seed,
                  "split": sorted({s.seed for s in splits} - {None})},
        "limit": config.limit, "versions": run_versions(), "featurization": featurization,
        "command": config.command,
    }
    path = efficiency_path(config.results_dir, task.name, frozen_name(head), fraction, subset_seed)
    writer = ResultWriter(path, header, resume=config.resume)
    targets = np.asarray(data.targets, dtype=float)
    fold_seconds = 0.0
    with threadpool_limits(limits=1, user_api="blas"):  # small fits: one BLAS thread is faster (see run.py)
        for split in splits:
            if split.name in writer.done:
                continue
            t_fold = time.perf_counter()
            subset = training_subset(split.train, fraction, subset_seed)
            train = subset[present[subset]]
            test = test_subset(split.test, test_limit)
            scheme = selection_scheme(len(train), head)
            if scheme["cv"]:
                scheme["cv"] = min(scheme["cv"], len(train))  # a 5-row subset: leave-one-out
            predictor = fit_predictor(X[train], targets[train], nip, head, task.task_type, seed=seed,
                                      head_params=head_params, scheme=scheme)  # the training subset only
            y_pred = predict_scores(predictor, X[test], classification)
            y_pred[~present[test]] = float(np.mean(targets[train]))
            seconds = {"total": time.perf_counter() - t_fold}
            fold_seconds += seconds["total"]
            writer.add_fold(split.name, metrics=task.score_split(data, replace(split, train=train, test=test), y_pred),
                            ids=[data.ids[i] for i in test],
                            y_true=targets[test], y_pred=y_pred, seed=split.seed, n_train=len(train),
                            best_depths=[d for _, d in predictor.depths],
                            selection_curve=predictor.selection["curve"], seconds=seconds, selection=scheme,
                            train_ids=[data.ids[i] for i in train], n_imputed=int((~present[test]).sum()))
    return writer.finish({"folds": fold_seconds, "total": time.perf_counter() - start})


# -- reading the study back ------------------------------------------------------------------
def collect(task_name: str, results_dir: str | os.PathLike = DEFAULT_RESULTS_DIR) -> dict:
    """Every efficiency result of a task: ``{approach: {fraction: [record, ...]}}``."""
    found: dict[str, dict[float, list[dict]]] = {}
    for path in sorted((Path(results_dir) / task_name / "efficiency").glob("*__f*__s*.json")):
        try:
            record = read_result(path)
        except (ValueError, OSError):
            continue
        approach = path.name.split("__")[0]
        fraction = float(record["task"]["subset"]["train_fraction"] or 1.0)
        found.setdefault(approach, {}).setdefault(fraction, []).append(record)
    return found


def curve(records: Sequence[dict], metric: str = "mae") -> dict:
    """One point of the figure: MAE mean +- std over subsets (each subset: mean over its folds)."""
    per_subset = [np.mean([f["metrics"][metric] for f in r["folds"]]) for r in records if r["folds"]]
    sizes = [np.mean([f["n_train"] for f in r["folds"]]) for r in records if r["folds"]]
    seconds = [f["seconds"]["total"] for r in records for f in r["folds"]]
    folds = sorted({f["name"] for r in records for f in r["folds"]})
    n_test = sorted({f["n_test"] for r in records for f in r["folds"]})
    return {"n_train": float(np.mean(sizes)), "mean": float(np.mean(per_subset)), "std": float(np.std(per_subset)),
            "n_subsets": len(per_subset), "folds": folds, "n_test": n_test,
            "seconds_per_fold": float(np.mean(seconds)), "seconds_per_fold_max": float(np.max(seconds))}


def crossover(points: Mapping[str, Mapping[float, dict]], frozen: str, finetune: str = FINETUNE) -> dict:
    """The smallest training size at which the frozen approach is no longer better (lower MAE).

    Compared at the fractions both approaches ran; ``fraction`` is None when the frozen
    approach is better at every one of them (or there is no common fraction).
    """
    common = sorted(set(points.get(frozen, {})) & set(points.get(finetune, {})))
    for fraction in common:
        a, b = points[frozen][fraction], points[finetune][fraction]
        if b["mean"] <= a["mean"]:
            return {"fraction": fraction, "n_train": a["n_train"], "compared": common,
                    "text": f"fine-tuning matches or beats the embeddings from {a['n_train']:.0f} training "
                            f"structures (fraction {fraction_label(fraction)}): MAE {b['mean']:.4g} vs {a['mean']:.4g}"}
    text = ("no fraction run by both approaches" if not common else
            "no crossover within the fractions run: the embeddings are better at "
            + ", ".join(fraction_label(f) for f in common))
    return {"fraction": None, "n_train": None, "compared": common, "text": text}


def summarize_study(task_name: str, backbone: str = "chgnet", *, results_dir=DEFAULT_RESULTS_DIR) -> dict:
    """The study's points (approach -> fraction -> :func:`curve`) and crossover, without figures."""
    found = collect(task_name, results_dir)
    found = {a: {f: [r for r in rs if r["model"]["backbone"]["name"] == backbone] for f, rs in by_f.items()}
             for a, by_f in found.items()}
    points = {a: {f: curve(rs) for f, rs in sorted(by_f.items()) if rs} for a, by_f in found.items()}
    points = {a: p for a, p in points.items() if p}
    frozen = next((a for a in points if a.startswith("frozen_")), None)
    return {"task": task_name, "backbone": backbone, "points": points, "found": found, "figures": {},
            "crossover": crossover(points, frozen) if frozen else {"fraction": None, "text": "no frozen runs"}}
