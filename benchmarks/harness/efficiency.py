"""Data-efficiency study: frozen embeddings + a shallow head versus fine-tuning, by training size.

For one task, per fold, per training fraction and per subset seed, both approaches train on the
same random subset of the fold's training rows (:func:`~.finetune_run.training_subset`, nested
across fractions for a seed) and are scored on the same test rows. Every run is its own result
file, ``<results_dir>/<task>/efficiency/<approach>__f<fraction>__s<seed>.json`` (resumable):

- ``frozen_<head>``: cached all-depth embeddings; the depth chosen by inner CV on the training
  subset only (the harness's :func:`~.run.fit_predictor`), the head refitted on it.
- ``finetune``: :func:`~.finetune_run.run_finetune` on the subset (early stopping on a split of it).

:func:`make_figures` draws MAE against training size (log x, mean +- std over subsets) with the
crossover, and the per-neuron update-ratio distributions (HackNIP eq. 2-3) of the fine-tuned
backbone and its head at a small and at the largest fraction run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .finetune_run import (HEAD as FINETUNE, efficiency_path, fraction_label, run_finetune, select_folds,
                           subset_header, test_subset, training_subset)
from .results import ResultWriter, read_result
from .run import DEFAULT_RESULTS_DIR, DEFAULT_SEED, load_task, task_header

logger = logging.getLogger(__name__)

#: The issue's fractions of the training data and subset seeds (5 random subsets each).
FRACTIONS = (0.001, 0.01, 0.1, 1.0)
SUBSET_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_FOLDS = ("fold_0",)
FIGURES_DIR = Path("leaderboard") / "figures"


def frozen_name(head: str) -> str:
    return f"frozen_{head}"


def plan(fractions: Sequence[float], subset_seeds: Sequence[int]) -> list[tuple[float, int]]:
    """(fraction, seed) pairs; the whole training fold is one subset, so it gets the first seed only."""
    return [(f, s) for f in fractions for s in (subset_seeds[:1] if f >= 1 else subset_seeds)]


def run_study(task_name: str, backbone: str = "chgnet", *, approaches: Sequence[str] | None = None,
              fractions: Sequence[float] | None = None, finetune_fractions: Sequence[float] | None = None,
              subset_seeds: Sequence[int] | None = None, folds: Sequence[str] | None = None, head: str = "xgboost",
              head_params: Mapping | None = None, max_epochs: int | None = None, patience: int | None = None,
              batch_size: int | None = None, test_limit: int | None = None, limit: int | None = None, seed: int = DEFAULT_SEED, data_dir=None,
              results_dir: str | os.PathLike = DEFAULT_RESULTS_DIR, cache_dir=None,
              figures_dir: str | os.PathLike | None = FIGURES_DIR, device: str = "cpu", resume: bool = True,
              progress: bool = True, command: str | None = None) -> dict:
    """Run every missing (approach, fraction, seed) of the study, then draw its figures.

    ``approaches`` are "frozen" and/or "finetune" (default both); ``finetune_fractions``
    restricts fine-tuning (the expensive side) to some fractions. Returns :func:`make_figures`'s
    report (without figures when ``figures_dir`` is None).
    """
    from hacknip_ase.backbones import get_backbone

    from ..tasks import get_task

    approaches = list(approaches or ("frozen", "finetune"))
    fractions = list(fractions or FRACTIONS)
    finetune_fractions = list(finetune_fractions or fractions)
    subset_seeds = list(subset_seeds if subset_seeds is not None else SUBSET_SEEDS)
    task = get_task(task_name)
    nip = get_backbone(backbone, device=device)
    data = load_task(task, nip, data_dir=data_dir, limit=limit, progress=progress)
    splits = select_folds(list(task.splits(data)), list(folds or DEFAULT_FOLDS))
    fold_names = [s.name for s in splits]
    common = {"limit": limit, "test_limit": test_limit, "results_dir": results_dir, "resume": resume,
              "progress": progress, "command": command}
    if "frozen" in approaches:
        X, present, meta = _embed_needed(data, nip, splits, plan(fractions, subset_seeds), test_limit,
                                         cache_dir=cache_dir, progress=progress)
        for fraction, subset_seed in plan(fractions, subset_seeds):
            run_frozen(task, data, X, present, splits, nip, head=head, head_params=head_params,
                       fraction=fraction, subset_seed=subset_seed, seed=seed, featurization=meta, **common)
    if "finetune" in approaches:
        for fraction, subset_seed in plan(finetune_fractions, subset_seeds):
            run_finetune(task.name, backbone, folds=fold_names, max_epochs=max_epochs, patience=patience,
                         batch_size=batch_size,
                         train_fraction=fraction, subset_seed=subset_seed, seed=seed, device=device,
                         path=efficiency_path(results_dir, task.name, FINETUNE, fraction, subset_seed),
                         data=data, nip=nip, **common)
    if figures_dir is None:
        report = summarize_study(task.name, backbone, results_dir=results_dir)
        report.pop("found")
        return report
    return make_figures(task.name, backbone, results_dir=results_dir, figures_dir=figures_dir)


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


def run_frozen(task, data, X, present, splits, nip, *, head: str, fraction: float, subset_seed: int,
               head_params: Mapping | None = None, seed: int = DEFAULT_SEED, limit=None, test_limit=None,
               results_dir=DEFAULT_RESULTS_DIR, resume: bool = True, progress: bool = True, command=None,
               featurization=None) -> dict:
    """The frozen-embedding approach on one training subset of each split; returns the record."""
    from threadpoolctl import threadpool_limits

    from .results import run_versions
    from hacknip_ase.heads.selection import SELECTION_RULE, selection_scheme

    from .run import fit_predictor, frozen_model, predict_scores

    start = time.perf_counter()
    classification = task.task_type == "classification"
    header = {
        "task": task_header(task, data, **subset_header(train_fraction=fraction, subset_seed=subset_seed,
                                                        test_limit=test_limit)),
        "model": frozen_model(nip, head, head_params, classification,
                              rule=SELECTION_RULE + "; inner folds capped at the subset size"),
        "seeds": {"head": seed, "selection": seed, "subset": subset_seed,
                  "split": sorted({s.seed for s in splits} - {None})},
        "limit": limit, "versions": run_versions(), "featurization": featurization, "command": command,
    }
    path = efficiency_path(results_dir, task.name, frozen_name(head), fraction, subset_seed)
    writer = ResultWriter(path, header, resume=resume)
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


def make_figures(task_name: str, backbone: str = "chgnet", *, results_dir=DEFAULT_RESULTS_DIR,
                 figures_dir=FIGURES_DIR) -> dict:
    """Draw the MAE-vs-size and update-ratio figures of a task's study; returns the report."""
    report = summarize_study(task_name, backbone, results_dir=results_dir)
    points, found = report["points"], report.pop("found")
    if not points:
        return report
    figures_dir = Path(figures_dir)
    report["figures"]["mae_vs_size"] = str(_plot_curves(task_name, backbone, points, report["crossover"],
                                                        figures_dir / f"efficiency_{task_name}_{backbone}.png"))
    ratios = found.get(FINETUNE, {})
    if ratios:
        report["figures"]["update_ratios"] = str(_plot_ratios(task_name, backbone, ratios,
                                                              figures_dir / f"update_ratios_{task_name}_{backbone}.png"))
        report["ratio_fractions"] = ratio_fractions(ratios)
    return report


