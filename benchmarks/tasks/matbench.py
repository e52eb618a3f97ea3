"""Matbench v0.1 regression tasks with structures, on matbench's official 5 folds.

Fold ids come from ``matbench_v0.1_validation.json`` shipped inside the ``matbench``
package; predictions are recorded through matbench's own ``MatbenchBenchmark`` so the
``results.json.gz`` we write is scored by matbench itself.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Mapping
from functools import cache, partial
from pathlib import Path

import numpy as np

from hacknip_ase.errors import DataFormatError

from ..data import DataFile, locate
from .base import REGRESSION, Split, Task, TaskData

#: short name -> published size (Dunn et al., npj Comput Mater 6, 138 (2020)).
MATBENCH_SIZES = {
    "jdft2d": 636, "phonons": 1265, "dielectric": 4764, "log_gvrh": 10987, "log_kvrh": 10987,
    "perovskites": 18928, "mp_gap": 106113, "mp_e_form": 132752,
}
#: the tasks whose data ships offline (the two large MP tasks do not): the six-task score's tasks
OFFLINE_TASKS = tuple(f"matbench_{short}" for short in ("jdft2d", "phonons", "dielectric", "log_gvrh", "log_kvrh",
                                                          "perovskites"))


@cache
def _matbench_metadata() -> tuple[dict, dict]:
    """(matbench v0.1 task metadata, official validation splits), both from the matbench wheel."""
    import matbench

    root = Path(matbench.__file__).parent
    meta = json.loads((root / "matbench_v0.1_dataset_metadata.json").read_text())
    splits = json.loads((root / "matbench_v0.1_validation.json").read_text())["splits"]
    return meta, splits


@cache
def _matminer_sources() -> dict:
    """Official URLs and sha256 of the Matbench files (matminer's dataset_metadata.json)."""
    import matminer.datasets

    return json.loads((Path(matminer.datasets.__file__).parent / "dataset_metadata.json").read_text())


def matbench_ids(short: str, n: int) -> list[str]:
    """Matbench's row ids: ``mb-<task>-<i+1>`` zero-padded to the digits of ``n``."""
    width = len(str(n))
    return [f"mb-{short.replace('_', '-')}-{i + 1:0{width}d}" for i in range(n)]


class MatbenchTask(Task):
    family = "matbench"
    task_type = REGRESSION
    metrics = ("mae", "rmse", "r2")
    split_description = "matbench v0.1 official 5-fold (KFold shuffle, seed 18012019)"

    def __init__(self, short: str) -> None:
        self.short = short
        self.dataset = f"matbench_{short}"
        self.name = f"matbench_{short}"
        self.literature_size = MATBENCH_SIZES[short]

    @property
    def target(self) -> str:
        return _matbench_metadata()[0][self.dataset]["target"]

    @property
    def files(self) -> list[DataFile]:
        source = _matminer_sources()[self.dataset]
        return [DataFile(f"matbench/{self.dataset}.json.gz", url=source["url"], sha256=source["hash"])]

    def _read(self, data_dir) -> dict:
        path = locate(self.files[0], data_dir)
        with gzip.open(path, "rt") as handle:
            table = json.load(handle)
        if not {"columns", "data"} <= set(table) or self.target not in table["columns"] \
                or "structure" not in table["columns"]:
            raise DataFormatError(f"{path} is not a Matbench file with columns structure and {self.target!r}")
        return table

    def count(self, data_dir=None) -> int:
        return len(self._read(data_dir)["data"])

    def load(self, data_dir=None, **options) -> TaskData:
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        table = self._read(data_dir)
        s_col, t_col = table["columns"].index("structure"), table["columns"].index(self.target)
        rows = table["data"]
        ids = matbench_ids(self.short, len(rows))
        official = _matbench_metadata()[1][self.dataset]
        fold_ids = {fold: part["test"] for fold, part in official.items()}
        expected = {i for test in fold_ids.values() for i in test}
        if set(ids) != expected:
            raise DataFormatError(
                f"{self.dataset}: {len(rows)} rows give ids that differ from matbench's official "
                f"{len(expected)} (is the file complete and in its original order?)"
            )
        atoms = [AseAtomsAdaptor.get_atoms(Structure.from_dict(row[s_col])) for row in rows]
        targets = np.array([row[t_col] for row in rows], dtype=float)
        return TaskData(ids=ids, inputs=atoms, targets=targets, target_names=(self.target,),
                        meta={"matbench_test_ids": fold_ids})

    def splits(self, data: TaskData) -> Iterator[Split]:
        """Matbench's folds; ``test`` is in matbench's own test-id order (what ``record`` expects)."""
        position = {id_: i for i, id_ in enumerate(data.ids)}
        for fold, test_ids in data.meta["matbench_test_ids"].items():
            test = np.array([position[i] for i in test_ids])
            mask = np.ones(len(data), bool)
            mask[test] = False
            yield Split(fold, np.flatnonzero(mask), test, seed=18012019)


def write_matbench_results(path: str | os.PathLike, predictions: Mapping[str, Mapping[str, np.ndarray]],
                           data: Mapping[str, TaskData], *, params: Mapping | None = None) -> Path:
    """Record predictions in matbench's ``MatbenchBenchmark`` and write its ``results.json.gz``.

    ``predictions[task_name][fold_name]`` are the test predictions of that fold in the order of
    ``Split.test``; ``data[task_name]`` is the loaded task. Returns the file written.
    """
    import pandas as pd
    from matbench.bench import MatbenchBenchmark

    datasets = {name: name for name in predictions}
    benchmark = MatbenchBenchmark(autoload=False, subset=list(datasets))
    for name, per_fold in predictions.items():
        task, loaded = benchmark.tasks_map[name], data[name]
        # matbench only looks targets up by id; the input column is not needed to score.
        task.df = pd.DataFrame({loaded.target_names[0]: loaded.targets,
                                "structure": list(loaded.inputs)}, index=pd.Index(loaded.ids))
        for fold_number in task.folds:
            fold = task.folds_map[fold_number]
            task.record(fold_number, np.asarray(per_fold[fold], dtype=float),
                        params=dict(params or {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    benchmark.to_file(str(path))
    return path


#: task name -> factory (the registry builds only the task asked for)
FACTORIES = {f"matbench_{short}": partial(MatbenchTask, short) for short in MATBENCH_SIZES}
