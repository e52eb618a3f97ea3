"""The depth analysis's measures on data with known answers."""

import numpy as np
import pytest

from benchmarks.harness.results import SCHEMA, SCHEMA_VERSION, write_json_atomic
from benchmarks.report.analysis import (
    best_depth,
    collapse,
    collect,
    depth_errors,
    feature_jsd,
    jensen_shannon,
    normalized_errors,
)


def test_normalized_errors_are_zero_at_the_best_depth_and_one_at_the_worst():
    np.testing.assert_allclose(normalized_errors([3.0, 1.0, 2.0, 5.0]), [0.5, 0.0, 0.25, 1.0])
    np.testing.assert_array_equal(normalized_errors([2.0, 2.0]), [0.0, 0.0])


def test_jsd_is_zero_for_identical_and_one_bit_for_disjoint_distributions():
    assert jensen_shannon([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon([1, 1, 0, 0], [0, 0, 5, 5]) == pytest.approx(1.0)
    partial = jensen_shannon([1, 1, 0], [0, 1, 1])
    assert 0 < partial < 1 and partial == pytest.approx(jensen_shannon([0, 1, 1], [1, 1, 0]))  # symmetric


def test_feature_jsd_per_channel():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 3))
    assert feature_jsd(a, a.copy()) == pytest.approx(0.0, abs=1e-12)
    assert feature_jsd(a, a + 100.0) == pytest.approx(1.0)  # every channel moved far away
    shifted = feature_jsd(a, a + 0.5)
    assert 0.02 < shifted < 0.5
    assert feature_jsd(np.ones((10, 2)), np.ones((10, 2))) == 0.0


def test_collapse_counts_effective_dimensions():
    rng = np.random.default_rng(1)
    isotropic = rng.normal(size=(20000, 8))
    assert collapse(isotropic)["participation_ratio"] == pytest.approx(8, rel=0.02)
    assert collapse(isotropic)["top2_variance"] == pytest.approx(0.25, rel=0.05)
    line = rng.normal(size=(500, 1)) * np.arange(1, 9)  # rank one
    assert collapse(line)["participation_ratio"] == pytest.approx(1.0)
    assert collapse(line)["top2_variance"] == pytest.approx(1.0)


def _record(task_type, curves, best):
    def curve(scores):
        return [{"candidate": [[0, d]], "score": s} for d, s in enumerate(scores)]

    return {"task": {"task_type": task_type}, "folds": [{"selection_curve": curve(c), "best_depths": b}
                                                         for c, b in zip(curves, best, strict=True)]}


def test_depth_errors_and_best_depth_from_result_records():
    regression = _record("regression", [[-3.0, -1.0, -2.0], [-5.0, -1.0, -3.0]], [[1], [1]])
    np.testing.assert_allclose(depth_errors(regression), [4.0, 1.0, 2.5])  # scores are -MAE
    classification = _record("classification", [[0.7, 0.9], [0.8, 0.6]], [[1], [0]])
    np.testing.assert_allclose(depth_errors(classification), [0.25, 0.25])  # 1 - ROC-AUC
    assert best_depth(classification) == 0  # a tie goes to the shallower depth
    assert best_depth(_record("regression", [[0, 0]] * 3, [[1], [0], [1]])) == 1


def test_collect_takes_the_nip_rows_of_the_analysis_head_only(tmp_path):
    def result(task, backbone, head="xgboost", status="complete"):
        path = tmp_path / task / f"{backbone}__{head}.json"
        path.parent.mkdir(exist_ok=True)
        write_json_atomic(path, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "task": {"name": task},
                                 "status": status, "folds": [],
                                 "model": {"kind": "frozen", "head": head, "backbone": {"name": backbone}}})

    result("matbench_jdft2d", "chgnet")
    result("matbench_jdft2d", "composition")  # a baseline without depths
    result("matbench_jdft2d", "chgnet", head="mlp")
    result("bace", "sevennet", status="partial")
    assert {b: sorted(t) for b, t in collect(tmp_path).items()} == {"chgnet": ["matbench_jdft2d"]}