def ratio_fractions(by_fraction: Mapping[float, list]) -> list[float]:
    """The fractions whose update ratios are compared: 1 % and 100 %, else the smallest and largest run."""
    have = sorted(f for f, rs in by_fraction.items() if rs)
    if 0.01 in have and 1.0 in have:
        return [0.01, 1.0]
    return sorted({have[0], have[-1]})


def _plot_curves(task, backbone, points, cross, path) -> Path:
    from ..figures import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for approach, by_f in points.items():
        fr = sorted(by_f)
        x = [by_f[f]["n_train"] for f in fr]
        y = np.array([by_f[f]["mean"] for f in fr])
        e = np.array([by_f[f]["std"] for f in fr])
        label = f"{backbone} fine-tuned" if approach == FINETUNE else f"{backbone} frozen + {approach.split('_', 1)[1]}"
        ax.errorbar(x, y, yerr=e, marker="o", ms=4, capsize=3, lw=1.4, label=label)
    if cross.get("n_train"):
        ax.axvline(cross["n_train"], color="0.5", ls="--", lw=1)
    n_test = sorted({n for by_f in points.values() for p in by_f.values() for n in p["n_test"]})
    folds = sorted({f for by_f in points.values() for p in by_f.values() for f in p["folds"]})
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    sizes = sorted({round(p["n_train"]) for by_f in points.values() for p in by_f.values()})
    ax.set_xticks(sizes)  # ticks at the training sizes run, as plain counts
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training structures (random subset of the training fold)")
    ax.set_ylabel("test MAE (mean ± std over subsets)")
    ax.set_title(f"{task}: data efficiency ({', '.join(folds)}; {'/'.join(map(str, n_test))} test rows)\n"
                 f"{cross['text']}", fontsize=7)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_ratios(task, backbone, by_fraction, path) -> Path:
    """Histograms of log10 per-neuron update ratios: backbone and head, per compared fraction."""
    from ..figures import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, part in zip(axes, ("backbone", "head"), strict=True):
        for fraction in ratio_fractions(by_fraction):
            values = np.concatenate([np.asarray(f["update_ratios"][part]["values"], dtype=float)
                                     for r in by_fraction[fraction] for f in r["folds"]] or [np.zeros(0)])
            values = values[values > 0]
            if values.size == 0:
                continue
            n_train = np.mean([f["n_train"] for r in by_fraction[fraction] for f in r["folds"]])
            ax.hist(np.log10(values), bins=50, density=True, histtype="step", lw=1.4,
                    label=f"fraction {fraction_label(fraction)} (n≈{n_train:.0f}); median {np.median(values):.2g}")
        ax.set_xlabel("log10 per-neuron update ratio ||Δw_i|| / ||w_i||")
        ax.set_ylabel("density")
        ax.set_title(f"{'fine-tuned ' + backbone + ' backbone' if part == 'backbone' else 'fine-tuning head (MLP)'}",
                     fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(f"{task}: update ratios from initial to kept weights (HackNIP eq. 2-3)", fontsize=9)
    return _save(fig, path)


def format_report(report: Mapping) -> str:
    """The study as text: one line per approach and fraction, then the crossover."""
    lines = [f"{report['task']} ({report['backbone']}): MAE by training fraction"]
    for approach, by_f in report["points"].items():
        for fraction, p in by_f.items():
            lines.append(f"  {approach:16s} f={fraction_label(fraction):6s} n_train≈{p['n_train']:7.0f}  "
                         f"MAE {p['mean']:.4g} ± {p['std']:.2g} ({p['n_subsets']} subsets, {','.join(p['folds'])}, "
                         f"{'/'.join(map(str, p['n_test']))} test rows)  {p['seconds_per_fold']:.0f} s per fold")
    lines.append(f"  crossover: {report['crossover']['text']}")
    for name, path in report.get("figures", {}).items():
        lines.append(f"  figure {name}: {path}")
    return "\n".join(lines)
