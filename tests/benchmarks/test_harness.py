"""The harness end to end on small generated data: schema, resume, leak-free selection, matbench files."""

import json

import numpy as np
import pytest

from benchmarks.cli import main as bench_main
from benchmarks.harness import results as results_mod
from benchmarks.harness import run as run_mod
from benchmarks.harness.config import RunConfig
from benchmarks.harness.results import ResultWriter, read_result, result_path
from benchmarks.tasks import get_task
from benchmarks.tasks.synthetic import emt_alloys
from hacknip_ase.heads import DepthSelector
from hacknip_ase.heads.selection import as_sources

N = 40  # generated cells: 8 per test fold


def small(results_dir, cache, **fields) -> RunConfig:
    """The run configuration of these tests: N generated cells, no progress bars."""
    return RunConfig(results_dir=results_dir, cache_dir=cache, limit=N, progress=False, **fields)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


def test_synthetic_task_is_generated_deterministically():
    a, ya = emt_alloys(12, seed=3)
    b, yb = emt_alloys(12, seed=3)
    _, yc = emt_alloys(12, seed=4)
    assert np.array_equal(ya, yb) and not np.array_equal(ya, yc)
    assert all(np.allclose(x.positions, y.positions) for x, y in zip(a, b, strict=True))
    assert {len(x) for x in a} == {8} and np.all(np.isfinite(ya))
    task = get_task("synthetic_emt_alloys")
    assert task.is_present(None) and task.count() == 200
    data = task.load(n=N)
    splits = list(task.splits(data))
    assert len(splits) == 5 and sorted(np.concatenate([s.test for s in splits]).tolist()) == list(range(N))


def test_run_writes_the_documented_schema(tmp_path, cache):
    record = run_mod.run("synthetic_emt_alloys", "chgnet", "ridge", small(tmp_path, cache))
    path = result_path(tmp_path, "synthetic_emt_alloys", "chgnet", "ridge")
    assert read_result(path) == json.loads(json.dumps(record))
    assert record["status"] == "complete" and len(record["folds"]) == 5
    assert record["task"]["name"] == "synthetic_emt_alloys" and record["task"]["metrics"][0] == "mae"
    assert record["model"]["backbone"]["name"] == "chgnet" and record["model"]["head"] == "ridge"
    n_depths = record["model"]["backbone"]["n_depths"]
    for fold in record["folds"]:
        assert len(fold["ids"]) == len(fold["y_true"]) == len(fold["y_pred"]) == fold["n_test"] == 8
        assert fold["n_train"] == N - 8
        assert len(fold["selection_curve"]) == n_depths  # every depth scored
        (depth,) = fold["best_depths"]
        best = max(fold["selection_curve"], key=lambda c: c["score"])
        assert best["candidate"] == [[0, depth]]
        assert fold["metrics"]["mae"] == pytest.approx(np.mean(np.abs(np.subtract(fold["y_true"], fold["y_pred"]))))
        assert {"select_fit", "predict", "total"} <= set(fold["seconds"])
    maes = [f["metrics"]["mae"] for f in record["folds"]]
    assert record["summary"]["mae"]["mean"] == pytest.approx(np.mean(maes))
    assert record["summary"]["mae"]["std"] == pytest.approx(np.std(maes))
    # better than predicting the training mean: the embeddings carry the EMT energy
    dummy = np.mean([np.mean(np.abs(np.subtract(f["y_true"], np.mean(f["y_true"])))) for f in record["folds"]])
    assert record["summary"]["mae"]["mean"] < 0.7 * dummy
    assert {"backbone", "load", "featurize", "folds", "total"} <= set(record["timing"])
    assert record["seeds"] == {"head": 0, "selection": 0, "split": [18012019]}
    assert {f["head_seed"] for f in record["folds"]} == {0}  # KFold folds share the run's seed
    assert record["versions"]["chgnet"] and record["versions"]["scikit-learn"]
    assert "commit" in record["git"] and record["hardware"]["cpu_count"] >= 1
    ids = sorted(i for f in record["folds"] for i in f["ids"])
    assert ids == [f"emt-{i:04d}" for i in range(N)]


