"""The physics validation's table and parity plots (``leaderboard/physics/README.md``) from its result
files (:mod:`benchmarks.physics_validation` writes them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .rows import fmt

OUT_DIR = Path(__file__).resolve().parents[2] / "leaderboard" / "physics"


def truth_path(path: Path) -> Path:
    """Sidecar with the rows' DFT targets: dataset values, kept out of git (see .gitignore)."""
    return Path(path).with_name(Path(path).stem + ".truth.json.gz")


def _targets(path: Path, result: dict):
    import gzip

    sidecar = truth_path(path)
    if not sidecar.is_file():
        return None
    truth = json.loads(gzip.decompress(sidecar.read_bytes()))
    return np.asarray(truth["targets"], float) if truth["ids"] == result["ids"] else None


def commit_label(git: dict | None) -> str:
    if not git:
        return "?"
    return (git.get("commit") or "?")[:7] + ("+dirty" if git.get("dirty") else "")


def render(out_dir: Path = OUT_DIR) -> Path:
    """``out_dir/README.md``: one row per task, backbone and compared quantity, and a parity plot per file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hacknip_ase.files import atomic_output

    files = sorted(Path(out_dir).glob("*__*.json"))
    lines = ["# NIP-simulated physics vs DFT targets", "",
             "The frozen NIP used as a simulator (hacknip_ase.physics), compared with the Matbench target as is: no",
             "fit, no training. MAE in the target's units (log10 GPa, cm^-1, eV per 5-atom cell); Spearman rho over the",
             "rows with a finite NIP value. Cost: CPU-s per structure on one thread (process time, model load excluded);",
             "log_gvrh uses the same structures and settings as log_kvrh, so it is served from the physics cache.",
             "'MAE after mean shift' removes the mean error measured on the same rows (reference-state offsets, e.g.",
             "Matbench's perovskite e_form uses its own O reference): orientation only, not a prediction score.",
             "Regenerate with `python -m benchmarks.physics_validation render`.", "",
             "| task | backbone | NIP quantity | rows (subset of, seed) | valid | MAE | bias | MAE after mean shift | Spearman rho | "
             "CPU-s / structure | projected full set, CPU-h | NaN reasons | commit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in files:
        result = json.loads(path.read_text())
        cost = result["cost"]
        per = cost["cpu_seconds_per_computed_structure"]
        full = cost["projected_full_cpu_hours"]
        per_text = fmt(per, 2) if per is not None else f"cached ({cost['cached']} rows)"
        if cost.get("shards"):
            per_text += f" ({len(cost['shards']['files'])} shard processes)"
        subset = result["subset"]
        targets = _targets(path, result)  # None without the sidecar: table only, plots kept as they are
        figure, axes = plt.subplots(1, len(result["comparisons"]), figsize=(4.2 * len(result["comparisons"]), 4),
                                    squeeze=False)
        for ax, (label, comp) in zip(axes[0], result["comparisons"].items(), strict=True):
            reasons = result["reason_counts"].get(comp["column"], {})
            reason_text = "; ".join(f"{r}: {n}" for r, n in sorted(reasons.items())) or "-"
            if comp["n_nonpositive"]:
                reason_text += f"; <= 0 (no log): {comp['n_nonpositive']}"
            commit = commit_label(result["git"])
            lines.append(
                f"| {result['task']} | {result['backbone']} | {label} | {subset['size']} ({subset['of']}, {subset['seed']}) "
                f"| {comp['n_valid']} | {fmt(comp['mae'])} | {fmt(comp['bias'])} | {fmt(comp.get('mae_after_mean_shift'))} "
                f"| {fmt(comp['spearman'], 3)} "
                f"| {per_text} | {fmt(full, 2)} | {reason_text} | {commit} |")
            if targets is None:
                continue
            predicted = np.array([np.nan if p is None else p for p in comp["predicted"]], float)
            ok = np.isfinite(predicted)
            ax.scatter(targets[ok], predicted[ok], s=6, alpha=0.5)
            if ok.any():
                low = min(targets[ok].min(), predicted[ok].min())
                high = max(targets[ok].max(), predicted[ok].max())
                ax.plot([low, high], [low, high], "k--", lw=0.8)
            ax.set_xlabel(f"DFT target: {result['target']}")
            ax.set_ylabel(f"NIP: {label}" + (" (log10)" if comp["transform"] == "log10" else ""))
            ax.set_title(f"{result['backbone']}: MAE {fmt(comp['mae'])}, rho {fmt(comp['spearman'], 3)}, "
                         f"n={comp['n_valid']}", fontsize=9)
        figure.suptitle(result["task"], fontsize=10)
        figure.tight_layout()
        if targets is not None:
            with atomic_output(Path(out_dir) / f"{path.stem}.png") as tmp:
                figure.savefig(tmp, dpi=110, format="png")
        plt.close(figure)
    lines += ["", "Parity plots: `<task>__<backbone>.png` in this folder.", ""]
    cost_file = Path(out_dir) / "cost.json"
    if cost_file.is_file():  # benchmarks/perf/test_physics_cost.py with HACKNIP_PHYSICS_TABLE
        cost = json.loads(cost_file.read_text())
        quantities = sorted({q for row in cost.values() for q in row["cpu_s_per_structure"]})
        lines += ["## Cost per quantity", "",
                  "`benchmarks/perf/test_physics_cost.py`: each quantity alone, CPU-s per structure, one thread; the",
                  "projection scales by the full log_kvrh set's mean atom count (phonons grow faster: a lower bound).", "",
                  "| backbone | structures (mean atoms) | " + " | ".join(quantities)
                  + " | references, CPU-s per element | projected full log_kvrh, CPU-h (EOS + elastic) |",
                  "|---|---|" + "---|" * len(quantities) + "---|---|"]
        for name, row in cost.items():
            per = row["cpu_s_per_structure"]
            projected = row["projected_log_kvrh_cpu_hours"]
            lines.append(f"| {name} | {row['n_structures']} {row['source']} ({row['mean_atoms']:.1f}) | "
                         + " | ".join(fmt(per.get(q), 3) for q in quantities)
                         + f" | {fmt(row['reference_cpu_s_per_element'], 2)} | "
                         f"{fmt(projected['eos'] + projected['elastic'], 2)} |")
        lines.append("")
    symmetry_file = Path(out_dir) / "phonon_symmetry.json"
    if symmetry_file.is_file():  # test_physics_cost.py with HACKNIP_PHYSICS_SYMMETRY_TABLE
        lines += ["## Phonons: symmetry-reduced displacements", "",
                  "`benchmarks/perf/test_physics_cost.py::test_phonon_symmetry_saving`: Gamma phonons of the same",
                  "matbench_phonons structures with every first-cell atom displaced +- x, y, z (`phonon_symprec=0`) and",
                  "with only the displacements the crystal's rotations do not relate (default), interleaved in one run.", "",
                  ("| backbone | structures (mean atoms) | CPU-s / structure, all | CPU-s / structure, reduced | CPU ratio "
                   "| displaced copies, all / reduced | Gamma max shift, cm^-1 (max, mean) | commit |"),
                  "|---|---|---|---|---|---|---|---|"]
        for name, row in json.loads(symmetry_file.read_text()).items():
            per, copies, shift = row["cpu_s_per_structure"], row["displaced_copies"], row["gamma_max_abs_shift_cm1"]
            lines.append(f"| {name} | {row['n_structures']} {row['source']} ({row['mean_atoms']:.1f}) | "
                         f"{fmt(per['all displacements'], 3)} | {fmt(per['symmetry-reduced'], 3)} | "
                         f"{fmt(row['cpu_ratio'], 3)} | {copies['all']} / {copies['symmetry-reduced']} | "
                         f"{fmt(shift['max'], 3)}, {fmt(shift['mean'], 3)} | {commit_label(row.get('git'))} |")
        lines.append("")
    readme = Path(out_dir) / "README.md"
    with atomic_output(readme) as tmp:
        tmp.write_text("\n".join(lines))
    return readme
