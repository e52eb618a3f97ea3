"""Leaderboard figures (matplotlib, Agg): parity plots, ROC curves, headline metric versus depth.

Each function takes result records (:mod:`benchmarks.harness.results`) of one task and writes
one PNG; all data comes from the records (predictions per fold, selection curves).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on benchmark machines
    import matplotlib.pyplot as plt

    return plt


def run_label(record: dict) -> str:
    return f"{record['model']['backbone']['name']} + {record['model']['head']}"


def representative_fold(record: dict) -> dict:
    """The fold whose headline metric is closest to the mean over folds (the paper's choice)."""
    metric = record["task"]["metrics"][0]
    mean = record["summary"][metric]["mean"]
    return min(record["folds"], key=lambda f: abs(f["metrics"][metric] - mean))


def parity(records: Sequence[dict], path: str | os.PathLike) -> Path:
    """Predicted vs true on each run's representative fold, one panel per run."""
    plt = _pyplot()
    n = len(records)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.5 * rows), squeeze=False)
    for ax, record in zip(axes.flat, records):
        fold = representative_fold(record)
        y, p = np.asarray(fold["y_true"], float), np.asarray(fold["y_pred"], float)
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.scatter(y, p, s=6, alpha=0.5, edgecolors="none")
        ax.set_title(f"{run_label(record)}\n{fold['name']}: MAE {fold['metrics']['mae']:.4g}", fontsize=9)
        ax.set_xlabel(f"true {record['task']['target_names'][0]}", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
        ax.set_aspect("equal", adjustable="box")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(records[0]["task"]["name"], fontsize=10)
    return _save(fig, path)


def roc(records: Sequence[dict], path: str | os.PathLike) -> Path:
    """ROC curves of each run's representative fold (first label of multi-label tasks)."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    for record in records:
        fold = representative_fold(record)
        y, p = np.asarray(fold["y_true"], float), np.asarray(fold["y_pred"], float)
        if y.ndim == 2:
            y, p = y[:, 0], p[:, 0]
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1.2, label=f"{run_label(record)} ({fold['name']}, AUC {fold['metrics']['roc_auc']:.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(records[0]["task"]["name"], fontsize=10)
    ax.legend(fontsize=6, loc="lower right")
    return _save(fig, path)


def depth_curve(record: dict) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(depths, mean, std over outer folds) of the inner-CV headline metric per depth.

    These are the scores the depth selection itself computed, on training rows only.
    Regression scores are stored as negative MAE and are returned as MAE.
    """
    per_depth: dict[int, list[float]] = {}
    for fold in record["folds"]:
        curves = fold["selection_curve"]
        if curves and isinstance(curves[0], list):  # multi-label: one curve per label, averaged
            merged: dict[int, list[float]] = {}
            for curve in curves:
                for c in curve:
                    merged.setdefault(c["candidate"][0][1], []).append(c["score"])
            items = [(d, float(np.mean(v))) for d, v in merged.items()]
        else:
            items = [(c["candidate"][0][1], c["score"]) for c in curves if len(c["candidate"]) == 1]
        for depth, score in items:
            per_depth.setdefault(depth, []).append(score)
    depths = sorted(per_depth)
    sign = -1.0 if record["task"]["task_type"] == "regression" else 1.0
    values = [sign * np.asarray(per_depth[d]) for d in depths]
    return depths, np.array([v.mean() for v in values]), np.array([v.std() for v in values])


def depth_curves(records: Sequence[dict], path: str | os.PathLike) -> Path:
    """Headline metric (inner CV on training folds) versus embedding depth, one line per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for record in records:
        depths, mean, std = depth_curve(record)
        if depths:
            ax.errorbar(depths, mean, yerr=std, marker="o", ms=3, capsize=2, lw=1.2, label=run_label(record))
    from matplotlib.ticker import MaxNLocator

    regression = records[0]["task"]["task_type"] == "regression"
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("depth (0 = embedding layer)")
    ax.set_ylabel("inner-CV MAE" if regression else "inner-CV ROC-AUC")
    ax.set_title(records[0]["task"]["name"], fontsize=10)
    ax.legend(fontsize=6)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
