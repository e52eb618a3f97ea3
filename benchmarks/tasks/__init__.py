"""Task registry: ``get_task(name)`` -> :class:`Task`; ``TASKS`` lists every name.

Typical use by the harness::

    task = get_task("matbench_jdft2d")
    data = task.load(data_dir)            # TaskData: ids, inputs, targets, features, excluded
    for split in task.splits(data):       # Split: train, test (row positions), name, seed
        ...fit on data.inputs[split.train], predict split.test...
        task.score(data.targets[split.test], y_pred)
"""

from __future__ import annotations

from hacknip_ase.errors import UnknownTaskError

from . import diffusivity, electrolytes, matbench, moleculenet, superconductors, synthetic
from .base import CLASSIFICATION, REGRESSION, Excluded, Split, Task, TaskData

_MODULES = (matbench, moleculenet, superconductors, diffusivity, electrolytes, synthetic)


def all_tasks() -> list[Task]:
    """Every benchmark task, in leaderboard order."""
    return [task for module in _MODULES for task in module.tasks()]


TASKS: tuple[str, ...] = tuple(task.name for task in all_tasks())


def get_task(name: str) -> Task:
    for task in all_tasks():
        if task.name == name:
            return task
    raise UnknownTaskError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")


__all__ = ["CLASSIFICATION", "REGRESSION", "TASKS", "Excluded", "Split", "Task", "TaskData", "all_tasks", "get_task"]
