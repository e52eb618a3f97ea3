"""Leaderboard section for the fine-tuning baseline: fine-tuned runs with their deviations from
the recipe and wall times, fine-tunes not run and why (``benchmarks/suites/finetune.toml``), and
the data-efficiency studies (``<results>/<task>/efficiency/``) with their figures and crossover.

Fine-tuned runs (model kind "finetune") also appear in the per-task tables like any run; this
section adds what those tables cannot show.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

PLAN = Path(__file__).parents[1] / "suites" / "finetune.toml"


def read_plan(path: str | os.PathLike = PLAN) -> dict:
    """``runs`` (planned (task, backbone) fine-tunes), ``not_run`` ({task or task/backbone: reason}),
    ``cost_note`` and ``efficiency_not_run`` ({task: what of its study was not run})."""
    spec = tomllib.loads(Path(path).read_text()) if Path(path).is_file() else {}
    return {"runs": [(t, b) for block in spec.get("finetune", []) for t in block["tasks"] for b in block["backbones"]],
            "not_run": {str(k): str(v) for k, v in spec.get("not_run", {}).items()},
            "cost_note": str(spec.get("cost_note", "")),
            "efficiency_not_run": {str(k): str(v) for k, v in spec.get("efficiency_not_run", {}).items()}}


def _deviations(record: dict) -> str:
    devs = record["model"].get("deviations") or {}
    return "; ".join(f"{k} {v['used']} (recipe {v['recipe']})" for k, v in devs.items()) or "none"


def finetune_section(records, results_dir, out_dir, *, plan: str | os.PathLike = PLAN) -> list[str]:
    """Markdown lines of the fine-tuning section (empty when there is nothing to say)."""
    from tabulate import tabulate

    from ..harness.efficiency import summarize_study
    from ..harness.subsets import fraction_label

    spec = read_plan(plan)
    runs, reasons, cost_note, study_notes = spec["runs"], spec["not_run"], spec["cost_note"], spec["efficiency_not_run"]
    tuned = [r for r in records if r["model"].get("kind") == "finetune"]
    studies = sorted(p.parent.name for p in Path(results_dir).glob("*/efficiency") if p.is_dir())
    if not (runs or tuned or studies or study_notes):
        return []
    lines = ["## Fine-tuning baseline", "",
             "The NIP fine-tuned end to end (message-passing layers and an MLP head dim→128→128→1; AdamW, "
             "lr 1e-5 backbone / 1e-3 head, weight decay 1e-4, up to 200 epochs, early stopping on a validation "
             "split of the training rows), on the same folds and metrics as the embedding rows; "
             "`hacknip-bench finetune`. Any change to that recipe is listed per run.", ""]
    rows = []
    for r in sorted(tuned, key=lambda r: (r["task"]["name"], r["model"]["backbone"]["name"])):
        metric = r["task"]["metrics"][0]
        s = r["summary"].get(metric, {})
        folds = r["folds"]
        epochs = ",".join(f"{f['training']['n_epochs']}({f['training']['best_epoch']})" for f in folds)
        per_fold = sum(f["seconds"]["total"] for f in folds) / len(folds) if folds else 0.0
        cpu = [f["seconds"].get("cpu_total") for f in folds]
        cpu_h = f"{sum(cpu) / 3600:.2f}" if folds and None not in cpu else "-"
        per_step = [f["seconds"].get("cpu_ms_per_structure_epoch") for f in folds]
        per_step = f"{sum(per_step) / len(per_step):.1f}" if folds and None not in per_step else "-"
        status = "complete" if r["status"] == "complete" else f"partial: {len(folds)} folds"
        rows.append([r["task"]["name"], r["model"]["backbone"]["name"], status,
                     f"{s.get('mean', float('nan')):.4g} ± {s.get('std', float('nan')):.2g}" if s else "-",
                     epochs, f"{per_fold:.0f}", cpu_h, per_step, _deviations(r)])
    if rows:
        lines += [tabulate(rows, headers=["task", "backbone", "status", "MAE ± std over folds", "epochs (best) per fold",
                                          "wall per fold (s)", "CPU-h, all folds", "CPU-ms per structure-epoch",
                                          "deviations from the recipe"], tablefmt="github"), ""]
    have = {(r["task"]["name"], r["model"]["backbone"]["name"]) for r in tuned if r["status"] == "complete"}
    missing = [(t, b) for t, b in runs if (t, b) not in have]
    if missing:
        lines += ["Fine-tunes not run (or not finished):", ""]
        for t, b in missing:
            reason = reasons.get(f"{t}/{b}", reasons.get(t, "not run yet"))
            lines.append(f"- {t} with {b}: {reason}")
        lines.append("")
    if cost_note:
        lines += [cost_note, ""]

    for task in studies:
        folder = Path(results_dir) / task / "efficiency"
        backbones = sorted({_backbone_of(p) for p in folder.glob("*.json")} - {None})
        for backbone in backbones:
            report = summarize_study(task, backbone, results_dir=results_dir)
            if not report["points"]:
                continue
            lines += [f"### Data efficiency: {task} ({backbone})", ""]
            rows = []
            for approach, by_f in report["points"].items():
                for fraction, p in by_f.items():
                    rows.append([approach, fraction_label(fraction), f"{p['n_train']:.0f}",
                                 f"{p['mean']:.4g} ± {p['std']:.2g}", p["n_subsets"], ",".join(p["folds"]),
                                 "/".join(map(str, p["n_test"])), f"{p['seconds_per_fold']:.0f}"])
            lines += [tabulate(rows, headers=["approach", "fraction", "n_train", "MAE ± std over subsets", "subsets",
                                              "folds", "test rows", "wall per run and fold (s)"], tablefmt="github"),
                      "", f"Crossover: {report['crossover']['text']}.", ""]
            devs = {_deviations(r) for by_f in report["found"].values() for rs in by_f.values() for r in rs
                    if r["model"].get("kind") == "finetune"}
            if devs:
                lines += [f"Fine-tuning deviations from the recipe in this study: {' | '.join(sorted(devs))}.", ""]
            if task in study_notes:
                lines += [study_notes[task], ""]
            figures = [(k, Path(out_dir) / "figures" / f"{k}_{task}_{backbone}.png") for k in ("efficiency", "update_ratios")]
            links = [f"![{k} {task}]({os.path.relpath(p, out_dir)})" for k, p in figures if p.is_file()]
            if links:
                lines += [" ".join(links), ""]
    others = [t for t in study_notes if t not in studies]
    if others:
        lines += ["Data-efficiency studies not run:", ""] + [f"- {t}: {study_notes[t]}" for t in others] + [""]
    return lines


def _backbone_of(path: Path) -> str | None:
    from ..harness.results import read_result

    try:
        return read_result(path)["model"]["backbone"]["name"]
    except (ValueError, OSError, KeyError):
        return None
