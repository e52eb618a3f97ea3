"""Task registry: ``get_task(name)`` -> :class:`Task`; ``TASKS`` lists every name.

Each family module maps its task names to factories (``FACTORIES``); ``get_task`` builds only
the task asked for. Typical use by the harness::

    task = get_task("matbench_jdft2d")
    data = task.load(data_dir)            # TaskData: ids, inputs, targets, features, excluded
    for split in task.splits(data):       # Split: train, test (row positions), name, seed
        ...fit on data.inputs[split.train], predict split.test...
        task.score(data.targets[split.test], y_pred)
"""

from __future__ import annotations

from collections.abc import Callable

from hacknip_ase.errors import UnknownTaskError

from . import diffusivity, electrolytes, matbench, moleculenet, superconductors, synthetic
from .base import CLASSIFICATION, REGRESSION, Excluded, Split, Task, TaskData

#: task name -> factory, in leaderboard order (families, then each family's own order)
_FACTORIES: dict[str, Callable[[], Task]] = {
    name: factory
    for module in (matbench, moleculenet, superconductors, diffusivity, electrolytes, synthetic)
    for name, factory in module.FACTORIES.items()
}
TASKS: tuple[str, ...] = tuple(_FACTORIES)


def get_task(name: str) -> Task:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
    return factory()


def all_tasks() -> list[Task]:
    """Every benchmark task, in leaderboard order."""
    return [factory() for factory in _FACTORIES.values()]


__all__ = ["CLASSIFICATION", "REGRESSION", "TASKS", "Excluded", "Split", "Task", "TaskData", "all_tasks", "get_task"]