def test_interrupted_run_keeps_finished_folds_and_resumes(tmp_path, cache, monkeypatch):
    fits = []
    original = DepthSelector.fit

    def counting_fit(self, X, y):
        fits.append(len(y))
        if len(fits) == 3:
            raise KeyboardInterrupt  # killed during the third fold
        return original(self, X, y)

    monkeypatch.setattr(DepthSelector, "fit", counting_fit)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run("synthetic_emt_alloys", "chgnet", "ridge", small(tmp_path, cache))
    path = result_path(tmp_path, "synthetic_emt_alloys", "chgnet", "ridge")
    partial = read_result(path)
    assert partial["status"] == "partial" and [f["name"] for f in partial["folds"]] == ["fold_0", "fold_1"]

    fits.clear()
    monkeypatch.setattr(DepthSelector, "fit", original)
    monkeypatch.setattr(DepthSelector, "fit", lambda self, X, y: (fits.append(len(y)), original(self, X, y))[1])
    record = run_mod.run("synthetic_emt_alloys", "chgnet", "ridge", small(tmp_path, cache))
    assert len(fits) == 3  # only the three missing folds were fitted
    assert record["status"] == "complete" and [f["name"] for f in record["folds"]] == [f"fold_{k}" for k in range(5)]
    assert record["folds"][:2] == partial["folds"]
    assert record["resumed_from"]["folds"] == ["fold_0", "fold_1"]

    # another identity (other seed) must not reuse those folds
    fits.clear()
    run_mod.run("synthetic_emt_alloys", "chgnet", "ridge", small(tmp_path, cache, seed=1))
    assert len(fits) == 5


def test_selection_never_sees_test_rows(tmp_path, cache, monkeypatch):
    seen = []
    original = DepthSelector.fit

    def spy(self, X, y):
        seen.append(as_sources(X)[0].copy())  # Predictor.fit passes the list of per-backbone arrays
        return original(self, X, y)

    monkeypatch.setattr(DepthSelector, "fit", spy)
    run_mod.run("synthetic_emt_alloys", "chgnet", "ridge", small(tmp_path, cache))
    task = get_task("synthetic_emt_alloys")
    data = task.load(n=N)
    X, present, _ = run_mod.embed(data, "chgnet", cache_dir=cache, progress=False)
    assert present.all()
    splits = list(task.splits(data))
    assert len(seen) == len(splits)
    for split, fitted in zip(splits, seen, strict=True):
        rows = {r.tobytes() for r in fitted}
        assert len(rows) == len(split.train)
        assert rows == {X[i].tobytes() for i in split.train}
        assert not rows & {X[i].tobytes() for i in split.test}


