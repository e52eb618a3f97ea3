"""matbench's own record of a run: every fold ``record``ed as it finishes, scored by matbench.

A Matbench run (frozen heads, fine-tuning) or a submission opens a :class:`MatbenchRecord` on
the loaded tasks; each finished fold goes to ``MatbenchTask.record``, whose scores (matbench's
``score_array``) are the fold's MAE and RMSE in the result file; when every fold of every task
is recorded, :meth:`MatbenchRecord.write` writes matbench's ``results.json.gz``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def matbench_results_path(result_file: str | os.PathLike) -> Path:
    """``<task>/<row>.json`` -> ``<task>/<row>.matbench.json.gz`` (next to the result file)."""
    result_file = Path(result_file)
    return result_file.with_name(result_file.stem + ".matbench.json.gz")


class MatbenchRecord:
    """A ``MatbenchBenchmark`` over loaded tasks ``{task name: TaskData}``, recorded fold by fold."""

    def __init__(self, data: Mapping, params: Mapping | None = None) -> None:
        from ..tasks.matbench import matbench_benchmark

        self.benchmark = matbench_benchmark(data)
        self.params = dict(params or {})

    def record(self, task_name: str, fold_name: str, ids: Sequence[str], y_pred) -> dict[str, float]:
        """Record one fold's test predictions (``ids[k]`` is predicted ``y_pred[k]``, any order);
        returns matbench's scores of the fold (mae, rmse, mape, max_error)."""
        task = self.benchmark.tasks_map[task_name]
        by_id = dict(zip(ids, np.asarray(y_pred, dtype=float).tolist(), strict=True))
        test_ids = task.validation[fold_name].test
        task.record(task.folds_keys.index(fold_name), [by_id[i] for i in test_ids], params=self.params)
        return {name: float(value) for name, value in task.results[fold_name].scores.items()}

    def record_folds(self, task_name: str, folds: Sequence[Mapping]) -> None:
        """Record folds already in a result record (``name``, ``ids``, ``y_pred``): a resumed run."""
        for fold in folds:
            self.record(task_name, fold["name"], fold["ids"], fold["y_pred"])

    @property
    def complete(self) -> bool:
        return all(task.all_folds_recorded for task in self.benchmark.tasks_map.values())

    def write(self, path: str | os.PathLike) -> Path:
        """matbench's ``results.json.gz`` of every recorded task (all folds must be recorded)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.benchmark.to_file(str(path))
        return path


def with_matbench_scores(metrics: Mapping[str, float], scores: Mapping[str, float]) -> dict[str, float]:
    """A fold's metrics with matbench's own value wherever matbench scores the same metric."""
    return {name: scores.get(name, value) for name, value in metrics.items()}
