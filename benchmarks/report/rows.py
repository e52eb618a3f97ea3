"""One result record as table cells: model names, formatted numbers, chosen depths, one-row tables.

Shared by the leaderboard (:mod:`.leaderboard`, :mod:`.matbench_board`) and by what
``hacknip-bench run``, ``quickstart`` and ``finetune`` print (:func:`format_row`).
"""

from __future__ import annotations

import numpy as np

from hacknip_ase.sources import NAMES as DESCRIPTOR_SOURCES


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


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def short_features(label: str, n_depths: int, backbone: str | None = None) -> str:
    """"chgnet:0+...+chgnet:4+composition:0" -> "all+comp"; "chgnet:3" -> "3"; "composition:0" -> "comp";
    "physics-phonons:0" -> "physics-phonons"; another NIP's depth keeps its name: "chgnet:2+sevennet:3" -> "2+sevennet:3"."""
    depths, extras, primary = [], [], backbone  # the row's own NIP (default: the first one named)
    for part in label.split("+"):
        source, _, depth = part.rpartition(":")
        if source == "composition" or part == "composition":
            extras.append("comp")
        elif (source or part) in DESCRIPTOR_SOURCES:
            extras.append(source or part)
        elif primary is None or source in ("", primary):
            primary = primary or source
            depths.append(depth or part)
        else:  # multi-NIP: a depth of the second backbone
            extras.append(part)
    core = "all" if len(depths) == n_depths and n_depths > 1 else "+".join(depths)
    return "+".join(p for p in [core, *extras] if p)


def depths_cell(record: dict) -> str:
    """Chosen depth per fold, e.g. "3,3,4,3,3" (multi-label: per label joined by '/'); for a
    recipe row the chosen features and transform, e.g. "all+comp log10"."""
    if record["model"].get("recipe"):
        n_depths = record["model"]["backbone"].get("n_depths", 1)
        cells = []
        for fold in record["folds"]:
            choice = fold.get("choices") or {}
            cell = short_features(choice.get("features", "?"), n_depths, record["model"]["backbone"].get("name"))
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


def is_stale(record: dict) -> bool:
    """The run's code was not committed (git.dirty): its numbers cannot be traced to a commit."""
    return bool((record.get("git") or {}).get("dirty"))


def status_note(record: dict) -> str:
    partial = "" if record["status"] == "complete" else f" (partial: {len(record['folds'])} folds)"
    return partial + (" (stale: uncommitted code)" if is_stale(record) else "")


def format_row(record: dict) -> str:
    """One run as a small table: what the quickstart and ``hacknip-bench run`` print."""
    from tabulate import tabulate

    metric = record["task"]["metrics"][0]
    s = record["summary"].get(metric, {})
    row = [record["task"]["name"], model_name(record), f"{fmt(s.get('mean'))} ± {fmt(s.get('std'), 2)}",
           depths_cell(record), f"{record['timing'].get('featurize', 0):.0f}", f"{record['timing'].get('total', 0):.0f}"]
    return tabulate([row], headers=["task", "model", f"{metric} (mean ± std over folds)", "depth per fold",
                                    "featurize (s)", "wall (s)"], tablefmt="github")




def featurize_seconds(record: dict, cold: dict) -> str:
    """Cold-cache featurization time of the run's task and backbone (``cold``: what
    :func:`~benchmarks.harness.results.read_featurization` read), the run's own when none was recorded."""
    entry = cold.get(f"{record['task']['name']}/{record['model']['backbone']['name']}")
    if entry:
        return f"{entry['seconds']:.0f}"
    return f"{record['timing'].get('featurize', 0):.0f}"


def figure_links(task: str, figures_rel: dict) -> list[str]:
    links = [f"![{kind} {task}]({path})" for kind, path in figures_rel.get(task, [])]
    return [" ".join(links), ""] if links else []
