"""``hacknip-bench export-heads``: the shipped property heads (:mod:`hacknip_ase.pretrained`),
rebuilt from the benchmark data.

Per task and backbone: the row (XGBoost, MLP or hacknip-auto) with the lowest mean MAE in that
backbone's leaderboard rows, trained with the same recipe through :meth:`hacknip_ase.heads.Predictor.fit` on every row of the
dataset, its depth chosen by inner CV on that data (the benchmarks' size rule), seed 0; the
property is given in the dataset's physical units (moduli in GPa from Matbench's log10 targets,
Tc in K from 3DSC's ln Tc) through a target transform that makes the fitted target exactly the
benchmark's. The applicability domain keeps a seeded subset of ``DOMAIN_REFERENCE`` training
embeddings so that the files stay small, and the training structures' periodicity (all
periodic here), so that a molecule gets an infinite domain distance. ``index.json`` records each head's provenance and the
cross-validated MAE of its leaderboard row (the benchmark's own folds). A hacknip-auto row's
search, stopped by a CPU budget in the benchmark, runs a fixed number of seeded trials here
(:func:`reproducible`), so a rebuild gives the same files on any machine.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .recipe import recipe_for
from .results import git_info, iter_results
from .config import DEFAULT_RESULTS_DIR
from .run import embed, get_source, load_task

#: Training embeddings kept as each head's applicability-domain reference.
DOMAIN_REFERENCE = 2000
#: Rows a shipped predictor may come from: pure numpy/scikit-learn/XGBoost at prediction time
#: ("auto": hacknip-auto, XGBoost on embeddings and composition descriptors, see .recipe).
SHIPPABLE_HEADS = ("xgboost", "mlp", "auto")
HEAD_PARAMS = {"mlp": {"max_iter": 300}}  # as in benchmarks/suites/offline.toml


@dataclass(frozen=True)
class HeadSpec:
    task: str
    name: str  #: ASE property name
    units: str
    dataset: str
    transform: str | None  #: fitted target = transform(property) = the benchmark's target
    to_property: str  #: how the benchmark target becomes the property ("identity", "10**", "exp")
    cv_units: str


SPECS = (
    HeadSpec("matbench_log_gvrh", "shear_modulus_vrh", "GPa", "Matbench v0.1 log_gvrh", "log10", "10**", "log10(GPa)"),
    HeadSpec("matbench_log_kvrh", "bulk_modulus_vrh", "GPa", "Matbench v0.1 log_kvrh", "log10", "10**", "log10(GPa)"),
    HeadSpec("matbench_dielectric", "refractive_index", "", "Matbench v0.1 dielectric", None, "identity", ""),
    HeadSpec("matbench_jdft2d", "exfoliation_energy", "meV/atom", "Matbench v0.1 jdft2d", None, "identity",
             "meV/atom"),
    HeadSpec("matbench_phonons", "last_phdos_peak", "cm^-1", "Matbench v0.1 phonons", None, "identity", "cm^-1"),
    HeadSpec("matbench_perovskites", "perovskite_formation_energy", "eV/cell", "Matbench v0.1 perovskites", None,
             "identity", "eV/cell"),
    HeadSpec("3dsc_mp", "superconducting_tc", "K", "3DSC_MP (Sommer et al. 2023)", "ln", "exp", "ln(K)"),
)
_TO_PROPERTY = {"identity": lambda y: y, "10**": lambda y: np.power(10.0, y), "exp": np.exp}


def reproducible(recipe, record: dict):
    """``recipe`` with a search that a CPU budget stops replaced by a fixed trial count: the median
    its leaderboard row's folds reached (seeded TPE: the rebuild is deterministic, on any machine)."""
    if not recipe.tune_cpu_budget:
        return recipe
    trials = [f["choices"]["tuning"]["n_trials"] for f in record["folds"] if (f.get("choices") or {}).get("tuning")]
    n_trials = min(int(np.ceil(np.median(trials))), recipe.tune_trials) if trials else recipe.tune_trials
    return replace(recipe, tune_trials=n_trials, tune_cpu_budget=None)


def leaderboard_rows(results_dir, backbone: str) -> dict:
    """{task: {head: record}} of the complete frozen rows of ``backbone`` for shippable heads."""
    rows: dict = {}
    for _, record in iter_results(results_dir):
        model = record.get("model", {})
        if (model.get("kind") == "frozen" and record.get("status") == "complete"
                and model.get("backbone", {}).get("name") == backbone and model.get("head") in SHIPPABLE_HEADS):
            rows.setdefault(record["task"]["name"], {})[model["head"]] = record
    return rows


