"""Render ``leaderboard/README.md`` (tabulate, GitHub markdown) and its figures from result files.

One section per task family: Matbench through :mod:`.matbench_board` (our rows beside every
published Matbench v0.1 entry, and the paper's combined score), the other families one table
per task here. Tasks without results get a "not run" row with the reason (data not available
offline, or the reason in the suite file); the fine-tuning section comes from :mod:`.finetune`.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from ..harness.results import iter_results, read_featurization
from .matbench_board import REFERENCE, load_reference, matbench_section
from .rows import depths_cell, featurize_seconds, figure_links, fmt, is_stale, model_name, short_features, status_note

FAMILY_TITLES = {
    "matbench": "Matbench v0.1", "3dsc": "3DSC superconductors (MP subset)",
    "electrolytes": "Coulombic efficiency of Li-metal electrolytes", "moleculenet": "MoleculeNet",
    "aimd": "AIMD Li diffusivity", "synthetic": "Generated EMT alloys (quickstart task)",
}
NOT_RUN_DATA = "not run: data not available offline"


# -- other families ----------------------------------------------------------------------------
def _generic_section(records, tasks, figures_rel, not_run, cold) -> list[str]:
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
                    cells.append(f"{fmt(s['mean'])} ± {fmt(s['std'], 2)}" if s else "-")
            rows.append([model_name(r) + status_note(r), *cells, r["task"]["n_rows"], depths_cell(r),
                         f"{r['timing'].get('load', 0):.0f}", featurize_seconds(r, cold),
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
        lines += figure_links(task.name, figures_rel)
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


# -- rendering ---------------------------------------------------------------------------------
def render(results_dir: str | os.PathLike = "leaderboard/results", out: str | os.PathLike = "leaderboard/README.md", *,
           data_dir=None, suite: str | os.PathLike | None = None, figures: bool = True,
           reference: str | os.PathLike = REFERENCE) -> Path:
    """Write the leaderboard markdown (and figures next to it); returns the file written."""
    from ..harness.suite import read_suite
    from ..tasks import all_tasks
    from . import figures as fig
    from .finetune import finetune_section  # fine-tuned runs, what was not run, efficiency studies

    out = Path(out)
    records = [{**r, "_path": str(p)} for p, r in iter_results(results_dir)]
    cold = read_featurization(results_dir)  # task/backbone -> cold featurization entry
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
    lines += _timing_section(records, cold)
    reference_data = load_reference(reference, data_dir=data_dir)
    lines += _standing(records, tasks, reference_data, not_run)
    lines += _recipe_section(records)
    lines += _missing_runs(records, suite_spec, suite, not_run)
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
            lines += matbench_section(frecords, ftasks, reference_data, figures_rel, not_run, cold)
        else:
            lines += _generic_section(frecords, ftasks, figures_rel, not_run, cold)
    from hacknip_ase.files import atomic_write

    return atomic_write(out, ("\n".join(lines).rstrip() + "\n").encode())


def _provenance(records) -> list[str]:
    if not records:
        return ["No result files yet.", ""]
    commits = sorted({(r.get("git") or {}).get("commit") or "unknown" for r in records})
    hardware = sorted({f"{r['hardware'].get('cpu_model', r['hardware'].get('machine'))}, "
                       f"{r['hardware'].get('cpu_count')} CPUs" for r in records})
    total = sum(r["timing"].get("total", 0.0) for r in records)
    stale = sum(is_stale(r) for r in records)
    return [f"Code: git {', '.join(c[:10] for c in commits)}; {stale} of {len(records)} result files ran from "
            "uncommitted code (git.dirty) and are marked 'stale' wherever they appear: re-run them to refresh. "
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
        lines.append(f"- {task.name}: best here {model_name(best)}{status_note(best)}, MAE {fmt(mae)} "
                     f"({mae / pub[0][0]:.2f} x the best published, {pub[0][1]} {fmt(pub[0][0])}); "
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
                         short_features(choice.get("features", "?"), n_depths, r["model"]["backbone"].get("name")),
                         choice.get("transform") or "none",
                         gain, fmt(fold["metrics"].get("mae", fold["metrics"].get("roc_auc"))),
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


def _timing_section(records, cold_runs) -> list[str]:
    """Measured wall time per task and backbone: cold featurization plus every head's run."""
    from tabulate import tabulate

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"]["name"], r["model"]["backbone"]["name"]), []).append(r)
    keys = sorted(set(groups) | {tuple(k.split("/")) for k in cold_runs})
    if not keys:
        return []
    rows, totals = [], {}
    for task, backbone in keys:
        cold = cold_runs.get(f"{task}/{backbone}")
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
