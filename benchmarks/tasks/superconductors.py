"""3DSC_MP superconducting critical temperature (Sommer et al., Sci. Data 10, 816 (2023)).

Structures come from the CIFs the csv points to; the target is ln(Tc/K), the scale the 3DSC
paper plots. The 3DSC_MP also lists non-superconductors with Tc = 0 K, whose ln is -inf:
they are reported in ``excluded`` and left out.

Doped 3DSC entries carry partial occupancies, which a NIP cannot take: each disordered site
becomes its majority species (the doped host structure); their number is given in ``notes``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hacknip_ase.errors import DataNotFoundError, StructureParseError

from ..data import DataFile, locate
from .base import REGRESSION, Excluded, Task, TaskData, kfold_splits

SPLIT_SEED = 18012019
_REPO = "https://raw.githubusercontent.com/aimat-lab/3DSC/main/superconductors_3D/data/final/MP/"


def _read_csv(path: Path):
    import pandas as pd

    table = pd.read_csv(path)
    missing = {"cif", "tc"} - set(table.columns)
    if missing:
        from hacknip_ase.errors import DataFormatError

        raise DataFormatError(f"{path} lacks column(s) {sorted(missing)} of the 3DSC_MP.csv layout")
    return table


def _cif_path(csv_path: Path, cif: str) -> Path:
    """CIF paths are relative to the csv; the official csv prefixes them with repo folders."""
    direct = csv_path.parent / cif
    return direct if direct.is_file() else csv_path.parent / "cifs" / Path(cif).name


def read_ordered_cif(path: Path):
    """``(Atoms, was_disordered)`` from a CIF, each partially occupied site set to its majority species."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns on rounded occupancies and symmetry
            structure = CifParser(path).parse_structures(primitive=False)[0]
    except Exception as exc:  # pymatgen's CIF parser raises many error types
        raise StructureParseError(f"cannot read CIF {path}: {exc}") from exc
    if structure.is_ordered:
        return AseAtomsAdaptor.get_atoms(structure), False
    species = [max(site.species.items(), key=lambda kv: kv[1])[0] for site in structure]
    ordered = Structure(structure.lattice, species, structure.frac_coords)
    return AseAtomsAdaptor.get_atoms(ordered), True


class SuperconductorTask(Task):
    name = "3dsc_mp"
    family = "3dsc"
    task_type = REGRESSION
    metrics = ("mae", "r2")
    split_description = f"5-fold 80/20 (KFold shuffle, seed {SPLIT_SEED})"
    literature_size = 5773
    size_note = "5773 entries; those with Tc = 0 K (ln Tc = -inf) are excluded"

    @property
    def files(self) -> list[DataFile]:
        # The CIFs ship next to the csv in the repository (and in the figshare 3DSC_MP.tar.gz).
        return [DataFile("3dsc/3DSC_MP.csv", url=_REPO + "3DSC_MP.csv",
                         source="https://doi.org/10.6084/m9.figshare.c.6914407.v1")]

    def count(self, data_dir=None) -> int:
        tc = _read_csv(locate(self.files[0], data_dir))["tc"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return int(np.isfinite(np.log(tc)).sum())

    def load(self, data_dir=None, **options) -> TaskData:
        csv_path = locate(self.files[0], data_dir)
        table = _read_csv(csv_path)
        ids, atoms, targets, excluded = [], [], [], []
        n_disordered = 0
        for i, (cif, tc) in enumerate(zip(table["cif"], table["tc"], strict=True)):
            row_id = f"3dsc-{i}"
            with np.errstate(divide="ignore", invalid="ignore"):
                y = float(np.log(tc))
            if not np.isfinite(y):
                excluded.append(Excluded(row_id, "target", f"ln(Tc) is not finite for Tc = {tc} K"))
                continue
            path = _cif_path(csv_path, str(cif))
            if not path.is_file():
                raise DataNotFoundError(f"CIF {cif!r} of {csv_path} not found (searched {path}); get the "
                                        f"3DSC_MP CIFs from {self.files[0].source} into {csv_path.parent / 'cifs'}")
            try:
                structure, disordered = read_ordered_cif(path)
            except StructureParseError as exc:
                excluded.append(Excluded(row_id, "parse", str(exc)))
                continue
            n_disordered += disordered
            ids.append(row_id)
            atoms.append(structure)
            targets.append(y)
        notes = [f"{n_disordered} structures had partially occupied sites, set to their majority species"]
        return TaskData(ids=ids, inputs=atoms, targets=np.array(targets), target_names=("ln_tc",),
                        excluded=excluded, notes=notes)

    def splits(self, data: TaskData) -> Iterator:
        return kfold_splits(len(data), seed=SPLIT_SEED)


def tasks() -> list[SuperconductorTask]:
    return [SuperconductorTask()]
