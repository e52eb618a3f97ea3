"""The Matbench part of the leaderboard: our rows beside every published Matbench v0.1 entry.

Published entries: ``matbench_leaderboard_v0.1.tsv`` in the data folder (every entry of
matbench's per-task leaderboard pages), units in ``benchmarks/reference/matbench_v0.1.json``.
Per task: MAE +- std over folds, MAE relative to the Dummy model, and whether matbench's own
scoring of our ``results.json.gz`` gives the same MAE. Across tasks, the HackNIP paper's combined
score (eq. 1)::

    nMAE_i,t = (MAE_i,t - min_k MAE_k,t) / (max_k MAE_k,t - min_k MAE_k,t)
    S_i      = mean over tasks t of nMAE_i,t        (lower is better; rank by S)

``k`` runs over the published models that report every offline task (Dummy excluded) plus one
of our rows at a time (:func:`six_task_scores`); ``t`` over the Matbench tasks with offline data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..data import DataFile, locate
from .rows import depths_cell, featurize_seconds, figure_links, fmt, is_stale, model_name, status_note

REFERENCE = Path(__file__).parents[1] / "reference" / "matbench_v0.1.json"
#: every published Matbench v0.1 entry per task (mean/std MAE over the 5 folds), in the data folder
LEADERBOARD_FILE = DataFile("matbench_leaderboard_v0.1.tsv", source="matbench's per-task leaderboard pages "
                            "(docs_src/Leaderboards Per-Task/*.md in the matbench repository)")

def load_reference(path: str | os.PathLike = REFERENCE, *, data_dir=None) -> dict:
    """Units and sources (``path``) and every published entry (:data:`LEADERBOARD_FILE` in the
    data folder): ``mae[model][task]`` and ``std[model][task]`` (mean and std of the MAE over the
    5 folds). A missing leaderboard file raises DataNotFoundError naming where to get it."""
    import csv

    reference = json.loads(Path(path).read_text())
    reference["mae"], reference["std"] = {}, {}
    with open(locate(LEADERBOARD_FILE, data_dir, download=False), newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            reference["mae"].setdefault(row["algorithm"], {})[row["task"]] = float(row["mean_mae"])
            reference["std"].setdefault(row["algorithm"], {})[row["task"]] = float(row["std_mae"])
    return reference


def six_task_scores(published: dict[str, dict[str, float]], ours: dict[str, dict[str, float]], tasks: list[str],
                    exclude=("Dummy",)) -> tuple[dict, dict]:
    """Eq. 1 against the published pool: the models reporting every task of ``tasks`` (Dummy
    excluded), scored among themselves, and each of our rows scored in that pool plus itself
    alone (our other rows stay out of its normalization). Returns ``(pool, ours)``, each
    ``{model: {"nmae", "score", "n_tasks", "rank"}}``; an our-row's rank is among pool + 1."""
    pool = {m: v for m, v in published.items() if m not in exclude and all(t in v for t in tasks)}
    scored_pool = combined_scores(pool, tasks)
    scored_ours = {}
    for name, values in ours.items():
        scored = combined_scores({**pool, name: values}, tasks)[name]
        if scored["n_tasks"] < len(tasks):
            scored["rank"] = None
        scored_ours[name] = scored
    return scored_pool, scored_ours


def combined_scores(mae: dict[str, dict[str, float]], tasks: list[str], exclude=("Dummy",)) -> dict[str, dict]:
    """Eq. 1: per model, mean over ``tasks`` of the min-max normalized MAE; ranks the complete ones.

    ``mae[model][task]`` is the mean MAE. Returns ``{model: {"nmae": {task: v}, "score": S,
    "n_tasks": k, "rank": r or None}}``.
    """
    models = [m for m in mae if m not in exclude]
    out = {m: {"nmae": {}, "score": None, "n_tasks": 0, "rank": None} for m in models}
    for task in tasks:
        values = {m: mae[m][task] for m in models if mae[m].get(task) is not None}
        if len(values) < 2:
            continue
        lo, hi = min(values.values()), max(values.values())
        for m, v in values.items():
            out[m]["nmae"][task] = (v - lo) / (hi - lo) if hi > lo else 0.0
    for m in models:
        n = out[m]["nmae"]
        out[m]["n_tasks"] = len(n)
        out[m]["score"] = float(np.mean(list(n.values()))) if n else None
    complete = sorted((m for m in models if out[m]["n_tasks"] == len(tasks)), key=lambda m: out[m]["score"])
    for rank, m in enumerate(complete, 1):
        out[m]["rank"] = rank
    return out


