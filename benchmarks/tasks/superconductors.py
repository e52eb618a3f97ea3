"""3DSC_MP superconducting critical temperature (Sommer et al., Sci. Data 10, 816 (2023)).

Structures come from the CIFs the csv points to; the target is ln(Tc/K), the scale the 3DSC
paper plots. The 3DSC_MP also lists non-superconductors with Tc = 0 K, whose ln is -inf:
they are reported in ``excluded`` and left out.

Doped 3DSC entries carry partial occupancies, which a NIP cannot take. With the ``majority``
policy (the default) each partially occupied site becomes its majority species, so a doped
variant becomes its Materials Project host structure; how many sites were reduced, and to
what, is given in ``notes`` and ``meta["partial_occupancy"]`` and warned about. The ``error``
policy raises :class:`~hacknip_ase.errors.PartialOccupancyError` instead.

Because doped variants collapse onto their host, random folds put identical inputs on both
sides of a split. ``3dsc_mp`` therefore keeps all rows of one Materials Project host (the
``mp-NNN`` / ``mvc-NNN`` id in the CIF name) on one side (grouped 5-fold); ``3dsc_mp_random``
keeps the random 80/20 folds of the 3DSC paper for comparison. Both report the MAE on the
test rows whose host is absent from training (``mae_unseen_host``, ``n_unseen_host``).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from hacknip_ase.errors import DataFormatError, DataNotFoundError, PartialOccupancyError, StructureParseError

from ..data import DataFile, locate
from .base import REGRESSION, Excluded, Split, Task, TaskData, kfold_splits, regression_scores

SPLIT_SEED = 18012019
POLICIES = ("majority", "error")
#: Materials Project id of the host structure in a 3DSC CIF name ("...-MP-mp-978986-synth_doped.cif")
_HOST = re.compile(r"-MP-((?:mp|mvc)-\d+)(?:-|\.cif$)")
_REPO = "https://raw.githubusercontent.com/aimat-lab/3DSC/main/superconductors_3D/data/final/MP/"


def _read_csv(path: Path):
    import pandas as pd

    table = pd.read_csv(path)
    missing = {"cif", "tc"} - set(table.columns)
    if missing:
        raise DataFormatError(f"{path} lacks column(s) {sorted(missing)} of the 3DSC_MP.csv layout")
    return table


def _cif_path(csv_path: Path, cif: str) -> Path:
    """CIF paths are relative to the csv; the official csv prefixes them with repo folders."""
    direct = csv_path.parent / cif
    return direct if direct.is_file() else csv_path.parent / "cifs" / Path(cif).name


def host_id(cif: str) -> str:
    """Materials Project id of the host structure named in a 3DSC CIF path."""
    match = _HOST.search(Path(cif).name)
    if match is None:
        raise DataFormatError(f"CIF name {cif!r} holds no Materials Project host id ('-MP-mp-NNN')")
    return match.group(1)


def read_ordered_cif(path: Path, policy: str = "majority"):
    """``(Atoms, reductions)`` from a CIF; ``reductions`` lists ``(site species, species kept)``
    for every partially occupied site, set to its majority species (``policy="majority"``)."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifParser

    if policy not in POLICIES:
        from hacknip_ase.errors import InvalidOptionError

        raise InvalidOptionError(f"partial occupancy policy must be one of {POLICIES}, got {policy!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns on rounded occupancies and symmetry
            structure = CifParser(path).parse_structures(primitive=False)[0]
    except Exception as exc:  # pymatgen's CIF parser raises many error types
        raise StructureParseError(f"cannot read CIF {path}: {exc}") from exc
    if structure.is_ordered:
        return AseAtomsAdaptor.get_atoms(structure), []
    partial = [site for site in structure if not site.is_ordered]
    if policy == "error":
        example = "".join(f"{sp}{occ:g}" for sp, occ in sorted(partial[0].species.items(), key=lambda kv: -kv[1]))
        raise PartialOccupancyError(f"{path}: {len(partial)} partially occupied site(s), e.g. {example}; "
                                    "policy 'error' does not reduce them")
    species = [max(site.species.items(), key=lambda kv: kv[1])[0] for site in structure]
    reductions = []
    for site in partial:
        occupancies = sorted(site.species.items(), key=lambda kv: -kv[1])  # majority first: "Pd0.9Ag0.1"
        reductions.append(("".join(f"{sp}{occ:g}" for sp, occ in occupancies), str(occupancies[0][0])))
    ordered = Structure(structure.lattice, species, structure.frac_coords)
    return AseAtomsAdaptor.get_atoms(ordered), reductions


def _occupancy_note(reductions: dict[str, list], policy: str) -> str:
    n_sites = sum(map(len, reductions.values()))
    common = Counter(f"{site} -> {kept}" for rows in reductions.values() for site, kept in rows).most_common(8)
    return (f"partial occupancy (policy {policy!r}): {len(reductions)} structures had {n_sites} partially "
            f"occupied sites, each set to its majority species; most frequent: "
            + ", ".join(f"{pattern} ({n})" for pattern, n in common))


class SuperconductorTask(Task):
    """3DSC_MP with grouped folds (``grouped=True``: no host on both sides) or random folds."""

    family = "3dsc"
    task_type = REGRESSION
    metrics = ("mae", "mae_unseen_host", "n_unseen_host", "r2")
    literature_size = 5773
    size_note = "5773 entries; those with Tc = 0 K (ln Tc = -inf) are excluded"

    def __init__(self, name: str, grouped: bool) -> None:
        self.name, self.grouped = name, grouped
        scheme = (f"grouped 5-fold by Materials Project host (GroupKFold shuffle, seed {SPLIT_SEED})" if grouped
                  else f"random 5-fold 80/20 as in the 3DSC paper (KFold shuffle, seed {SPLIT_SEED})")
        self.split_description = f"{scheme}; ± over the 5 folds"

    @property
    def files(self) -> list[DataFile]:
        # The CIFs ship next to the csv in the repository (and in the figshare 3DSC_MP.tar.gz).
        return [DataFile("3dsc/3DSC_MP.csv", url=_REPO + "3DSC_MP.csv",
                         source="https://doi.org/10.6084/m9.figshare.c.6914407.v1")]

    def count(self, data_dir=None) -> int:
        tc = _read_csv(locate(self.files[0], data_dir))["tc"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return int(np.isfinite(np.log(tc)).sum())

    def load(self, data_dir=None, *, partial_occupancy: str = "majority", **options) -> TaskData:
        csv_path = locate(self.files[0], data_dir)
        table = _read_csv(csv_path)
        ids, atoms, targets, hosts, excluded = [], [], [], [], []
        reductions: dict[str, list] = {}
        for i, (cif, tc) in enumerate(zip(table["cif"], table["tc"], strict=True)):
            row_id = f"3dsc-{i}"
            with np.errstate(divide="ignore", invalid="ignore"):
                y = float(np.log(tc))
            if not np.isfinite(y):
                excluded.append(Excluded(row_id, "target", f"ln(Tc) is not finite for Tc = {tc} K"))
                continue
            host = host_id(str(cif))
            path = _cif_path(csv_path, str(cif))
            if not path.is_file():
                raise DataNotFoundError(f"CIF {cif!r} of {csv_path} not found (searched {path}); get the "
                                        f"3DSC_MP CIFs from {self.files[0].source} into {csv_path.parent / 'cifs'}")
            try:
                structure, reduced = read_ordered_cif(path, partial_occupancy)
            except StructureParseError as exc:
                excluded.append(Excluded(row_id, "parse", str(exc)))
                continue
            if reduced:
                reductions[row_id] = reduced
            ids.append(row_id)
            atoms.append(structure)
            targets.append(y)
            hosts.append(host)
        notes = [f"{len(ids)} rows from {len(set(hosts))} Materials Project host structures"]
        if reductions:
            notes.append(_occupancy_note(reductions, partial_occupancy))
            warnings.warn(notes[-1], stacklevel=2)
        return TaskData(ids=ids, inputs=atoms, targets=np.array(targets), target_names=("ln_tc",),
                        excluded=excluded, notes=notes,
                        meta={"host_ids": hosts, "partial_occupancy": reductions})

    def splits(self, data: TaskData) -> Iterator[Split]:
        if not self.grouped:
            return kfold_splits(len(data), seed=SPLIT_SEED)
        return grouped_kfold_splits(data.meta["host_ids"], seed=SPLIT_SEED)

    def score_split(self, data: TaskData, split: Split, y_pred) -> dict[str, float]:
        """The task's metrics plus the MAE on test rows whose host has no row in training."""
        scores = super().score_split(data, split, y_pred)
        hosts = np.asarray(data.meta["host_ids"])
        unseen = ~np.isin(hosts[split.test], hosts[split.train])
        y_true = np.asarray(data.targets)[split.test]
        scores["n_unseen_host"] = int(unseen.sum())
        scores["mae_unseen_host"] = (regression_scores(y_true[unseen], np.asarray(y_pred)[unseen])["mae"]
                                     if unseen.any() else float("nan"))
        return scores


def grouped_kfold_splits(groups, *, n_splits: int = 5, seed: int) -> Iterator[Split]:
    """Shuffled group k-fold: every row of one group (host) lands in the same test fold."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    splitter = GroupKFold(n_splits, shuffle=True, random_state=seed)
    for k, (train, test) in enumerate(splitter.split(np.arange(len(groups)), groups=groups)):
        yield Split(f"fold_{k}", train, test, seed=seed)


#: task name -> factory (the registry builds only the task asked for)
FACTORIES = {"3dsc_mp": partial(SuperconductorTask, "3dsc_mp", grouped=True),
             "3dsc_mp_random": partial(SuperconductorTask, "3dsc_mp_random", grouped=False)}
