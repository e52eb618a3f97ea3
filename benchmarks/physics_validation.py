"""Validation of the NIP-simulated physics descriptors against Matbench's DFT targets.

Per task the simulated quantity is compared with the target as is (no fit, no training):

=======================  ======================================  ===============================
task                     NIP quantity                            target
=======================  ======================================  ===============================
matbench_log_kvrh        log10 bulk_modulus_vrh (also EOS, K_V)  log10(K_VRH / GPa), DFT (MP)
matbench_log_gvrh        log10 shear_modulus_vrh (also G_V)      log10(G_VRH / GPa)
matbench_phonons         gamma_max_frequency (cm^-1)             last phonon DOS peak (cm^-1), DFPT
matbench_perovskites     formation_energy_per_atom x 5 atoms     e_form (eV per 5-atom cell), RPBE
=======================  ======================================  ===============================

Metrics over the rows where the NIP value is finite (and, for logs, positive): MAE, Spearman
rho, n valid, n NaN and the NaN reasons. A seeded random subset (``--subset N --seed S``) is
the same rows for log_kvrh and log_gvrh (same structures, same order): the second task is
served from the physics cache. Every structure is cached when done, so a killed run resumes.

    python -m benchmarks.physics_validation run --task matbench_phonons --backbone chgnet --subset 100
    python -m benchmarks.physics_validation render      # leaderboard/physics/README.md + parity plots

Result files: ``leaderboard/physics/<task>__<backbone>.json`` (metrics, per-row NIP values, reasons,
settings, cost in CPU-s per structure, git commit, hardware); the rows' DFT targets go to a
``.truth.json.gz`` sidecar that is not committed (dataset values); plots need it.

A set too big for one session is run as many small shards (``--shard K/N``), each committed when
it is done: a shard file keeps every row's values with the structure's content digest, so the
whole-set run assembles the table from committed shards, in a later session on a fresh machine
whose cache is empty, and another task on the same structures (log_gvrh from log_kvrh's shards)
is served from them too.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from hacknip_ase.sources import PHYSICS_SOURCES

from .report.physics_board import OUT_DIR, fmt, render, truth_path

ROOT = Path(__file__).resolve().parents[1]
#: task -> (quantities computed, [(label, column, transform)]) compared with the target.
#: The quantities are those of a physics feature source (hacknip_ase.sources.PHYSICS_SOURCES), so a
#: validation run fills the cache the accuracy rows read (``--features physics-moduli``).
TASKS = {
    "matbench_log_kvrh": (PHYSICS_SOURCES["physics-moduli"], [("K_VRH (Hill)", "bulk_modulus_vrh", "log10"),
                                                              ("K_EOS", "eos_bulk_modulus", "log10"),
                                                              ("K_Voigt", "bulk_modulus_voigt", "log10")]),
    "matbench_log_gvrh": (PHYSICS_SOURCES["physics-moduli"], [("G_VRH (Hill)", "shear_modulus_vrh", "log10"),
                                                              ("G_Voigt", "shear_modulus_voigt", "log10")]),
    "matbench_phonons": (PHYSICS_SOURCES["physics-phonons"], [("Gamma max", "gamma_max_frequency", "identity")]),
    "matbench_perovskites": (PHYSICS_SOURCES["physics"], [("E_form x n_atoms", "formation_energy_per_atom",
                                                           "per_cell")]),
}


def stored_columns(quantities) -> list[str]:
    """Columns a result file keeps per row: those compared by any task computing these quantities,
    so that one task's shards serve the others (log_kvrh's give log_gvrh's shear moduli)."""
    return sorted({column for q, comparisons in TASKS.values() if q == quantities for _, column, _ in comparisons})