def export_heads(out_dir, backbone: str = "chgnet", *, tasks=None, results_dir=DEFAULT_RESULTS_DIR, data_dir=None,
                 cache_dir=None, progress: bool = True) -> list[dict]:
    """Train and save the heads of ``tasks`` (default: all of :data:`SPECS`); returns their index entries."""
    from tqdm.auto import tqdm

    from hacknip_ase.backbones import get_backbone
    from hacknip_ase.heads import Predictor
    from hacknip_ase.heads.predictor import pbc_kind

    from ..tasks import get_task

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nip = get_backbone(backbone)
    specs = [s for s in SPECS if tasks is None or s.task in tasks]
    entries = []
    leaderboard = leaderboard_rows(results_dir, backbone)  # every result file read once
    code = git_info()  # before the first head is written: the default output folder is tracked
    for spec in tqdm(specs, desc=f"export heads {backbone}", unit="head", disable=not progress):
        start, cpu = time.perf_counter(), time.process_time()
        rows = leaderboard.get(spec.task, {})
        if not rows:
            raise FileNotFoundError(f"no complete xgboost/mlp result of {spec.task} with {backbone} in {results_dir}: "
                                    "run the benchmark first (its configuration and CV error are shipped)")
        head, record = min(rows.items(), key=lambda kv: kv[1]["summary"]["mae"]["mean"])
        task = get_task(spec.task)
        data = load_task(task, nip, data_dir=data_dir, progress=progress)
        X, present, _ = embed(data, nip, cache_dir=cache_dir, progress=progress)
        y = _TO_PROPERTY[spec.to_property](np.asarray(data.targets, dtype=float)[present])
        recipe = reproducible(recipe_for(head), record)
        arrays, infos = [X[present]], [nip.info]
        for name in recipe.descriptors:
            source = get_source(name, cache_dir=cache_dir, nip=nip)
            arrays.append(embed(data, source, progress=progress)[0][present])
            infos.append(source.info)
        # the benchmark's own transform turns the property into its target; a recipe's "auto" only
        # applies where the benchmark target is the property itself
        options = {**recipe.fit_options(), "transform": spec.transform or recipe.transform}
        predictor = Predictor.fit(arrays if len(arrays) > 1 else arrays[0], y, backbone=infos if len(infos) > 1
                                  else infos[0], head=recipe.head, head_params=HEAD_PARAMS.get(head),
                                  target_name=spec.name, units=spec.units, random_state=0,
                                  domain_max_reference=DOMAIN_REFERENCE, **options)
        predictor.training_pbc = pbc_kind([data.inputs[i] for i in np.flatnonzero(present)])
        path = out / f"{backbone}__{spec.name}.hnp"
        predictor.save(path)
        summary = record["summary"]["mae"]
        entries.append({
            "name": spec.name, "backbone": backbone, "model": nip.info.model, "weights_sha256": nip.info.weights_sha256,
            "file": path.name, "size_bytes": path.stat().st_size, "units": spec.units, "transform": spec.transform,
            "dataset": spec.dataset, "task": spec.task, "n_train": int(present.sum()), "head": head,
            "depths": predictor.metadata()["depths_label"], "cv_mae": summary["mean"], "cv_std": summary["std"],
            "cv_units": spec.cv_units, "cv_protocol": record["task"]["split"],
            "cv_result": f"leaderboard/results/{spec.task}/{backbone}__{head}.json", "recipe": recipe.as_dict(),
            "seconds": {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu},
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "git": code})
    _write_index(out, entries)
    return entries


def _write_index(out: Path, entries: list[dict]) -> None:
    from hacknip_ase.files import atomic_write

    path = out / "index.json"
    old = json.loads(path.read_text())["heads"] if path.is_file() else []
    replaced = {(e["backbone"], e["name"]) for e in entries}
    heads = [h for h in old if (h["backbone"], h["name"]) not in replaced] + entries
    heads.sort(key=lambda h: (h["backbone"], [s.name for s in SPECS].index(h["name"]) if h["name"] in
                              [s.name for s in SPECS] else 99))
    atomic_write(path, (json.dumps({"format": "hacknip-ase pretrained heads", "heads": heads}, indent=1) + "\n").encode())
