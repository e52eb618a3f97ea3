"""Matbench loader on a synthetic file in the official layout; folds are matbench's own."""

import gzip
import json

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor

from benchmarks.tasks import get_task
from benchmarks.harness.matbench_record import MatbenchRecord
from benchmarks.tasks.matbench import matbench_ids
from hacknip_ase.errors import DataFormatError


def write_matbench_file(root, dataset, n, target, seed=0):
    """json.gz with matminer's layout: columns/index/data, structures as pymatgen dicts."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        atoms = bulk("Si" if i % 2 else "NaCl", "diamond" if i % 2 else "rocksalt", a=5.4 + 0.001 * (i % 50))
        rows.append([AseAtomsAdaptor.get_structure(atoms).as_dict(), float(rng.normal(50, 10))])
    folder = root / "matbench"
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{dataset}.json.gz", "wt") as handle:
        json.dump({"index": list(range(n)), "columns": ["structure", target], "data": rows}, handle)


@pytest.fixture(scope="module")
def jdft2d(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_matbench_file(root, "matbench_jdft2d", 636, "exfoliation_en")
    task = get_task("matbench_jdft2d")
    return task, task.load(root)


def test_ids_and_folds_are_matbench_official(jdft2d):
    task, data = jdft2d
    from matbench.metadata import mbv01_validation

    official = mbv01_validation.splits["matbench_jdft2d"]
    assert data.ids[:2] == ["mb-jdft2d-001", "mb-jdft2d-002"]
    splits = list(task.splits(data))
    assert [s.name for s in splits] == list(official)
    for split in splits:
        assert [data.ids[i] for i in split.test] == official[split.name]["test"]
        assert sorted(data.ids[i] for i in split.train) == sorted(official[split.name]["train"])
    assert len(data.inputs) == 636 and data.inputs[0].pbc.all()


def test_id_width_follows_dataset_size():
    assert matbench_ids("log_gvrh", 10987)[0] == "mb-log-gvrh-00001"
    assert matbench_ids("dielectric", 4764)[-1] == "mb-dielectric-4764"


def test_folds_are_recorded_and_scored_by_matbench(jdft2d, tmp_path):
    from matbench.bench import MatbenchBenchmark

    task, data = jdft2d
    record, ours = MatbenchRecord({"matbench_jdft2d": data}), []
    for split in task.splits(data):
        assert not record.complete
        y_pred = np.full(len(split.test), data.targets[split.train].mean())  # the dummy model
        ids = [data.ids[i] for i in split.test]
        scores = record.record("matbench_jdft2d", split.name, ids[::-1], y_pred[::-1])  # any order, by id
        ours.append(task.score(data.targets[split.test], y_pred))
        assert scores["mae"] == ours[-1]["mae"] and scores["rmse"] == ours[-1]["rmse"]  # same scoring, bit for bit
    assert record.complete
    path = record.write(tmp_path / "results.json.gz")
    reloaded = MatbenchBenchmark.from_file(str(path))
    assert reloaded.tasks_map["matbench_jdft2d"].scores["mae"]["mean"] == pytest.approx(np.mean([s["mae"] for s in ours]))


def test_truncated_file_is_rejected(tmp_path):
    write_matbench_file(tmp_path, "matbench_jdft2d", 10, "exfoliation_en")
    with pytest.raises(DataFormatError, match="official"):
        get_task("matbench_jdft2d").load(tmp_path)


def test_submission_folder_is_scored_by_matbench_to_our_mae(jdft2d, tmp_path, monkeypatch):
    from benchmarks.harness import results as results_mod
    from benchmarks.harness import run as run_mod
    from benchmarks.harness.config import RunConfig
    from benchmarks.harness.submission import write_submission

    root = tmp_path / "data"
    write_matbench_file(root, "matbench_jdft2d", 636, "exfoliation_en")
    monkeypatch.setattr(results_mod, "git_info", lambda root=None: {"commit": "abc", "dirty": False})
    run_mod.run("matbench_jdft2d", "composition", "ridge", RunConfig(data_dir=root, results_dir=tmp_path / "results",
                                                                    cache_dir=tmp_path / "cache", progress=False))
    scores = write_submission(tmp_path / "sub", ["matbench_jdft2d"], "composition", "ridge",
                              results_dir=tmp_path / "results", data_dir=root, commands=["hacknip-bench run ..."])
    assert scores["matbench_jdft2d"]["matbench"] == pytest.approx(scores["matbench_jdft2d"]["ours"], rel=1e-9)
    info = json.loads((tmp_path / "sub" / "info.json").read_text())
    assert {"authors", "algorithm", "algorithm_long", "bibtex_refs", "notes", "requirements"} <= set(info)
    assert info["authors"] == "hacknip-ase" and "hacknip-bench run" in (tmp_path / "sub" / "run.sh").read_text()


def test_export_heads_ships_the_best_rows_recipe(tmp_path, monkeypatch):
    from benchmarks.harness import export as export_mod
    from benchmarks.harness.recipe import Recipe
    from benchmarks.harness.results import SCHEMA, SCHEMA_VERSION, write_json_atomic
    from hacknip_ase.heads import load_predictor

    root = tmp_path / "data"
    write_matbench_file(root, "matbench_jdft2d", 636, "exfoliation_en")
    record = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "status": "complete", "task": {"name": "matbench_jdft2d", "split": "matbench 5-fold"},
              "model": {"kind": "frozen", "backbone": {"name": "chgnet"}, "head": "auto"},
              "summary": {"mae": {"mean": 9.0, "std": 1.0}}, "folds": []}
    write_json_atomic(tmp_path / "results" / "matbench_jdft2d" / "chgnet__auto.json", record)
    cheap = Recipe(head="xgboost", descriptors=("composition",), candidates="multi", transform="auto", preset="auto")
    monkeypatch.setattr(export_mod, "recipe_for", lambda head: cheap)
    monkeypatch.setattr(export_mod, "HEAD_PARAMS", {"auto": {"n_estimators": 20}})
    (entry,) = export_mod.export_heads(tmp_path / "heads", "chgnet", tasks=["matbench_jdft2d"],
                                       results_dir=tmp_path / "results", data_dir=root,
                                       cache_dir=tmp_path / "cache", progress=False)
    assert entry["head"] == "auto" and entry["cv_mae"] == 9.0
    predictor = load_predictor(tmp_path / "heads" / entry["file"])
    assert [r["name"] for r in predictor.backbones] == ["chgnet", "composition"]
    assert "transform" in predictor.selection  # the recipe's choices were made on the whole dataset's inner CV


def test_export_replaces_a_cpu_budget_by_the_folds_median_trial_count():
    from benchmarks.harness.export import reproducible
    from benchmarks.harness.recipe import PRESETS, Recipe

    record = {"folds": [{"choices": {"tuning": {"n_trials": n}}} for n in (2, 3, 3, 5, 9)]}
    recipe = reproducible(PRESETS["auto"], record)
    assert recipe.tune_trials == 3 and recipe.tune_cpu_budget is None and recipe.preset == "auto"
    assert reproducible(PRESETS["auto"], {"folds": [{"choices": {"tuning": {"n_trials": 40}}}]}).tune_trials == 10
    assert reproducible(Recipe(head="mlp"), record) == Recipe(head="mlp")  # nothing stopped by a budget