def subset_rows(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded random subset (all rows when ``size`` is None or >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) if len(x) > 2 else float("nan")


def compare(values: np.ndarray, targets: np.ndarray, n_atoms: np.ndarray, transform: str) -> dict:
    """Metrics of one NIP column against the targets; rows that are NaN (or <= 0 for a log) are counted, not used."""
    values = np.asarray(values, float)
    if transform == "log10":
        with np.errstate(invalid="ignore", divide="ignore"):
            predicted = np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
        nonpositive = int(np.sum(np.isfinite(values) & (values <= 0)))
    elif transform == "per_cell":
        predicted, nonpositive = values * n_atoms, 0
    else:
        predicted, nonpositive = values, 0
    valid = np.isfinite(predicted)
    error = predicted[valid] - targets[valid]
    return {
        "n": int(len(values)), "n_valid": int(valid.sum()), "n_nan": int((~np.isfinite(values)).sum()),
        "n_nonpositive": nonpositive,
        "mae": float(np.mean(np.abs(error))) if valid.any() else None,
        "bias": float(np.mean(error)) if valid.any() else None,
        # For orientation only (the shift is taken from these same rows): the error left once the
        # constant offset between the NIP's and DFT's reference states is removed.
        "mae_after_mean_shift": float(np.mean(np.abs(error - error.mean()))) if valid.any() else None,
        "spearman": spearman(predicted[valid], targets[valid]) if valid.any() else None,
        "predicted": [None if not np.isfinite(p) else float(p) for p in predicted],
    }


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """"K/N" -> (K, N), 0 <= K < N: every N-th row from row K."""
    if text is None:
        return None
    k, _, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        raise ValueError(f"--shard must be K/N (integers), got {text!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def shard_path(out_dir: Path, task_name: str, backbone_name: str, shard: tuple[int, int]) -> Path:
    return Path(out_dir) / "shards" / f"{task_name}__{backbone_name}.{shard[0]}of{shard[1]}.json"


def _same_method(shard: dict, settings, identity: dict) -> bool:
    """Whether a shard file's numbers are this run's: the same backbone and the same settings of the
    quantities asked for (``PhysicsSettings.matches``: a phonon setting added since keeps moduli shards)."""
    def without_settings(record: dict) -> dict:
        return {k: v for k, v in record.items() if k != "settings"}

    return (settings.matches(shard.get("settings") or {})
            and without_settings(shard.get("backbone_identity") or {}) == without_settings(json.loads(json.dumps(identity))))


def _shard_costs(out_dir: Path, task_name: str, backbone_name: str, settings, identity: dict,
                 rows: np.ndarray) -> dict | None:
    """CPU time and structures computed by the shard runs of these rows and settings (parallel
    processes that filled the cache the whole-set run then reads), or None if there are none."""
    found = []
    for path in sorted((Path(out_dir) / "shards").glob(f"{task_name}__{backbone_name}.*of*.json")):
        shard = json.loads(path.read_text())
        if _same_method(shard, settings, identity) and set(shard["subset"]["rows"]) <= set(rows.tolist()):
            found.append((path.name, shard["cost"]))
    if not found:
        return None
    return {"files": [name for name, _ in found], "cpu_seconds": sum(c["cpu_seconds"] for _, c in found),
            "computed": sum(c["computed"] for _, c in found)}


def _from_shards(out_dir: Path, backbone_name: str, settings, identity: dict, digests: list[str],
                 columns: list[str]) -> dict | None:
    """The rows' values assembled from committed shard files (any task) of this backbone, identity and
    settings (a ``PhysicsSettings``), looked up by structure digest; None unless the shards hold every row."""
    found, files, cost, references = {}, [], {"cpu_seconds": 0.0, "computed": 0}, {}
    wanted = set(digests)
    for path in sorted((Path(out_dir) / "shards").glob(f"*__{backbone_name}.*of*.json")):
        shard = json.loads(path.read_text())
        if (not _same_method(shard, settings, identity) or "digests" not in shard or not set(columns) <= set(shard.get("values", {}))):
            continue
        hits = [k for k, d in enumerate(shard["digests"]) if d in wanted and d not in found]
        if not hits:
            continue
        reasons = shard.get("digest_reasons", {})
        for k in hits:
            digest = shard["digests"][k]
            found[digest] = ([shard["values"][c][k] for c in columns],
                             {c: r for c, r in reasons.get(digest, {}).items() if c in columns})
        files.append(path.name)
        cost["cpu_seconds"] += shard["cost"]["cpu_seconds"]
        cost["computed"] += shard["cost"]["computed"]
        references.update(shard.get("references", {}))
    if not wanted <= set(found):
        return None
    values = np.array([[np.nan if v is None else v for v in found[d][0]] for d in digests], float)
    return {"values": values, "reasons": [found[d][1] for d in digests], "files": files, "cost": cost,
            "references": references}


def run(task_name: str, backbone_name: str, *, subset: int | None, seed: int, data_dir=None, cache_dir=None,
        out_dir: Path = OUT_DIR, progress: bool = True, batch_size: int = 16, settings: dict | None = None,
        shard: tuple[int, int] | None = None) -> Path:
    """Compute the task's physics quantities on its (subset of) structures and write the result file.

    ``shard=(K, N)`` computes every N-th of those rows from row K (one of N parallel processes) and
    writes ``out_dir/shards/<task>__<backbone>.KofN.json``; the whole-set run afterwards takes the
    rows from those files when they hold them all (else from the cache, computing what is missing)
    and reports the shards' CPU time as its cost."""
    from dataclasses import asdict

    import torch

    from benchmarks.harness.results import git_info, hardware, write_json_atomic
    from benchmarks.tasks import get_task
    from hacknip_ase import get_backbone
    from hacknip_ase.cache import structure_digest
    from hacknip_ase.physics import PhysicsSettings, physics_features
    from hacknip_ase.physics.features import plain_atoms
    from hacknip_ase.physics.records import count_reasons, physics_identity
    from hacknip_ase.provenance import feature_versions as versions

    torch.set_num_threads(1)  # one thread per process: the cost we report is CPU-s per structure on one core
    quantities, comparisons = TASKS[task_name]
    data = get_task(task_name).load(data_dir or os.environ.get("HACKNIP_DATA_DIR"))
    rows = subset_rows(len(data), subset, seed)
    if shard is not None:
        rows = rows[shard[0]::shard[1]]
    structures = [data.inputs[i] for i in rows]
    ids = [data.ids[i] for i in rows]
    targets = np.asarray(data.targets, float)[rows]
    n_atoms = np.array([len(a) for a in structures])
    digests = [structure_digest(plain_atoms(a)) for a in structures]
    kept = stored_columns(quantities)
    physics_settings = PhysicsSettings(quantities=quantities, **(settings or {}))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    backbone = get_backbone(backbone_name)
    load_cpu = time.process_time() - cpu0
    identity = physics_identity(backbone, physics_settings)
    assembled = None if shard is not None else _from_shards(
        out_dir, backbone_name, physics_settings, identity, digests, kept)
    if assembled is None:
        values, columns, metadata = physics_features(structures, backbone, settings=physics_settings,
                                                     cache_dir=cache_dir, progress=progress, ids=ids,
                                                     batch_size=batch_size)
        row_reasons = [metadata["reasons"].get(str(i), {}) for i in ids]
    else:  # every row is in committed shard files: nothing to compute
        values, columns = assembled["values"], kept
        row_reasons = assembled["reasons"]
        metadata = {"computed": 0, "cache": None, "cpu_seconds": {}, "reason_counts": count_reasons(row_reasons),
                    "settings": asdict(physics_settings), "backbone": identity,
                    "references": assembled["references"]}
    cpu, wall = time.process_time() - cpu0 - load_cpu, time.perf_counter() - wall0
    index = {c: k for k, c in enumerate(columns)}
    result = {
        "task": task_name, "backbone": backbone_name, "target": data.target_names[0],
        "quantities": list(quantities),
        "subset": {"size": int(len(rows)), "of": int(len(data)), "seed": int(seed), "rows": rows.tolist()},
        "ids": ids, "targets": targets.tolist(), "n_atoms": n_atoms.tolist(),
        "comparisons": {},
        "cost": {"cpu_seconds": cpu, "wall_seconds": wall, "model_load_cpu_seconds": load_cpu,
                 "computed": metadata["computed"],
                 "cached": len(rows) if assembled else metadata["cache"]["hits"] if metadata["cache"] else 0,
                 "cpu_seconds_per_computed_structure": cpu / metadata["computed"] if metadata["computed"] else None,
                 "stage_cpu_seconds": metadata["cpu_seconds"],
                 "projected_full_cpu_hours": (cpu / metadata["computed"] * len(data) / 3600) if metadata["computed"] else None},
        "reason_counts": {c: metadata["reason_counts"].get(c, {}) for _, c, _ in comparisons},
        "settings": metadata["settings"], "backbone_identity": metadata["backbone"],
        "references": metadata["references"],
        "git": git_info(ROOT), "hardware": hardware(), "versions": versions(backbone_name),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["shard"] = None if shard is None else {"k": shard[0], "n": shard[1]}
    if assembled is not None:
        result["cost"]["assembled_from_shards"] = True
        shards = {"files": assembled["files"], **assembled["cost"]}
    else:
        shards = None if shard is not None else _shard_costs(out_dir, task_name, backbone_name,
                                                             physics_settings, identity, rows)
    if shards is not None and shards["computed"] > metadata["computed"]:
        per = shards["cpu_seconds"] / shards["computed"]
        result["cost"].update(shards=shards, cpu_seconds_per_computed_structure=per,
                              projected_full_cpu_hours=per * len(data) / 3600)
    for label, column, transform in comparisons:
        metrics = compare(values[:, index[column]], targets, n_atoms, transform)
        result["comparisons"][label] = {"column": column, "transform": transform, **metrics}
    result["values"] = {c: [None if not np.isfinite(v) else float(v) for v in values[:, index[c]]] for c in kept}
    result["digests"] = digests
    result["digest_reasons"] = {d: {c: r for c, r in marked.items() if c in kept}
                                for d, marked in zip(digests, row_reasons, strict=True)
                                if any(c in kept for c in marked)}
    path = Path(out_dir) / f"{task_name}__{backbone_name}.json" if shard is None \
        else shard_path(out_dir, task_name, backbone_name, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    split_truth(path)
    return path


def split_truth(path: Path) -> None:
    """Move a result file's ``targets`` into its sidecar (the committed file keeps metrics and NIP values)."""
    import gzip

    from hacknip_ase.files import atomic_write

    result = json.loads(Path(path).read_text())
    if "targets" not in result:
        return
    atomic_write(truth_path(path), gzip.compress(json.dumps({"ids": result["ids"], "targets": result.pop("targets")}).encode()))
    atomic_write(path, (json.dumps(result, indent=1) + "\n").encode())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="physics-validation", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="compute one task's physics quantities and compare with the target")
    go.add_argument("--task", required=True, choices=sorted(TASKS))
    go.add_argument("--backbone", default="chgnet")
    go.add_argument("--subset", type=int, default=None, help="rows of a seeded random subset (default: all)")
    go.add_argument("--seed", type=int, default=0)
    go.add_argument("--data-dir", default=None)
    go.add_argument("--cache-dir", default=None)
    go.add_argument("--batch-size", type=int, default=16)
    go.add_argument("--no-progress", action="store_true")
    go.add_argument("--out-dir", default=str(OUT_DIR))
    go.add_argument("--shard", default=None, metavar="K/N",
                    help="only every N-th row from row K (run N processes, then once without --shard)")
    show = sub.add_parser("render", help="write the README table and parity plots")
    show.add_argument("--out-dir", default=str(OUT_DIR))
    args = parser.parse_args(argv)
    if args.command == "run":
        try:
            shard = parse_shard(args.shard)
        except ValueError as exc:
            parser.error(str(exc))  # one line, exit 2
        path = run(args.task, args.backbone, subset=args.subset, seed=args.seed, data_dir=args.data_dir,
                   cache_dir=args.cache_dir, out_dir=Path(args.out_dir), progress=not args.no_progress,
                   batch_size=args.batch_size, shard=shard)
        result = json.loads(path.read_text())
        for label, comp in result["comparisons"].items():
            print(f"{result['task']} {result['backbone']} {label}: n_valid {comp['n_valid']}/{comp['n']} "
                  f"MAE {fmt(comp['mae'])} rho {fmt(comp['spearman'], 3)}")
        print(f"cost: {fmt(result['cost']['cpu_seconds_per_computed_structure'], 3)} CPU-s/structure; wrote {path}")
    else:
        print(render(Path(args.out_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
