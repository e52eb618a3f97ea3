"""AIMD Li diffusivity (Zheng et al., npj Comput Mater 2024; data on MPContribs).

Each row is a structure at one simulation temperature with its Li diffusivity. The temperature
is an extra feature appended to the embedding; the target is log10(D / cm^2 s^-1); scores are
MAE and R^2 on the linear scale (10**y), as the paper reports. Only Li-containing rows below
5000 K are used.

Layout (an export of the MPContribs project; no script can download it without an MPContribs
API key)::

    aimd_diffusivity/aimd_li_diffusivity.csv   columns: identifier, temperature, diffusivity, cif
    aimd_diffusivity/cifs/<file>.cif           ``cif`` paths are relative to the csv

``temperature`` in K, ``diffusivity`` in cm^2/s.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from hacknip_ase.errors import DataFormatError, DataNotFoundError, StructureParseError

from ..data import DataFile, locate
from .base import REGRESSION, Excluded, Task, TaskData, kfold_splits, regression_scores
from .superconductors import read_ordered_cif

SPLIT_SEED = 18012019
MAX_TEMPERATURE = 5000.0  #: K; hotter rows are melts, not the solid the structure describes
COLUMNS = ("identifier", "temperature", "diffusivity", "cif")
SOURCE = ("MPContribs project of Zheng et al., npj Comput. Mater. (2024), https://contribs.materialsproject.org "
          "(needs an MPContribs API key)")


class DiffusivityTask(Task):
    name = "aimd_li_diffusivity"
    family = "aimd"
    task_type = REGRESSION
    metrics = ("mae", "r2")
    split_description = f"5-fold 80/20 (KFold shuffle, seed {SPLIT_SEED})"
    literature_size = None  # the paper's count of Li rows below 5000 K could not be checked offline
    size_note = "structures not available offline; the shared feature_target.dat has no structures"

    @property
    def files(self) -> list[DataFile]:
        return [DataFile("aimd_diffusivity/aimd_li_diffusivity.csv", source=SOURCE)]

    def _table(self, data_dir):
        import pandas as pd

        path = locate(self.files[0], data_dir)
        table = pd.read_csv(path)
        missing = set(COLUMNS) - set(table.columns)
        if missing:
            raise DataFormatError(f"{path} lacks column(s) {sorted(missing)}; expected {COLUMNS}")
        return path, table

    def count(self, data_dir=None) -> int:
        return len(self.load(data_dir))  # small task: counting needs the structures (Li test)

    def load(self, data_dir=None, **options) -> TaskData:
        path, table = self._table(data_dir)
        ids, atoms, temperature, targets, excluded = [], [], [], [], []
        for i, row in enumerate(table.itertuples(index=False)):
            row_id = f"{row.identifier}@{row.temperature:g}K"
            cif = path.parent / str(row.cif)
            if not cif.is_file():
                raise DataNotFoundError(f"CIF {row.cif!r} of {path} not found (searched {cif}); source: {SOURCE}")
            if not row.temperature < MAX_TEMPERATURE:
                excluded.append(Excluded(row_id, "temperature", f"T = {row.temperature} K >= {MAX_TEMPERATURE} K"))
                continue
            if not (np.isfinite(row.diffusivity) and row.diffusivity > 0):
                excluded.append(Excluded(row_id, "target", f"log10 of diffusivity {row.diffusivity} is not finite"))
                continue
            try:
                structure, _ = read_ordered_cif(cif)
            except StructureParseError as exc:
                excluded.append(Excluded(row_id, "parse", str(exc)))
                continue
            if "Li" not in structure.get_chemical_symbols():
                excluded.append(Excluded(row_id, "composition", "structure holds no Li"))
                continue
            ids.append(row_id)
            atoms.append(structure)
            temperature.append(float(row.temperature))
            targets.append(float(np.log10(row.diffusivity)))
        return TaskData(ids=ids, inputs=atoms, targets=np.array(targets), target_names=("log10_diffusivity",),
                        features=np.array(temperature)[:, None], feature_names=("temperature_K",),
                        excluded=excluded)

    def splits(self, data: TaskData) -> Iterator:
        return kfold_splits(len(data), seed=SPLIT_SEED)

    def score(self, y_true, y_pred) -> dict[str, float]:
        """MAE and R^2 of the diffusivity itself (targets and predictions are log10)."""
        return regression_scores(10.0 ** np.asarray(y_true, float), 10.0 ** np.asarray(y_pred, float))


#: task name -> factory (the registry builds only the task asked for)
FACTORIES = {DiffusivityTask.name: DiffusivityTask}
