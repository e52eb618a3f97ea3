"""Coulombic efficiency of Li-metal electrolytes (Kim et al., PNAS 120, e2214357120 (2023), Dataset S1).

Each electrolyte is a mixture ``{molecule_id: mol/L}``; its descriptor is the concentration-
weighted sum of per-molecule embeddings (:func:`mixture_embeddings`). Molecules are built from
the sheet's SMILES like MoleculeNet's (:mod:`hacknip_ase.molecules`). Target: -log10(1 - CE).

Reading a formulation. Sheet "Dataset" gives, per row, solvent volume fractions (C-E), solvent
mol/L (F-H), salt mol/L (I-K) and CE (%) in column Y, but names the components only in the
formulation text (column B). Solvent columns are identified by their implied pure-solvent
molarity (mol/L / volume fraction), matched within 2 % against the molecules the text names;
their concentration is then volume fraction x 1000 density / MW from sheet "Molecular
Database". Salt columns are matched to the salts (and other molecules given as "x M ...")
the text names: by equal molarity when the text gives one, else in text order. Rows are
excluded, with the reason, when the sheet gives no volume fractions (molar-ratio-only rows),
when a column matches no named molecule or two, or when the counts disagree.

SMILES corrections (sheet "Molecular Database"): LiFSI's SMILES in the sheet is LiTFSI's; we use
``[Li+].FS(=O)(=O)[N-]S(=O)(=O)F``. ``[LI+]`` (LiTFPFB, LiBF4) is read as ``[Li+]``, which RDKit
needs to parse it at all. Other suspicious entries are kept as published (see README).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from hacknip_ase.errors import DataFormatError, InvalidStructureError

from ..data import DataFile, locate
from .base import REGRESSION, Excluded, Split, Task, TaskData, kfold_splits
from hacknip_ase.molecules import RelaxSettings, build_molecules, parse_smiles

#: Seeds of the five repeats of 5-fold CV: every row is tested once per repeat.
SEEDS = (0, 1, 2, 3, 4)
N_FOLDS = 5
#: Relative tolerance when matching an implied solvent molarity to the database.
MOLARITY_TOLERANCE = 0.02
URL = "https://www.pnas.org/doi/suppl/10.1073/pnas.2214357120/suppl_file/pnas.2214357120.sd01.xlsx"
#: name -> corrected SMILES
SMILES_CORRECTIONS = {
    "LiFSI": "[Li+].FS(=O)(=O)[N-]S(=O)(=O)F",  # the sheet repeats LiTFSI's SMILES
}
#: Names in formulations that are not the database's abbreviation.
ALIASES = {"DEE": ("Diethyl ether", "Diethoxyethane"), "TEGDME": ("Tetraglyme",), "CH3F": ("FM",),
           "MeTHF": ("MTHF",), "LiFNSI": ("LiFNFSI",)}  # LiFNSI: spelling in one formulation of the database's LiFNFSI

_DATASET, _MOLECULES = "Dataset", "Molecular Database"
_FIRST_ROW = 2  # 0-based sheet row of the first electrolyte (two header rows)
_NAME, _VOL, _SOLV, _SALT, _CE = 1, slice(2, 5), slice(5, 8), slice(8, 11), 24


@dataclass(frozen=True)
class Molecule:
    name: str
    smiles: str
    molarity: float | None = None  #: pure-liquid mol/L (solvents), 1000 density / MW
    salt: bool = False


def read_workbook(path) -> tuple[list[tuple], dict[str, Molecule]]:
    """Rows of sheet "Dataset" and the molecules of sheet "Molecular Database" by name."""
    import pandas as pd

    try:
        sheets = pd.read_excel(path, sheet_name=[_DATASET, _MOLECULES], header=None)
    except ValueError as exc:
        raise DataFormatError(f"{path} lacks sheet {_DATASET!r} or {_MOLECULES!r}: {exc}") from exc
    rows = [tuple(None if _isnan(v) else v for v in r) for r in sheets[_DATASET].itertuples(index=False)]
    molecules, header, salt = {}, None, False
    for raw in sheets[_MOLECULES].itertuples(index=False):
        cells = [None if _isnan(v) else v for v in raw]
        label = str(cells[1]).strip() if cells[1] is not None else None
        if label in ("Solvent", "Salt") and "SMILES" in cells:
            header, salt = {str(c).strip(): k for k, c in enumerate(cells) if c is not None}, label == "Salt"
            continue
        if header is None or label is None:
            continue
        name = label.split(" (")[0].strip()
        smiles = str(cells[header["SMILES"]]).strip()
        smiles = SMILES_CORRECTIONS.get(name, smiles).replace("[LI+]", "[Li+]")
        molarity = None
        if not salt:
            mw, rho = cells[header["MW"]], cells[header["density (g/mL)"]]
            molarity = 1000.0 * float(rho) / float(mw)
        molecules[name] = Molecule(name, smiles, molarity, salt)
    if not molecules:
        raise DataFormatError(f"{path}: sheet {_MOLECULES!r} has no Solvent/Salt tables with a SMILES column")
    return rows[_FIRST_ROW:], molecules


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _mentions(text: str, names) -> list[tuple[int, str, str]]:
    """(position, name as written, database name) of each molecule named in ``text``, masking found spans."""
    found = []
    for written in sorted(names, key=len, reverse=True):  # longest first: TMS-FNFSI before TMS
        pattern = rf"(?<![A-Za-z0-9]){re.escape(written)}(?![A-Za-z])"
        for match in re.finditer(pattern, text, flags=re.IGNORECASE):
            found.append((match.start(), written))
        text = re.sub(pattern, lambda m: " " * len(m.group()), text, flags=re.IGNORECASE)
    return sorted(found)


def _explicit_molarity(text: str, position: int) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*M\s*$", text[:position])
    return float(match.group(1)) if match else None


def parse_formulation(row: tuple, molecules: Mapping[str, Molecule]) -> dict[str, float]:
    """``{molecule name: mol/L}`` of one sheet row; :class:`DataFormatError` with the reason if it cannot."""
    text = str(row[_NAME])
    vols = [(k, float(v)) for k, v in enumerate(row[_VOL]) if v not in (None, 0)]
    concs = [float(v) for v in row[_SOLV] if v not in (None, 0)]
    salts = [float(v) for v in row[_SALT] if v not in (None, 0)]
    if not vols:
        raise DataFormatError("no volume fractions in the sheet (formulation given as a molar ratio only)")
    if len(concs) != len(vols):
        raise DataFormatError(f"{len(vols)} volume fractions but {len(concs)} solvent concentrations")
    spelled = {name: (name,) for name in molecules} | {a: t for a, t in ALIASES.items()}
    named = [(pos, db) for pos, written in _mentions(text, spelled) for db in spelled[written] if db in molecules]
    mixture: dict[str, float] = {}
    used: set[str] = set()
    for (_, fraction), conc in zip(vols, concs, strict=True):
        implied = conc / fraction
        hits = {molecules[db].smiles: db for _, db in named
                if molecules[db].molarity and abs(molecules[db].molarity - implied) <= MOLARITY_TOLERANCE * implied}
        if len(hits) != 1:
            what = "no" if not hits else "more than one"
            raise DataFormatError(f"solvent column with {conc:g} mol/L at volume fraction {fraction:g} (pure "
                                  f"{implied:.2f} mol/L) matches {what} molecule named in {text!r}")
        db = next(iter(hits.values()))
        used.add(db)
        mixture[db] = mixture.get(db, 0.0) + fraction * molecules[db].molarity
    others = [(pos, db) for pos, db in named if db not in used and
              (molecules[db].salt or _explicit_molarity(text, pos) is not None or molecules[db].molarity is None)]
    # Non-salt molecules named without "x M" (e.g. "2% VC") count only if a salt column is left for them.
    extras = [(pos, db) for pos, db in named if db not in used and (pos, db) not in others
              and db not in {d for _, d in others} and not any(molecules[d].smiles == molecules[db].smiles for d in used)]
    if len(others) < len(salts):
        others = sorted(others + extras)
    others = list(dict.fromkeys(others))
    if len({db for _, db in others}) != len(salts):
        raise DataFormatError(f"{len(salts)} salt column(s) {salts} but {len(others)} salt/additive(s) named "
                              f"{[db for _, db in others]} in {text!r}")
    free = list(salts)
    assigned: list[tuple[str, float | None]] = []
    for pos, db in others:
        given = _explicit_molarity(text, pos)
        match = next((c for c in free if given is not None and abs(c - given) <= 1e-6 * max(1.0, c)), None)
        if match is not None:
            free.remove(match)
        assigned.append((db, match))
    for db, value in assigned:
        value = value if value is not None else free.pop(0)
        mixture[db] = mixture.get(db, 0.0) + value
    return mixture


class CoulombicEfficiencyTask(Task):
    name = "coulombic_efficiency"
    family = "electrolytes"
    seeded_replicates = True
    task_type = REGRESSION
    metrics = ("mae", "mse")
    split_description = (f"repeated {N_FOLDS}-fold CV, {len(SEEDS)} repeats (KFold shuffle, seeds {SEEDS[0]}-{SEEDS[-1]}); "
                         f"± over the {N_FOLDS * len(SEEDS)} test folds")
    literature_size = 124
    size_note = "150 rows in Dataset S1; rows whose formulation cannot be read from the sheet are excluded"

    @property
    def files(self) -> list[DataFile]:
        return [DataFile("coulombic_efficiency/pnas.2214357120.sd01.xlsx", url=URL)]

    def formulations(self, data_dir=None):
        """(ids, mixtures, targets, molecules used, excluded) — everything but the 3D molecules."""
        rows, molecules = read_workbook(locate(self.files[0], data_dir))
        ids, mixtures, targets, excluded = [], [], [], []
        bad_smiles: dict[str, str] = {}
        for name, mol in molecules.items():
            try:
                parse_smiles(mol.smiles)
            except InvalidStructureError as exc:
                bad_smiles[name] = str(exc)
        for i, row in enumerate(rows):
            if row[_NAME] is None:
                continue
            row_id = f"ce-{i}"
            try:
                mixture = parse_formulation(row, molecules)
            except DataFormatError as exc:
                excluded.append(Excluded(row_id, "formulation", f"{row[_NAME]!r}: {exc}"))
                continue
            broken = sorted(set(mixture) & set(bad_smiles))
            ce = float(row[_CE]) / 100.0
            if broken:
                excluded.append(Excluded(row_id, "parse", f"{row[_NAME]!r}: " + "; ".join(bad_smiles[b] for b in broken)))
            elif not 0 <= ce < 1:
                excluded.append(Excluded(row_id, "target", f"-log10(1 - CE) not finite for CE = {ce:.4f}"))
            else:
                ids.append(row_id)
                mixtures.append(mixture)
                targets.append(-math.log10(1.0 - ce))
        used = {name: molecules[name] for mixture in mixtures for name in mixture}
        return ids, mixtures, np.array(targets), used, excluded

    def count(self, data_dir=None) -> int:
        return len(self.formulations(data_dir)[0])

    def load(self, data_dir=None, *, calculator=None, settings: RelaxSettings = RelaxSettings(),
             cache=None, progress: bool = False) -> TaskData:
        ids, mixtures, targets, used, excluded = self.formulations(data_dir)
        built = build_molecules({name: mol.smiles for name, mol in used.items()}, calculator,
                                settings=settings, cache=cache, progress=progress)
        failed = {f.id: f.reason for f in built.failures}
        keep = []
        for k, (row_id, mixture) in enumerate(zip(ids, mixtures, strict=True)):
            bad = sorted(set(mixture) & set(failed))
            if bad:
                excluded.append(Excluded(row_id, "relax", "; ".join(f"{b}: {failed[b]}" for b in bad)))
            else:
                keep.append(k)
        notes = built.notes(settings)
        return TaskData(ids=[ids[k] for k in keep], inputs=[mixtures[k] for k in keep], targets=targets[keep],
                        target_names=("neg_log10_one_minus_ce",), molecules=built.atoms, excluded=excluded,
                        notes=notes, meta={"smiles": {n: m.smiles for n, m in used.items()}})

    def splits(self, data: TaskData) -> Iterator[Split]:
        for seed in SEEDS:
            yield from kfold_splits(len(data), n_splits=N_FOLDS, seed=seed, prefix=f"seed_{seed}_")


def mixture_embeddings(mixtures, embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
    """Concentration-weighted sum of molecule embeddings, one per mixture (any trailing shape)."""
    return np.stack([sum(conc * np.asarray(embeddings[name]) for name, conc in mixture.items())
                     for mixture in mixtures])


#: task name -> factory (the registry builds only the task asked for)
FACTORIES = {CoulombicEfficiencyTask.name: CoulombicEfficiencyTask}
