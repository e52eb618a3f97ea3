"""Render ``leaderboard/README.md`` (tabulate, GitHub markdown) and its figures from result files.

One table per task family. Matbench: our runs beside every published Matbench v0.1 entry
(``matbench_leaderboard_v0.1.tsv`` in the data folder; units in ``matbench_v0.1.json``), MAE
+- std over folds, MAE relative to the Dummy model, and the HackNIP paper's combined score (eq. 1)::

    nMAE_i,t = (MAE_i,t - min_k MAE_k,t) / (max_k MAE_k,t - min_k MAE_k,t)
    S_i      = mean over tasks t of nMAE_i,t        (lower is better; rank by S)

``k`` runs over the published models that report every offline task (Dummy excluded) plus one
of our rows at a time (:func:`six_task_scores`); ``t`` over the Matbench tasks with offline
data. Our row that lacks one of these tasks gets S over the tasks it has and no rank. Tasks without results get a "not run" row with the
reason (data not available offline, or the reason in the suite file).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np

from .data import DataFile, locate
from .harness.results import iter_results, read_featurization

REFERENCE = Path(__file__).with_name("reference") / "matbench_v0.1.json"
#: every published Matbench v0.1 entry per task (mean/std MAE over the 5 folds), in the data folder
LEADERBOARD_FILE = DataFile("matbench_leaderboard_v0.1.tsv", source="matbench's per-task leaderboard pages "
                            "(docs_src/Leaderboards Per-Task/*.md in the matbench repository)")
FAMILY_TITLES = {
    "matbench": "Matbench v0.1", "3dsc": "3DSC superconductors (MP subset)",
    "electrolytes": "Coulombic efficiency of Li-metal electrolytes", "moleculenet": "MoleculeNet",
    "aimd": "AIMD Li diffusivity", "synthetic": "Generated EMT alloys (quickstart task)",
}
NOT_RUN_DATA = "not run: data not available offline"


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


def model_name(record: dict) -> str:
    model = record["model"]
    backbone = model["backbone"]
    recipe = model.get("recipe")
    if backbone.get("kind") == "descriptors":  # a baseline without a NIP
        return f"{backbone['name'].capitalize()} ({backbone['model']}) + {model['head']}"
    if recipe and recipe.get("preset"):
        extras = "".join(f" + {d}" for d in recipe["descriptors"])
        tuned = "tuned " if recipe.get("tune_trials") else ""
        return f"HackNIP-{recipe['preset']} {backbone['name']} {backbone['model']}{extras} ({tuned}{recipe['head']})"
    return f"HackNIP {backbone['name']} {backbone['model']} + {model['head']}"


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def _short_features(label: str, n_depths: int) -> str:
    """"chgnet:0+...+chgnet:4+composition:0" -> "all+comp"; "chgnet:3" -> "3"; "composition:0" -> "comp"."""
    depths, extras = [], []
    for part in label.split("+"):
        source, _, depth = part.rpartition(":")
        if source == "composition" or part == "composition":
            extras.append("comp")
        else:
            depths.append(depth or part)
    core = "all" if len(depths) == n_depths and n_depths > 1 else "+".join(depths)
    return "+".join(p for p in [core, *extras] if p)


def _depths(record: dict) -> str:
    """Chosen depth per fold, e.g. "3,3,4,3,3" (multi-label: per label joined by '/'); for a
    recipe row the chosen features and transform, e.g. "all+comp log10"."""
    if record["model"].get("recipe"):
        n_depths = record["model"]["backbone"].get("n_depths", 1)
        cells = []
        for fold in record["folds"]:
            choice = fold.get("choices") or {}
            cell = _short_features(choice.get("features", "?"), n_depths)
            if choice.get("transform"):
                cell += f" {choice['transform']}"
            cells.append(cell)
        return ", ".join(cells)
    out = []
    for fold in record["folds"]:
        best = fold["best_depths"]
        if best and isinstance(best[0], list):
            out.append("/".join(str(d) for b in best for d in b))
        else:
            out.append("+".join(str(d) for d in (best or [])))
    return ",".join(out)


def _status(record: dict) -> str:
    return "" if record["status"] == "complete" else f" (partial: {len(record['folds'])} folds)"


def format_row(record: dict) -> str:
    """One run as a small table: what the quickstart and ``hacknip-bench run`` print."""
    from tabulate import tabulate

    metric = record["task"]["metrics"][0]
    s = record["summary"].get(metric, {})
    row = [record["task"]["name"], model_name(record), f"{_fmt(s.get('mean'))} ± {_fmt(s.get('std'), 2)}",
           _depths(record), f"{record['timing'].get('featurize', 0):.0f}", f"{record['timing'].get('total', 0):.0f}"]
    return tabulate([row], headers=["task", "model", f"{metric} (mean ± std over folds)", "depth per fold",
                                    "featurize (s)", "wall (s)"], tablefmt="github")


# -- Matbench ----------------------------------------------------------------------------------
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


def _matbench_section(records, tasks, reference, figures_rel, not_run) -> list[str]:
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
        rows.append([f"{s['rank']} of {len(pool) + 1}" if s["rank"] else f"- ({s['n_tasks']}/{len(offline)} tasks)",
                     m, *[_fmt(s["nmae"].get(t), 3) for t in offline], _fmt(s["score"], 3)])
    for m, s in sorted(pool.items(), key=lambda kv: kv[1]["score"]):
        rows.append([f"{s['rank']} of {len(pool)}", m, *[_fmt(s["nmae"].get(t), 3) for t in offline],
                     _fmt(s["score"], 3)])
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
                rows.append([m, f"{_fmt(s['mean'])} ± {_fmt(s['std'], 2)}", _fmt(s["mean"] / dummy[name], 3),
                             _fmt(r["summary"]["r2"]["mean"], 3), _depths(r), _featurize_seconds(r),
                             f"{r['timing'].get('total', 0):.0f}", _matbench_check(r)])
        partial = [r for r in records if r["task"]["name"] == name and r["status"] != "complete"]
        for r in partial:
            rows.append([model_name(r), f"not finished: {len(r['folds'])}/5 folds"] + ["-"] * 5 + ["measured here"])
        if not any(name in p for p in ours.values()) and not partial:
            rows.append(["HackNIP (CHGNet, SevenNet)", not_run.get(name, "not run"), "-", "-", "-", "-", "-", "-"])
        for m, values in reference["mae"].items():
            if name in values:
                spread = reference["std"].get(m, {}).get(name)
                rows.append([m, _fmt(values[name]) + (f" ± {_fmt(spread, 2)}" if spread is not None else ""),
                             _fmt(values[name] / dummy[name], 3), "-", "-", "-", "-", "published"])
        rows.sort(key=lambda row: float(row[1].split(" ")[0]) if row[1][0].isdigit() else float("inf"))
        unit = reference.get("units", {}).get(name, "")
        lines += [f"### {name} (MAE in {unit})", "",
                  tabulate(rows, headers=["model", "MAE ± std (5 folds)", "MAE / Dummy", "R²", "depth per fold",
                                          "featurize (s)", "wall (s)", "source"], tablefmt="github"), ""]
        lines += _figure_links(name, figures_rel)
    return lines


# -- other families ----------------------------------------------------------------------------
def _generic_section(records, tasks, figures_rel, not_run) -> list[str]:
    from tabulate import tabulate

    lines = []
    for task in tasks:
        mine = [r for r in records if r["task"]["name"] == task.name]
        metrics = list(task.metrics)
        rows = []
        for r in sorted(mine, key=lambda r: model_name(r)):
            cells = []
            for k in metrics:
                s = r["summary"].get(k)
                if k.startswith("n_"):  # a count per fold (unseen-host test rows): its total says more
                    cells.append(str(int(sum(f["metrics"][k] for f in r["folds"]))) if s else "-")
                else:
                    cells.append(f"{_fmt(s['mean'])} ± {_fmt(s['std'], 2)}" if s else "-")
            rows.append([model_name(r) + _status(r), *cells, r["task"]["n_rows"], _depths(r),
                         f"{r['timing'].get('load', 0):.0f}", _featurize_seconds(r),
                         f"{r['timing'].get('total', 0):.0f}"])
        if not mine:
            rows.append(["HackNIP (CHGNet, SevenNet)", not_run.get(task.name, "not run")] + ["-"] * (len(metrics) + 4))
        lines += [f"### {task.name} ({task.split_description})", "",
                  tabulate(rows, headers=["model", *[f"{m} (total)" if m.startswith("n_") else f"{m} (mean ± std)"
                                                    for m in metrics], "n", "depth per split",
                                          "load (s)", "featurize (s)", "wall (s)"], tablefmt="github"), ""]
        if task.size_note:
            lines += [f"n: {task.size_note}.", ""]
        lines += _geometry_notes(mine)
        lines += _figure_links(task.name, figures_rel)
    return lines


def _geometry_notes(records) -> list[str]:
    """How the molecules of these runs got their 3D geometry (molecule tasks only)."""
    notes = []
    for r in records:
        recipe = r["task"].get("relaxation")
        if recipe is None:
            continue
        how = (f"relaxed with the backbone ({recipe['optimizer']}, fmax {recipe['fmax']} eV/A, <= {recipe['steps']} steps)"
               if recipe["optimizer"] in ("FIRE", "BFGS") else
               f"relaxed in RDKit with {recipe['optimizer']} (<= {recipe['steps']} iterations), not with the NIP"
               if recipe["steps"] else "not relaxed")
        text = f"'{recipe['recipe']}': ETKDG v3 conformer (seed {recipe['seed']}), {how}"
        facts = [n for n in r["task"].get("notes", []) if n.startswith("relaxed with")]
        notes.append(f"{text}" + (f"; {facts[0]}" if facts else ""))
    notes = list(dict.fromkeys(notes))
    return [f"Molecule geometries: {'. '.join(notes)}.", ""] if notes else []


_COLD: dict = {}  # task/backbone -> cold featurization entry, filled by render()


def _featurize_seconds(record: dict) -> str:
    """Cold-cache featurization time of the run's task and backbone (the run's own if not recorded)."""
    entry = _COLD.get(f"{record['task']['name']}/{record['model']['backbone']['name']}")
    if entry:
        return f"{entry['seconds']:.0f}"
    return f"{record['timing'].get('featurize', 0):.0f}"


def _figure_links(task: str, figures_rel: dict) -> list[str]:
    links = [f"![{kind} {task}]({path})" for kind, path in figures_rel.get(task, [])]
    return [" ".join(links), ""] if links else []


# -- rendering ---------------------------------------------------------------------------------
def render(results_dir: str | os.PathLike = "leaderboard/results", out: str | os.PathLike = "leaderboard/README.md", *,
           data_dir=None, suite: str | os.PathLike | None = None, figures: bool = True,
           reference: str | os.PathLike = REFERENCE) -> Path:
    """Write the leaderboard markdown (and figures next to it); returns the file written."""
    from . import figures as fig
    from .harness.suite import read_suite
    from .tasks import all_tasks

    out = Path(out)
    records = [{**r, "_path": str(p)} for p, r in iter_results(results_dir)]
    _COLD.clear()
    _COLD.update(read_featurization(results_dir))
    suite_spec = read_suite(suite) if suite and Path(suite).is_file() else None
    reasons = suite_spec.not_run if suite_spec else {}
    tasks = all_tasks()
    not_run = {}
    for task in tasks:
        if not task.is_present(data_dir):
            not_run[task.name] = NOT_RUN_DATA
        elif task.name in reasons:
            not_run[task.name] = f"not run: {reasons[task.name]}"

    figures_rel: dict[str, list[tuple[str, str]]] = {}
    if figures:
        fig_dir = out.parent / "figures"
        for task in tasks:
            done = [r for r in records if r["task"]["name"] == task.name and r["status"] == "complete" and r["folds"]]
            if not done:
                continue
            done.sort(key=model_name)
            made = []
            kind, path = ("parity", fig_dir / f"parity_{task.name}.png") if task.task_type == "regression" \
                else ("ROC", fig_dir / f"roc_{task.name}.png")
            if all("y_true" in f for r in done for f in r["folds"]):
                made.append((kind, (fig.parity if kind == "parity" else fig.roc)(done, path)))
            elif path.is_file():  # true targets stay out of git: keep the figure drawn where they were
                made.append((kind, path))
            made.append(("metric vs depth", fig.depth_curves(done, fig_dir / f"depth_{task.name}.png")))
            figures_rel[task.name] = [(k, os.path.relpath(p, out.parent)) for k, p in made]

    lines = ["# Leaderboard", "",
             f"Rendered by `hacknip-bench leaderboard` on {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC from "
             f"{len(records)} result files in `{os.path.relpath(results_dir, out.parent)}/`. Every HackNIP row is "
             "measured here: frozen NIP embeddings (mean-pooled per depth), the depth chosen per outer fold by "
             "inner cross-validation on that fold's training rows only (MoleculeNet: on the split's validation "
             "part), then the head refitted on them (MoleculeNet: train + valid) and scored on the official test "
             "fold. What each ± varies over is in the task's heading. Published rows are every Matbench v0.1 entry, "
             "from matbench's per-task leaderboard pages (`matbench_leaderboard_v0.1.tsv` in the data folder). "
             "'featurize (s)' is the cold-cache featurization of the "
             "task with that backbone (shared by all heads: embeddings are cached); 'wall (s)' is the run itself "
             "(load, cached embeddings, depth selection, fits and predictions of all folds).",
             ""]
    lines += _provenance(records)
    lines += _timing_section(records)
    reference_data = load_reference(reference, data_dir=data_dir)
    lines += _standing(records, tasks, reference_data, not_run)
    lines += _recipe_section(records)
    lines += _missing_runs(records, suite_spec, suite, not_run)
    from .leaderboard_finetune import finetune_section  # fine-tuned runs, what was not run, efficiency studies

    lines += finetune_section(records, results_dir, out.parent)
    analysis = out.parent / "analysis" / "README.md"
    if analysis.is_file():  # written by `hacknip-bench analyze depth`
        lines += ["## Depth analysis", "",
                  f"Which depth is most informative, per task and backbone (nMAE heatmaps, UMAP, JSD, collapse): "
                  f"[{os.path.relpath(analysis, out.parent)}]({os.path.relpath(analysis, out.parent)}).", ""]
    families = list(dict.fromkeys(t.family for t in tasks))
    for family in families:
        ftasks = [t for t in tasks if t.family == family]
        frecords = [r for r in records if r["task"]["family"] == family]
        lines += [f"## {FAMILY_TITLES.get(family, family)}", ""]
        if family == "matbench":
            lines += _matbench_section(frecords, ftasks, reference_data, figures_rel, not_run)
        else:
            lines += _generic_section(frecords, ftasks, figures_rel, not_run)
    from hacknip_ase.cache import atomic_write

    return atomic_write(out, ("\n".join(lines).rstrip() + "\n").encode())


def _provenance(records) -> list[str]:
    if not records:
        return ["No result files yet.", ""]
    commits = sorted({(r.get("git") or {}).get("commit") or "unknown" for r in records})
    hardware = sorted({f"{r['hardware'].get('cpu_model', r['hardware'].get('machine'))}, "
                       f"{r['hardware'].get('cpu_count')} CPUs" for r in records})
    total = sum(r["timing"].get("total", 0.0) for r in records)
    return [f"Code: git {', '.join(c[:10] for c in commits)} (results record whether the tree was dirty). "
            f"Hardware: {'; '.join(hardware)}. Sum of run wall times: {total / 60:.0f} min.", ""]


def _standing(records, tasks, reference, not_run) -> list[str]:
    """Plain statement, per Matbench task, of our best run against the published rows."""
    lines = ["## Where we stand", ""]
    published = {m: v for m, v in reference["mae"].items() if m != reference["dummy"]}
    for task in tasks:
        if task.family != "matbench":
            continue
        done = [r for r in records if r["task"]["name"] == task.name and r["status"] == "complete"]
        if not done:
            lines.append(f"- {task.name}: {not_run.get(task.name, 'not run yet')}.")
            continue
        best = min(done, key=lambda r: r["summary"]["mae"]["mean"])
        mae = best["summary"]["mae"]["mean"]
        pub = sorted((v[task.name], m) for m, v in published.items() if task.name in v)
        beaten = [m for v, m in pub if mae < v]
        rank = 1 + sum(v < mae for v, _ in pub)
        if not beaten:
            verdict = "behind every published entry"
        elif len(beaten) <= 4:
            verdict = f"better than {', '.join(beaten)}"
        else:
            cgcnn = [m for m in beaten if m.startswith("CGCNN")]
            verdict = f"better than {len(beaten)} of {len(pub)} published entries" + (
                f", {cgcnn[0]} among them" if cgcnn else "")
        lines.append(f"- {task.name}: best here {model_name(best)}, MAE {_fmt(mae)} "
                     f"({mae / pub[0][0]:.2f} x the best published, {pub[0][1]} {_fmt(pub[0][0])}); "
                     f"would rank {rank} of {len(pub) + 1} among the published entries; {verdict}.")
    return lines + [""]


def _recipe_section(records) -> list[str]:
    """Per recipe row (hacknip-auto), what the inner CV of each training fold chose, and its cost."""
    from tabulate import tabulate

    rows = []
    for r in sorted(records, key=lambda r: (r["task"]["name"], model_name(r))):
        recipe = r["model"].get("recipe")
        if not recipe:
            continue
        n_depths = r["model"]["backbone"].get("n_depths", 1)
        for fold in r["folds"]:
            choice = fold.get("choices") or {}
            tuning = choice.get("tuning") or {}
            gain = (f"{tuning['best_score'] - tuning['default_score']:+.3g} ({tuning['n_trials']} trials"
                    f"{', budget' if tuning.get('stopped_by_budget') else ''})" if tuning else "-")
            rows.append([r["task"]["name"], model_name(r), fold["name"],
                         _short_features(choice.get("features", "?"), n_depths), choice.get("transform") or "none",
                         gain, _fmt(fold["metrics"].get("mae", fold["metrics"].get("roc_auc"))),
                         f"{fold['seconds'].get('cpu', float('nan')):.0f}"])
    if not rows:
        return []
    return ["## What the pipelines chose", "",
            "Per outer fold, the choices the inner CV of that training fold made: features ('3': depth 3 alone, "
            "'all': every depth concatenated, 'comp': composition descriptors), the target transform, and the "
            "tuning's gain in inner score over the XGBoost defaults (negative MAE: higher is better; 0 when the "
            "defaults stayed best). 'CPU (s)' is the fold's process time (selection, search, fits).", "",
            tabulate(rows, headers=["task", "row", "fold", "features", "transform", "tuning gain (inner)",
                                    "test metric", "CPU (s)"], tablefmt="github"), ""]


def _missing_runs(records, spec_file, suite, not_run) -> list[str]:
    """Runs the suite file lists that have no complete result file, with the reason when known."""
    if spec_file is None:
        return []
    have = {(r["task"]["name"], r["model"]["backbone"]["name"], r["model"]["head"]) for r in records
            if r["status"] == "complete"}
    default = ("not run yet: did not fit in the time this offline run had on a shared 2-core CPU "
               "(featurization rates are in the wall-time table)")
    missing: dict[tuple[str, str], list[str]] = {}
    for spec in spec_file.runs:
        label = spec.make_recipe().label()
        if (spec.task, spec.backbone, label) not in have:
            head_reason = spec_file.not_run.get(f"{spec.task}:{label}")  # "task:head" keys
            reason = f"not run: {head_reason}" if head_reason else not_run.get(spec.task, default)
            missing.setdefault((spec.task, reason), []).append(f"{spec.backbone} + {label}")
    if not missing:
        return []
    lines = [f"## Suite runs without a result yet ({os.path.basename(str(suite))})", ""]
    for (task, reason), runs in missing.items():
        lines.append(f"- {task}: {', '.join(runs)} — {reason}")
    return lines + [""]


def _timing_section(records) -> list[str]:
    """Measured wall time per task and backbone: cold featurization plus every head's run."""
    from tabulate import tabulate

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"]["name"], r["model"]["backbone"]["name"]), []).append(r)
    keys = sorted(set(groups) | {tuple(k.split("/")) for k in _COLD})
    if not keys:
        return []
    rows, totals = [], {}
    for task, backbone in keys:
        cold = _COLD.get(f"{task}/{backbone}")
        runs = groups.get((task, backbone), [])
        feat = cold["seconds"] if cold else 0.0
        run_s = {r["model"]["head"]: r["timing"].get("total", 0.0) for r in runs if r["status"] == "complete"}
        total = feat + sum(run_s.values())
        totals[backbone] = totals.get(backbone, 0.0) + total
        rows.append([task, backbone, cold["n_structures"] if cold else "-", f"{feat:.0f}" if cold else "-",
                     ", ".join(f"{h} {s:.0f}" for h, s in sorted(run_s.items())) or "-", f"{total:.0f}"])
    summary = "; ".join(f"{b}: {t / 60:.0f} min" for b, t in sorted(totals.items()))
    return ["## Measured wall time per task", "",
            "Cold-cache featurization (once per task and backbone) and each head's run (depth selection, fits, "
            f"predictions over all folds), in seconds, on the hardware above while shared with other jobs. "
            "'-' under featurize: no separate cold featurization was recorded (the embeddings were computed inside "
            "the task's first run, whose wall time includes them, or were already cached: log_kvrh has log_gvrh's "
            "structures). "
            f"Totals: {summary}.", "",
            tabulate(rows, headers=["task", "backbone", "structures", "featurize (s)", "runs (s)", "total (s)"],
                     tablefmt="github"), ""]
