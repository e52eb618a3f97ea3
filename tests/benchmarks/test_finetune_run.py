"""Fine-tuning runs through the harness format, and the data-efficiency driver, on the generated
EMT alloy task (10 cells: 8 train / 2 test per fold; one epoch per fine-tune so the file runs in
about a minute on a loaded 2-core CPU)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.cli import main as bench_main
from benchmarks.harness import efficiency
from benchmarks.harness import finetune_run as ft
from benchmarks.harness import subsets
from benchmarks.harness.config import FinetuneOptions, RunConfig
from benchmarks.harness.finetune import FineTuner
from benchmarks.harness.results import iter_results, read_result, result_path
from benchmarks.report.efficiency import make_figures
from benchmarks.report.leaderboard import render
from tests.benchmarks.test_leaderboard import write_published_leaderboard

TASK = "synthetic_emt_alloys"
N = 10
TINY = FinetuneOptions(max_epochs=1, patience=1, train_batch_size=8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """`hacknip-bench finetune` on fold 0 only: one real (one-epoch) CHGNet fine-tune."""
    results = tmp_path_factory.mktemp("results")
    code = bench_main(["finetune", "--task", TASK, "--limit", str(N), "--max-epochs", "1", "--patience", "1",
                       "--batch-size", "8", "--folds", "0", "--results-dir", str(results), "--quiet"])
    assert code == 0
    return results, result_path(results, TASK, "chgnet", "finetune")


def test_finetune_writes_a_result_the_leaderboard_reads(finetuned, tmp_path):
    results, path = finetuned
    record = read_result(path)
    assert [p for p, _ in iter_results(results)] == [path]
    assert record["model"]["kind"] == "finetune" and record["model"]["head"] == "finetune"
    # one of five folds: the run must not pass for a finished 5-fold result
    assert record["status"] == "partial" and [f["name"] for f in record["folds"]] == ["fold_0"]
    fold = record["folds"][0]
    assert fold["n_train"] == N - 2 and fold["n_test"] == len(fold["y_pred"]) == 2
    assert fold["metrics"]["mae"] == pytest.approx(np.mean(np.abs(np.subtract(fold["y_true"], fold["y_pred"]))))
    assert fold["training"]["n_epochs"] == 1 and len(fold["training"]["history"]) == 2
    assert fold["seconds"]["fit"] > 0 and fold["seconds"]["total"] >= fold["seconds"]["fit"]
    assert fold["update_ratios"]["head"]["n"] == 128 + 128 + 1 and fold["update_ratios"]["backbone"]["n"] > 0
    assert record["model"]["deviations"] == {"max_epochs": {"used": 1, "recipe": 200},
                                             "patience": {"used": 1, "recipe": 20},
                                             "batch_size": {"used": 8, "recipe": 32}}
    assert record["seeds"]["finetune"] == 0 and record["timing"]["total"] > 0
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    data = tmp_path / "data" / "matbench"
    data.mkdir(parents=True)
    (data / "matbench_jdft2d.json.gz").touch()  # the renderer only checks that task files exist
    write_published_leaderboard(tmp_path / "data")
    out = render(results, tmp_path / "README.md", data_dir=tmp_path / "data", figures=False, suite=None)
    text = out.read_text()
    assert "HackNIP chgnet 0.3.0 + finetune (partial: 1 folds)" in text  # the embedding tables' row
    assert "## Fine-tuning baseline" in text and "max_epochs 1 (recipe 200)" in text


def test_resume_skips_finished_folds(finetuned, monkeypatch):
    results, path = finetuned
    before = read_result(path)["folds"]

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished fold was fitted again")

    monkeypatch.setattr(FineTuner, "fit", no_fit)
    config = RunConfig(results_dir=results, limit=N, folds=["fold_0"], progress=False)
    record = ft.run_finetune(TASK, "chgnet", config, options=TINY)
    assert record["folds"] == before and record["resumed_from"]["folds"] == ["fold_0"]
    # another recipe is another identity: the finished fold is not reused
    with pytest.raises(AssertionError, match="fitted again"):
        ft.run_finetune(TASK, "chgnet", config, options=replace(TINY, max_epochs=2))


def test_training_subset_is_deterministic_and_from_training_rows():
    train = np.arange(1000, 1900, 3)  # 300 training rows
    a = subsets.training_subset(train, 0.1, seed=4)
    assert np.array_equal(a, subsets.training_subset(train, 0.1, seed=4))
    assert len(a) == 30 and set(a) <= set(train) and len(set(a)) == 30
    assert not np.array_equal(a, subsets.training_subset(train, 0.1, seed=5))
    small, large = subsets.training_subset(train, 0.01, seed=4), subsets.training_subset(train, 0.5, seed=4)
    assert len(small) == subsets.MIN_SUBSET and set(small) <= set(a) <= set(large)  # nested for one seed
    assert np.array_equal(subsets.training_subset(train, 1.0, seed=None), train)
    with pytest.raises(ValueError):
        subsets.training_subset(train, 0.1, seed=None)
    test = np.arange(50)
    assert np.array_equal(subsets.test_subset(test, 20), subsets.test_subset(test, 20)) and len(subsets.test_subset(test, 20)) == 20


def test_crossover_is_the_first_size_where_embeddings_stop_winning():
    def pts(values):
        return {f: {"mean": v, "n_train": f * 1000} for f, v in values.items()}

    points = {"frozen_xgboost": pts({0.01: 1.0, 0.1: 0.8, 1.0: 0.6}), "finetune": pts({0.01: 1.5, 0.1: 0.8, 1.0: 0.5})}
    assert efficiency.crossover(points, "frozen_xgboost")["fraction"] == 0.1
    points["finetune"] = pts({0.01: 1.5, 0.1: 0.9})
    result = efficiency.crossover(points, "frozen_xgboost")
    assert result["fraction"] is None and result["compared"] == [0.01, 0.1] and "no crossover" in result["text"]


def test_efficiency_study_writes_runs_and_figures(tmp_path, cache):
    config = RunConfig(results_dir=tmp_path / "results", cache_dir=cache, limit=N, progress=False)
    study = efficiency.StudyPlan(fractions=[0.5, 1.0], finetune_fractions=[0.5], subset_seeds=[0], head="ridge")
    summary = efficiency.run_study(TASK, "chgnet", config, study=study, finetune=TINY)
    report = make_figures(TASK, "chgnet", results_dir=tmp_path / "results", figures_dir=tmp_path / "figures")
    assert summary["points"] == report["points"] and summary["crossover"] == report["crossover"]
    folder = tmp_path / "results" / TASK / "efficiency"
    names = sorted(p.name for p in folder.glob("*.json"))
    assert names == ["finetune__f0.5__s0.json", "frozen_ridge__f0.5__s0.json", "frozen_ridge__f1__s0.json"]
    frozen = read_result(folder / "frozen_ridge__f0.5__s0.json")
    tuned = read_result(folder / "finetune__f0.5__s0.json")
    # both approaches saw the same training subset and the same test rows
    assert frozen["folds"][0]["train_ids"] == tuned["folds"][0]["train_ids"]
    assert len(frozen["folds"][0]["train_ids"]) == subsets.MIN_SUBSET and frozen["folds"][0]["ids"] == tuned["folds"][0]["ids"]
    assert frozen["task"]["subset"]["subset_seed"] == 0 and frozen["status"] == "complete"
    assert report["points"]["frozen_ridge"][1.0]["n_train"] == N - 2
    assert report["crossover"]["compared"] == [0.5]
    for name in ("mae_vs_size", "update_ratios"):
        with open(report["figures"][name], "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # the study's files stay out of the leaderboard's per-task tables
    assert iter_results(tmp_path / "results") == []


def test_epoch_bar_continues_a_resumed_run_at_its_checkpoint():
    from types import SimpleNamespace

    from benchmarks.harness.finetune_run import _EpochBar

    bar = _EpochBar(200, "fold_0", enabled=True)
    bar(SimpleNamespace(resumed_from_=35), {"epoch": 36, "val_mae": 1.0})
    assert bar.bar.n == 36 and bar.bar.initial == 35
    fresh = _EpochBar(200, "fold_1", enabled=True)
    fresh(SimpleNamespace(resumed_from_=None), {"epoch": 0, "val_mae": 2.0})
    fresh(SimpleNamespace(resumed_from_=None), {"epoch": 1, "val_mae": 1.5})
    assert fresh.bar.n == 1
