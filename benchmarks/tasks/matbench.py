"""Matbench v0.1 regression tasks with structures, through matbench's own objects.

The data file is read by the package's Matbench reader (:class:`hacknip_ase.readers.MatbenchFile`,
ids ``mb-<task>-<row>``); the loaded rows become the DataFrame of matbench's ``MatbenchTask``
(matbench's own downloader is never called), whose ``folds``, ``get_train_and_val_data`` and
``get_test_data`` give the official 5 folds (``matbench_v0.1_validation.json`` in the matbench
wheel). :func:`matbench_benchmark` builds the ``MatbenchBenchmark`` that records predictions
fold by fold and writes the ``results.json.gz`` matbench itself scores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache, partial
from pathlib import Path

import numpy as np

from hacknip_ase.errors import DataFormatError, StructureParseError

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
        from matbench.metadata import mbv01_metadata

        return mbv01_metadata[self.dataset].target

    @property
    def files(self) -> list[DataFile]:
        source = _matminer_sources()[self.dataset]
        return [DataFile(f"matbench/{self.dataset}.json.gz", url=source["url"], sha256=source["hash"])]

    def _reader(self, data_dir):
        from hacknip_ase.readers import MatbenchFile

        return MatbenchFile(locate(self.files[0], data_dir), task=self.short.replace("_", "-"))

    def count(self, data_dir=None) -> int:
        return len(self._reader(data_dir))

    def load(self, data_dir=None, **options) -> TaskData:
        import pandas as pd
        from matbench.constants import MBID_KEY

        reader = self._reader(data_dir)
        try:  # the reader parses the file once; its table also holds the target column
            columns = reader.columns
        except StructureParseError as exc:
            raise DataFormatError(str(exc)) from exc
        if self.target not in columns:
            raise DataFormatError(f"{reader.path} is not a Matbench file with columns structure and {self.target!r}")
        ids = matbench_ids(self.short, len(reader))
        official = matbench_task(self.dataset)
        expected = {i for fold in official.folds_keys for i in official.validation[fold].test}
        if set(ids) != expected:
            raise DataFormatError(
                f"{self.dataset}: {len(ids)} rows give ids that differ from matbench's official "
                f"{len(expected)} (is the file complete and in its original order?)"
            )
        atoms = [structure for _, structure in reader]  # in file order, ids as above
        targets = np.array(reader.column(self.target), dtype=float)
        frame = pd.DataFrame({official.metadata.input_type: atoms, self.target: targets},
                             index=pd.Index(ids, name=MBID_KEY))
        return TaskData(ids=ids, inputs=atoms, targets=targets, target_names=(self.target,),
                        meta={"matbench_df": frame})

    def splits(self, data: TaskData) -> Iterator[Split]:
        """matbench's folds (``MatbenchTask.folds``): ``train`` in row order, ``test`` in matbench's
        own test-id order (what ``record`` expects)."""
        official = matbench_task(self.dataset, data)
        position = {id_: i for i, id_ in enumerate(data.ids)}
        for fold in official.folds:
            train_ids = official.get_train_and_val_data(fold, as_type="df").index
            test_ids = official.get_test_data(fold, as_type="df").index
            train = np.sort(np.array([position[i] for i in train_ids]))
            yield Split(official.folds_map[fold], train, np.array([position[i] for i in test_ids]), seed=18012019)


def matbench_task(dataset: str, data: TaskData | None = None):
    """matbench's own ``MatbenchTask`` of ``dataset``; with ``data`` (the loaded task) its DataFrame
    is those rows, so ``get_*_data`` and ``record`` work offline."""
    import logging

    from matbench.task import MatbenchTask as Official

    logging.getLogger("matbench").setLevel(logging.ERROR)  # it logs every recorded fold
    task = Official(dataset, autoload=False)
    if data is not None:
        task.df = data.meta["matbench_df"]
    return task


def matbench_benchmark(data: Mapping[str, TaskData]):
    """A ``MatbenchBenchmark`` of the loaded Matbench tasks ``{task name: TaskData}``, each task's
    DataFrame set from the loaded rows (nothing downloaded): ready to ``record`` and ``to_file``."""
    import logging

    from matbench.bench import MatbenchBenchmark

    logging.getLogger("matbench").setLevel(logging.ERROR)
    benchmark = MatbenchBenchmark(autoload=False, subset=list(data))
    for name, loaded in data.items():
        benchmark.tasks_map[name].df = loaded.meta["matbench_df"]
    return benchmark


#: task name -> factory (the registry builds only the task asked for)
FACTORIES = {f"matbench_{short}": partial(MatbenchTask, short) for short in MATBENCH_SIZES}