def _matbench_check(record: dict) -> str:
    """'measured here', plus whether matbench's own scoring of our results.json.gz gives the same MAE."""
    name = record.get("matbench_results")
    path = Path(record.get("_path", "")).parent / name if name else None
    if path is None or not path.is_file():
        return "measured here"
    import logging

    from matbench.bench import MatbenchBenchmark

    logging.getLogger("matbench").setLevel(logging.ERROR)  # it warns that a loaded file is read-only
    scored = MatbenchBenchmark.from_file(str(path)).tasks_map[record["task"]["name"]].scores["mae"]["mean"]
    same = np.isclose(scored, record["summary"]["mae"]["mean"], rtol=1e-9, atol=0)
    return f"measured here; matbench scores {path.name}: {'same MAE' if same else f'MAE {scored:.4g} (MISMATCH)'}"


def matbench_section(records, tasks, reference, figures_rel, not_run, cold) -> list[str]:
    from tabulate import tabulate

    dummy = reference["mae"][reference["dummy"]]
    ours: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["status"] == "complete":
            ours.setdefault(model_name(r), {})[r["task"]["name"]] = r
    lines = []
    offline = [t.name for t in tasks if t.name not in not_run]
    our_mae = {m: {t: r["summary"]["mae"]["mean"] for t, r in per_task.items()} for m, per_task in ours.items()}
    pool, scored = six_task_scores(reference["mae"], our_mae, offline) if offline else ({}, {})

    # combined score table
    rows = []
    for m, s in sorted(scored.items(), key=lambda kv: (kv[1]["rank"] is None, kv[1]["score"] if kv[1]["score"] is not None else 9)):
        if s["score"] is None:
            continue
        stale = sum(is_stale(r) for t, r in ours[m].items() if t in offline)
        rows.append([f"{s['rank']} of {len(pool) + 1}" if s["rank"] else f"- ({s['n_tasks']}/{len(offline)} tasks)",
                     m + (f" (stale: {stale} of its tasks from uncommitted code)" if stale else ""),
                     *[fmt(s["nmae"].get(t), 3) for t in offline], fmt(s["score"], 3)])
    for m, s in sorted(pool.items(), key=lambda kv: kv[1]["score"]):
        rows.append([f"{s['rank']} of {len(pool)}", m, *[fmt(s["nmae"].get(t), 3) for t in offline],
                     fmt(s["score"], 3)])
    short = [t.replace("matbench_", "") for t in offline]
    lines += [] if not offline else [f"### Combined {len(offline)}-task score (paper's eq. 1)", "",
              f"S = mean over the {len(offline)} offline Matbench tasks of the min-max normalized MAE "
              f"(0 = best model on that task, 1 = worst). The pool is every published Matbench v0.1 model "
              f"that reports all {len(offline)} tasks ({len(pool)} models, the Dummy left out; "
              "`matbench_leaderboard_v0.1.tsv` in the data folder). Each of our rows is scored and ranked "
              f"in that pool plus itself alone (our other rows stay out of its normalization), so its rank "
              f"is out of {len(pool) + 1}; the published models below it are scored in the pool alone "
              "(rank out of {n}). Our rows lacking a task show S over their tasks, unranked. Lower is "
              "better.".replace("{n}", str(len(pool))), "",
              tabulate(rows, headers=["rank", "model", *short, "S"], tablefmt="github"), ""]

    # per-task tables
    for task in tasks:
        name = task.name
        rows = []
        for m, per_task in ours.items():
            if name in per_task:
                r = per_task[name]
                s = r["summary"]["mae"]
                rows.append([m + status_note(r), f"{fmt(s['mean'])} ± {fmt(s['std'], 2)}", fmt(s["mean"] / dummy[name], 3),
                             fmt(r["summary"]["r2"]["mean"], 3), depths_cell(r), featurize_seconds(r, cold),
                             f"{r['timing'].get('total', 0):.0f}", _matbench_check(r)])
        partial = [r for r in records if r["task"]["name"] == name and r["status"] != "complete"]
        for r in partial:
            rows.append([model_name(r), f"not finished: {len(r['folds'])}/5 folds"] + ["-"] * 5 + ["measured here"])
        if not any(name in p for p in ours.values()) and not partial:
            rows.append(["HackNIP (CHGNet, SevenNet)", not_run.get(name, "not run"), "-", "-", "-", "-", "-", "-"])
        for m, values in reference["mae"].items():
            if name in values:
                spread = reference["std"].get(m, {}).get(name)
                rows.append([m, fmt(values[name]) + (f" ± {fmt(spread, 2)}" if spread is not None else ""),
                             fmt(values[name] / dummy[name], 3), "-", "-", "-", "-", "published"])
        rows.sort(key=lambda row: float(row[1].split(" ")[0]) if row[1][0].isdigit() else float("inf"))
        unit = reference.get("units", {}).get(name, "")
        lines += [f"### {name} (MAE in {unit})", "",
                  tabulate(rows, headers=["model", "MAE ± std (5 folds)", "MAE / Dummy", "R²", "depth per fold",
                                          "featurize (s)", "wall (s)", "source"], tablefmt="github"), ""]
        lines += figure_links(name, figures_rel)
    return lines