def test_cli_run_and_quickstart_print_the_row(tmp_path, cache, capsys):
    code = bench_main(["run", "--task", "synthetic_emt_alloys", "--backbone", "chgnet", "--head", "xgboost",
                       "--head-param", "n_estimators=20", "--limit", str(N), "--results-dir", str(tmp_path),
                       "--cache-dir", str(cache), "--fold", "fold_0", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    record = read_result(result_path(tmp_path, "synthetic_emt_alloys", "chgnet", "xgboost"))
    assert [f["name"] for f in record["folds"]] == ["fold_0"]
    assert record["model"]["head_params"] == {"n_estimators": 20}
    assert "synthetic_emt_alloys" in out and f"{record['summary']['mae']['mean']:.4g}" in out

    code = bench_main(["quickstart", "--n", str(N), "--head", "ridge", "--results-dir", str(tmp_path / "q"),
                       "--cache-dir", str(cache), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    record = read_result(result_path(tmp_path / "q", "synthetic_emt_alloys", "chgnet", "ridge"))
    assert f"{record['summary']['mae']['mean']:.4g}" in out and record["status"] == "complete"


def test_matbench_results_reload_with_the_same_mae(tmp_path, cache):
    from matbench.bench import MatbenchBenchmark

    from benchmarks.report.leaderboard import render
    from tests.benchmarks.test_leaderboard import write_published_leaderboard
    from tests.benchmarks.test_matbench import write_matbench_file

    data_dir = tmp_path / "data"
    write_matbench_file(data_dir, "matbench_jdft2d", 636, "exfoliation_en")
    record = run_mod.run("matbench_jdft2d", "chgnet", "ridge", RunConfig(data_dir=data_dir, results_dir=tmp_path / "res",
                                                                         cache_dir=cache, progress=False))
    matbench_file = result_path(tmp_path / "res", "matbench_jdft2d", "chgnet", "ridge").with_name(
        record["matbench_results"])
    reloaded = MatbenchBenchmark.from_file(str(matbench_file))
    scores = reloaded.tasks_map["matbench_jdft2d"].scores["mae"]
    assert scores["mean"] == pytest.approx(record["summary"]["mae"]["mean"], rel=1e-9)
    assert scores["std"] == pytest.approx(record["summary"]["mae"]["std"], rel=1e-9)
    write_published_leaderboard(data_dir)
    readme = render(tmp_path / "res", tmp_path / "board" / "README.md", data_dir=data_dir, figures=False)
    row = next(line for line in readme.read_text().splitlines() if f"{scores['mean']:.4g} ± " in line)
    assert "matbench scores chgnet__ridge.matbench.json.gz: same MAE" in row


def test_writer_is_reusable_for_other_engines(tmp_path):
    """A fine-tuning engine records folds through the same writer and schema."""
    header = {"task": {"name": "t", "family": "f", "task_type": "regression", "metrics": ["mae"]},
              "model": {"kind": "finetune", "backbone": {"name": "chgnet"}, "head": "finetune"},
              "seeds": {"head": 0}}
    path = result_path(tmp_path, "t", "chgnet", "finetune")
    writer = ResultWriter(path, header)
    writer.add_fold("fold_0", metrics={"mae": 1.0}, ids=["a", "b"], y_true=[0, 1], y_pred=[1, 2])
    writer.add_fold("fold_1", metrics={"mae": 3.0}, ids=["c"], y_true=[0], y_pred=[3])
    record = writer.finish({"total": 2.0})
    assert read_result(path)["summary"]["mae"] == {"mean": 2.0, "std": 1.0, "n_folds": 2}
    assert record["model"]["kind"] == "finetune" and results_mod.iter_results(tmp_path)[0][0] == path
    assert ResultWriter(path, header).done == {"fold_0", "fold_1"}
    on_other_embeddings = {**header, "featurization": {"cache_identity": "another cache"}}
    assert ResultWriter(path, on_other_embeddings).done == set()  # other weights or options: nothing reused


def test_true_targets_stay_out_of_the_result_file(tmp_path):
    from benchmarks.harness.results import ResultWriter, read_result, truth_path

    path = tmp_path / "task" / "chgnet__ridge.json"
    writer = ResultWriter(path, {"task": {"name": "t"}, "model": {"head": "ridge"}, "seeds": {}})
    writer.add_fold("fold_0", metrics={"mae": 0.5}, ids=["a", "b"], y_true=[1.0, 2.0], y_pred=[1.5, 2.5])
    assert '"y_true"' not in path.read_text()
    assert truth_path(path).is_file()
    assert read_result(path)["folds"][0]["y_true"] == [1.0, 2.0]
    truth_path(path).unlink()
    assert "y_true" not in read_result(path)["folds"][0]


def test_seeded_replicates_vary_the_head_seed(tmp_path, cache, monkeypatch):
    """Replicates of a deterministic split (scaffold) must not be five copies of one fit."""
    from benchmarks.tasks.base import Split

    task = get_task("synthetic_emt_alloys")
    same = list(task.splits(task.load(n=N)))[0]
    monkeypatch.setattr(type(task), "seeded_replicates", True)
    monkeypatch.setattr(type(task), "splits", lambda self, data: iter(
        [Split(f"seed_{k}", same.train, same.test, seed=k) for k in range(3)]))
    record = run_mod.run("synthetic_emt_alloys", "chgnet", "xgboost", small(tmp_path, cache, seed=7),
                         head_params={"n_estimators": 20})
    assert [f["head_seed"] for f in record["folds"]] == [7, 8, 9]
    assert "per_split" in record["seeds"]
    preds = [tuple(np.round(f["y_pred"], 9)) for f in record["folds"]]
    assert len(set(preds)) > 1  # same rows, different seeds: different fits


def test_a_fold_predictor_is_the_saved_kind_and_serves_the_calculator(tmp_path, cache):
    """The harness fits a hacknip_ase Predictor per fold: a winner can be saved and attached as a head."""
    from hacknip_ase import EmbeddingCalculator, get_backbone
    from hacknip_ase.heads import Predictor

    task = get_task("synthetic_emt_alloys")
    data = task.load(n=N)
    nip = get_backbone("chgnet")
    X, _, _ = run_mod.embed(data, nip, cache_dir=cache, progress=False)
    split = next(iter(task.splits(data)))
    predictor = run_mod.fit_predictor(X[split.train], data.targets[split.train], nip, "ridge", "regression",
                                      seed=0, target_name="emt")
    direct = Predictor.fit(X[split.train], data.targets[split.train], backbone=nip, head="ridge", random_state=0)
    assert predictor.depths == direct.depths and predictor.selection["cv"] == 5
    np.testing.assert_array_equal(predictor.predict_embeddings(X[split.test]), direct.predict_embeddings(X[split.test]))
    predictor.save(tmp_path / "winner.hnp")
    atoms = data.inputs[split.test[0]].copy()
    atoms.calc = EmbeddingCalculator(backbone=nip, heads={"emt": str(tmp_path / "winner.hnp")})
    assert atoms.get_properties(["emt"])["emt"] == pytest.approx(predictor.predict_embeddings(X[split.test[:1]])[0],
                                                                 abs=1e-4)


def test_git_state_counts_code_not_the_results_a_run_writes(tmp_path):
    import subprocess

    from benchmarks.harness.results import git_info

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "leaderboard").mkdir()
    (tmp_path / "leaderboard" / "row.json").write_text("{}\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_info(tmp_path)["dirty"] is False
    (tmp_path / "leaderboard" / "row.json").write_text('{"folds": []}\n')  # a run rewrote its result
    assert git_info(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_info(tmp_path)["dirty"] is True


def test_tasks_that_select_on_valid_fit_train_and_valid_and_score_valid(tmp_path, cache, monkeypatch):
    """MoleculeNet's protocol in the harness: depth scored on the split's valid part, no test row seen."""
    from benchmarks.tasks.base import Split

    task = get_task("synthetic_emt_alloys")
    data = task.load(n=N)
    X, _, _ = run_mod.embed(data, "chgnet", cache_dir=cache, progress=False)
    order = np.random.default_rng(0).permutation(N)
    splits = [Split(f"seed_{k}", np.sort(np.roll(order, 8 * k)[:28]), np.sort(np.roll(order, 8 * k)[32:]),
                    valid=np.sort(np.roll(order, 8 * k)[28:32]), seed=k) for k in range(2)]
    monkeypatch.setattr(type(task), "select_on_valid", True)
    monkeypatch.setattr(type(task), "splits", lambda self, data: iter(splits))
    seen = []
    original = DepthSelector.fit

    def spy(self, X_fit, y):
        rows = as_sources(X_fit)[0]
        held_out = [rows[v] for _, v in self._splitter().split(rows[:, 0], y)]
        seen.append(({r.tobytes() for r in rows}, [{r.tobytes() for r in h} for h in held_out]))
        return original(self, X_fit, y)

    monkeypatch.setattr(DepthSelector, "fit", spy)
    record = run_mod.run("synthetic_emt_alloys", "chgnet", "ridge", small(tmp_path, cache))
    for split, (fitted, held_out), fold in zip(splits, seen, record["folds"], strict=True):
        assert fitted == {X[i].tobytes() for i in np.r_[split.train, split.valid]}
        assert held_out == [{X[i].tobytes() for i in split.valid}]
        assert fold["selection"]["cv"] == "given validation part (4 rows)" and fold["n_valid"] == 4
    assert "validation part" in record["model"]["selection"]["rule"]


def test_recipe_rows_record_every_choice_and_keep_their_own_file(tmp_path, cache):
    from benchmarks.harness.recipe import PRESETS, Recipe, recipe_for

    recipe = Recipe(head="xgboost", descriptors=("composition",), candidates="all", transform="auto", tune_trials=2)
    assert recipe.label() == "xgboost-composition-all-tauto-tune2" and PRESETS["auto"].label() == "auto"
    assert recipe_for("xgboost").is_plain and recipe_for("ridge").label() == "ridge"
    with_physics = recipe_for("auto", descriptors=("physics-phonons",))
    assert with_physics.label() == "auto-physics-phonons" and with_physics.descriptors == ("composition", "physics-phonons")
    assert with_physics.tune_trials == recipe_for("auto").tune_trials
    assert recipe_for("auto", descriptors=("composition",)) == recipe_for("auto")
    with pytest.raises(ValueError, match="fixes its own options"):
        recipe_for("auto", transform="log10")
    with pytest.raises(ValueError, match="unknown descriptor"):
        Recipe(descriptors=("magpie2",))
    record = run_mod.run("synthetic_emt_alloys", "chgnet", config=small(tmp_path, cache, folds=["fold_0"]), recipe=recipe,
                         head_params={"n_estimators": 30})
    path = result_path(tmp_path, "synthetic_emt_alloys", "chgnet", recipe.label())
    assert path.exists() and read_result(path)["model"]["recipe"]["descriptors"] == ["composition"]
    (fold,) = record["folds"]
    choices = fold["choices"]
    assert choices["transform"] in (None, "log10", "log1p") and choices["tuning"]["n_trials"] == 2
    assert "composition:0" in [c["label"] for c in fold["selection_curve"]]
    assert fold["seconds"]["cpu"] > 0
    plain = run_mod.run("synthetic_emt_alloys", "composition", "ridge", small(tmp_path, cache, folds=["fold_0"]))
    assert plain["model"]["backbone"]["kind"] == "descriptors" and "recipe" not in plain["model"]


def test_suite_blocks_set_recipes(tmp_path):
    from benchmarks.harness.suite import read_suite

    path = tmp_path / "s.toml"
    path.write_text('[[run]]\ntasks = ["matbench_jdft2d"]\nbackbones = ["chgnet"]\nheads = ["xgboost", "auto"]\n'
                    'features = ["composition"]\ntransform = "auto"\n')
    with pytest.raises(ValueError, match="fixes its own options"):
        read_suite(path)
    path.write_text('[[run]]\ntasks = ["matbench_jdft2d"]\nbackbones = ["chgnet"]\nheads = ["xgboost"]\n'
                    'features = ["composition"]\ntransform = "auto"\n[[run]]\ntasks = ["matbench_jdft2d"]\n'
                    'backbones = ["chgnet"]\nheads = ["auto", "xgboost"]\n')
    labels = [r.make_recipe().label() for r in read_suite(path).runs]
    assert labels == ["xgboost-composition-tauto", "auto", "xgboost"]


def test_multi_nip_rows_add_another_backbones_embeddings(tmp_path, cache, capsys):
    """--features sevennet beside chgnet: both NIPs' depths are candidates, chosen by inner CV."""
    from benchmarks.harness.recipe import Recipe

    recipe = Recipe(head="xgboost", descriptors=("sevennet",), candidates="multi")
    assert recipe.label() == "xgboost-sevennet-multi"
    record = run_mod.run("synthetic_emt_alloys", "chgnet", config=small(tmp_path, cache, folds=["fold_0"]),
                         recipe=recipe, head_params={"n_estimators": 30})
    labels = [c["label"] for c in record["folds"][0]["selection_curve"]]
    assert any(label.startswith("sevennet:") for label in labels) and any(label.startswith("chgnet:") for label in labels)
    assert any("chgnet:" in label and "sevennet:" in label for label in labels)  # the two best depths together
    assert "sevenn" in record["versions"]
    with pytest.raises(ValueError, match="repeats the run's own backbone"):
        run_mod.run("synthetic_emt_alloys", "chgnet", config=small(tmp_path, cache, folds=["fold_0"]),
                    recipe=Recipe(descriptors=("chgnet",)))
    with pytest.raises(SystemExit) as exit_info:  # misspelt: one line, exit 2
        bench_main(["run", "--task", "synthetic_emt_alloys", "--features", "sevenet", "-q"])
    assert exit_info.value.code == 2
    assert "sevenet" in capsys.readouterr().err


def test_a_changed_descriptor_source_is_another_run_not_a_resumed_one(tmp_path, cache, monkeypatch):
    """An extra source's settings (a physics setting, say) change its info: the folds of the file
    written with the old one must be refitted, not copied into a result that names the new code."""
    from benchmarks.harness.recipe import Recipe

    recipe = Recipe(head="ridge", descriptors=("composition",), candidates="multi")
    config = small(tmp_path, cache, folds=["fold_0"])
    first = run_mod.run("synthetic_emt_alloys", "chgnet", config=config, recipe=recipe)
    assert [d["name"] for d in first["model"]["descriptors"]] == ["composition"]
    fits = []
    original = DepthSelector.fit
    monkeypatch.setattr(DepthSelector, "fit", lambda self, X, y: (fits.append(len(y)), original(self, X, y))[1])
    again = run_mod.run("synthetic_emt_alloys", "chgnet", config=config, recipe=recipe)
    assert fits == [] and again["resumed_from"]["folds"] == ["fold_0"]  # unchanged: resumed

    info = run_mod._source_info
    monkeypatch.setattr(run_mod, "_source_info", lambda source: {**info(source), "weights_sha256": "other settings"}
                        if source.name == "composition" else info(source))
    changed = run_mod.run("synthetic_emt_alloys", "chgnet", config=config, recipe=recipe)
    assert len(fits) == 1 and "resumed_from" not in changed
    assert changed["model"]["descriptors"][0]["weights_sha256"] == "other settings"
