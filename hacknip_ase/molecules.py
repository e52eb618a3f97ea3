"""Molecules from SMILES: RDKit ETKDG 3D (seeded) -> relaxation -> checked ``ase.Atoms``.

:func:`smiles_to_atoms` builds one molecule (raising :class:`~hacknip_ase.errors.MoleculeBuildError`
with the stage and reason when it cannot); :func:`build_molecules` builds many, cached on disk,
and returns the failures with their reasons instead of raising. The benchmark molecule tasks and
``hacknip fit`` / ``hacknip predict`` on SMILES both go through them.

Two kinds of relaxation (:data:`RECIPES`): with the backbone itself through an ASE optimizer
(HackNIP's recipe; 60-80 s per drug-sized molecule on a 2-core CPU), or with a classical force
field in RDKit (milliseconds per molecule): MMFF94, or UFF for the molecules MMFF94 has no
parameters for (hexafluorophosphate, borates, polysulfides). The force field used is stored
per molecule and reported.

Every molecule that fails (parse, 3D embedding, relaxation) is returned as an
:class:`Excluded` with its reason. Relaxed geometries (and failures) are
cached on disk, written atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from .files import atomic_write
from .errors import EmbeddingFailedError, InvalidStructureError, MoleculeBuildError, StructureParseError
from .files import cache_dir

#: Bumped when the geometry recipe changes, so old cache entries are not reused.
RECIPE_VERSION = 2  # 2: fragments (ions of a salt) placed apart before relaxation
#: Smallest distance (A) between the fragments of a multi-fragment SMILES (a salt's ions) in the
#: starting geometry; ETKDG may place them on top of each other.
FRAGMENT_GAP = 3.0
#: ASE optimizers, which relax with the calculator (the backbone).
ASE_OPTIMIZERS = ("FIRE", "BFGS")
#: RDKit force fields; "MMFF94-UFF" takes MMFF94 where it has every parameter, else UFF.
FORCE_FIELDS = ("MMFF94", "UFF", "MMFF94-UFF")


@dataclass(frozen=True)
class Excluded:
    """A row (or molecule) left out, and why (never dropped silently)."""

    id: str
    stage: str  #: e.g. "target", "parse", "embed", "relax", "formulation", "featurize"
    reason: str


@dataclass(frozen=True)
class RelaxSettings:
    """How molecules are built and relaxed (part of the cache key)."""

    seed: int = 0  #: ETKDG random seed
    optimizer: str = "FIRE"  #: one of ASE_OPTIMIZERS (with the backbone) or FORCE_FIELDS (RDKit)
    fmax: float = 0.05  #: eV/A, convergence on the largest force (ASE optimizers only)
    steps: int = 300  #: bound on optimizer steps (force fields: iterations); 0 keeps the ETKDG geometry

    def __post_init__(self):
        if self.optimizer not in ASE_OPTIMIZERS + FORCE_FIELDS:
            raise ValueError(f"optimizer must be one of {ASE_OPTIMIZERS + FORCE_FIELDS}, got {self.optimizer!r}")

    @property
    def uses_calculator(self) -> bool:
        return self.steps > 0 and self.optimizer in ASE_OPTIMIZERS


#: Named geometry recipes (``hacknip-bench run --relax``, ``hacknip fit --relax``).
RECIPES = {
    "backbone": RelaxSettings(),  # HackNIP: relax with the NIP that then embeds the molecule
    "forcefield": RelaxSettings(optimizer="MMFF94-UFF", steps=2000),
    "etkdg": RelaxSettings(steps=0),  # the unrelaxed ETKDG conformer
}


@dataclass
class MoleculeSet:
    """Built molecules by id, what failed and why, and which did not converge."""

    atoms: dict[str, Atoms] = field(default_factory=dict)
    failures: list[Excluded] = field(default_factory=list)
    unconverged: list[str] = field(default_factory=list)
    force_fields: dict[str, str] = field(default_factory=dict)  #: id -> force field, where one relaxed it
    seconds: float = 0.0  #: wall time spent on molecules not taken from the cache

    def notes(self, settings: RelaxSettings) -> list[str]:
        """What a result file should say about how these geometries were made."""
        notes = []
        if self.unconverged:
            bound = f"fmax={settings.fmax} within " if settings.uses_calculator else ""
            notes.append(f"{len(self.unconverged)} molecules did not converge ({bound}{settings.steps} "
                         f"{settings.optimizer} steps; kept): {self.unconverged[:20]}")
        fields = sorted(set(self.force_fields.values()))
        if fields:
            counts = {f: [i for i, used in self.force_fields.items() if used == f] for f in fields}
            notes.append("relaxed with " + ", ".join(f"{f}: {len(ids)}" for f, ids in counts.items())
                         + ("" if len(fields) == 1 else f" (UFF where MMFF94 lacks parameters: {counts['UFF'][:20]})"))
        return notes


def parse_smiles(smiles: str):
    """RDKit molecule with explicit hydrogens; :class:`StructureParseError` if invalid."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # the reason is reported through the error instead
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise StructureParseError(f"RDKit cannot parse SMILES {smiles!r}")
    if any(atom.GetAtomicNum() == 0 for atom in mol.GetAtoms()):
        raise StructureParseError(f"SMILES {smiles!r} holds a dummy atom '*' (no element)")
    return Chem.AddHs(mol)


def embed_smiles(smiles: str, *, seed: int = 0):
    """RDKit molecule with one ETKDG v3 conformer, fixed seed (random-coordinate start as fallback)."""
    from rdkit.Chem import AllChem

    mol = parse_smiles(smiles)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True  # needed by some large or strained molecules
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise EmbeddingFailedError(f"ETKDG found no 3D embedding for {smiles!r} (seed {seed})")
    _separate_fragments(mol)
    return mol


def _separate_fragments(mol, gap: float = FRAGMENT_GAP) -> None:
    """Line the fragments up along x, ``gap`` apart, so relaxation starts from separate ions."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    fragments = Chem.GetMolFrags(mol)
    if len(fragments) < 2:
        return
    conformer = mol.GetConformer()
    positions = conformer.GetPositions()
    edge = None
    for atoms in fragments:
        atoms = list(atoms)
        block = positions[atoms] - positions[atoms].mean(axis=0)
        if edge is not None:
            block[:, 0] += edge + gap - block[:, 0].min()
        edge = block[:, 0].max()
        for index, (x, y, z) in zip(atoms, block, strict=True):
            conformer.SetAtomPosition(index, Point3D(float(x), float(y), float(z)))


def mol_to_atoms(mol) -> Atoms:
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    return Atoms(numbers=numbers, positions=mol.GetConformer().GetPositions(), pbc=False)


def smiles_to_atoms(smiles: str, *, recipe: str | RelaxSettings = "forcefield", calculator=None) -> Atoms:
    """One molecule's 3D geometry from its SMILES, checked for collapse (not cached).

    ``recipe`` is a name of :data:`RECIPES` ("forcefield": ETKDG v3 then MMFF94, or UFF where
    MMFF94 lacks parameters; "etkdg": the seeded ETKDG conformer; "backbone": relaxed with
    ``calculator``, default ``EmbeddingCalculator("chgnet")``) or a :class:`RelaxSettings`.
    The ions of a salt are placed :data:`FRAGMENT_GAP` apart. Raises
    :class:`~hacknip_ase.errors.MoleculeBuildError` (an ``InvalidStructureError``) naming the
    stage that failed (parse, embed, relax) and why.
    """
    settings = _settings(recipe)
    if settings.uses_calculator and calculator is None:
        from .calculator import EmbeddingCalculator

        calculator = EmbeddingCalculator("chgnet")
    return _geometry(smiles, calculator, settings)[0]


def _settings(recipe: str | RelaxSettings) -> RelaxSettings:
    if isinstance(recipe, RelaxSettings):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"relax recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    return RECIPES[recipe]


def forcefield_relax(mol, force_field: str, max_iters: int) -> tuple[Atoms, bool, str]:
    """Relax ``mol``'s conformer in place with an RDKit force field; (atoms, converged, field used).

    Fragments (a salt's ions) are relaxed one by one and placed ``FRAGMENT_GAP`` apart, so every
    salt gets the same treatment whichever force field covers it. Octahedral ions (PF6-), which
    neither ETKDG nor UFF can shape, are set to an ideal octahedron and held fixed.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from rdkit.Geometry import Point3D

    if force_field == "MMFF94-UFF":
        force_field = "MMFF94" if AllChem.MMFFHasAllMoleculeParams(mol) else "UFF"
    covered = AllChem.MMFFHasAllMoleculeParams if force_field == "MMFF94" else AllChem.UFFHasAllMoleculeParams
    if not covered(mol):
        raise InvalidStructureError(f"{force_field} has no parameters for some atom of this molecule")
    mapping: list = []
    converged = True
    conformer = mol.GetConformer()
    for piece, indices in zip(Chem.GetMolFrags(mol, asMols=True, fragsMolAtomMapping=mapping), mapping, strict=True):
        converged &= _relax_piece(piece, force_field, max_iters)
        for index, position in zip(indices, piece.GetConformer().GetPositions(), strict=True):
            conformer.SetAtomPosition(index, Point3D(*position.tolist()))
    _separate_fragments(mol)
    return mol_to_atoms(mol), converged, force_field


def _relax_piece(piece, force_field: str, max_iters: int) -> bool:
    from rdkit.Chem import AllChem

    fixed = _shape_octahedra(piece)
    if piece.GetNumAtoms() - len(fixed) < 2:
        return True  # a lone ion or a fixed octahedron: nothing to relax
    if force_field == "MMFF94":
        field = AllChem.MMFFGetMoleculeForceField(piece, AllChem.MMFFGetMoleculeProperties(piece, mmffVariant="MMFF94"))
    else:
        field = AllChem.UFFGetMoleculeForceField(piece)
    if field is None:
        raise InvalidStructureError(f"{force_field} could not set up a force field for this molecule")
    for index in fixed:
        field.AddFixedPoint(index)
    field.Initialize()
    return field.Minimize(maxIts=max_iters) == 0


def _shape_octahedra(mol) -> list[int]:
    """Ideal octahedra around atoms with six terminal neighbours; returns the atoms placed."""
    from rdkit.Geometry import Point3D

    conformer, placed = mol.GetConformer(), []
    positions = conformer.GetPositions()
    for atom in mol.GetAtoms():
        ligands = [n.GetIdx() for n in atom.GetNeighbors()]
        if len(ligands) != 6 or any(mol.GetAtomWithIdx(i).GetDegree() != 1 for i in ligands):
            continue
        center = positions[atom.GetIdx()]
        bond = float(np.mean(np.linalg.norm(positions[ligands] - center, axis=1)))
        for index, direction in zip(ligands, np.vstack([np.eye(3), -np.eye(3)]), strict=True):
            conformer.SetAtomPosition(index, Point3D(*(center + bond * direction).tolist()))
        placed += [atom.GetIdx(), *ligands]
    return placed


def check_geometry(atoms: Atoms, mol, method: str, factor: float = 0.75) -> None:
    """:class:`InvalidStructureError` if positions are not finite or two unbonded atoms sit closer
    than ``factor`` x the sum of their covalent radii (a collapsed geometry). Every recipe's
    geometry passes through it; ``atoms`` is in ``mol``'s atom order."""
    from ase.data import covalent_radii

    if not np.all(np.isfinite(atoms.positions)):
        raise InvalidStructureError(f"{method} produced non-finite positions")
    distances = atoms.get_all_distances()
    limit = factor * (covalent_radii[atoms.numbers][:, None] + covalent_radii[atoms.numbers][None, :])
    close = distances < limit
    np.fill_diagonal(close, False)
    for bond in mol.GetBonds():
        close[bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()] = close[bond.GetEndAtomIdx(), bond.GetBeginAtomIdx()] = False
    if close.any():
        i, j = map(int, np.argwhere(close)[0])
        raise InvalidStructureError(f"{method} gave a collapsed geometry: unbonded atoms {i} and {j} are "
                                    f"{distances[i, j]:.2f} A apart")


def relax(atoms: Atoms, calculator, settings: RelaxSettings) -> tuple[Atoms, bool]:
    """Relax a copy of ``atoms``; returns it and whether ``fmax`` was reached within ``steps``."""
    from ase.optimize import BFGS, FIRE

    optimizers = {"FIRE": FIRE, "BFGS": BFGS}
    if settings.optimizer not in optimizers:
        raise ValueError(f"relax() runs ASE optimizers {sorted(optimizers)}, got {settings.optimizer!r}")
    atoms = atoms.copy()
    atoms.calc = calculator
    optimizer = optimizers[settings.optimizer](atoms, logfile=None)
    converged = bool(optimizer.run(fmax=settings.fmax, steps=settings.steps))
    if not np.isfinite(atoms.get_potential_energy()):
        raise InvalidStructureError("relaxation produced a non-finite energy")
    return Atoms(numbers=atoms.numbers, positions=atoms.get_positions(), pbc=False), converged


def calculator_tag(calculator) -> str:
    """Identity of the relaxing model for the cache key (backbone, variant, weights hash)."""
    backbone = getattr(calculator, "backbone", None)
    if backbone is not None and hasattr(backbone, "info"):
        info = backbone.info
        return f"{info.name}-{info.model}-{info.weights_sha256[:12]}"
    return type(calculator).__name__


def build_molecules(smiles: Mapping[str, str], calculator=None, *, settings: RelaxSettings = RelaxSettings(),
                    cache: str | os.PathLike | None = None, progress: bool = False) -> MoleculeSet:
    """Build (and relax unless ``settings.steps == 0``) every ``{id: smiles}``.

    ``calculator`` (ASE optimizers only) defaults to ``EmbeddingCalculator("chgnet")``, created
    only when needed; force-field geometries do not depend on it and are shared by all backbones.
    ``cache`` is a folder (default ``cache_dir()/molecules``); ``""`` disables caching.
    """
    out = MoleculeSet()
    root = Path(cache_dir() / "molecules" if cache is None else cache) if cache != "" else None
    tag = None
    iterator = smiles.items()
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(smiles), desc="molecules")
    for mol_id, smi in iterator:
        if settings.uses_calculator and calculator is None:
            from .calculator import EmbeddingCalculator

            calculator = EmbeddingCalculator("chgnet")
        if tag is None:
            tag = (calculator_tag(calculator) if settings.uses_calculator
                   else settings.optimizer.lower() if settings.steps > 0 else "etkdg")
        path = None
        if root is not None:
            key = hashlib.sha256(json.dumps([smi, asdict(settings), tag, RECIPE_VERSION]).encode()).hexdigest()
            path = root / tag / f"{key[:32]}.json"
            if path.is_file():
                _from_record(json.loads(path.read_text()), mol_id, out)
                continue
        start = time.perf_counter()
        record = _build_one(smi, calculator, settings)
        out.seconds += time.perf_counter() - start
        if path is not None:
            atomic_write(path, json.dumps(record).encode())
        _from_record(record, mol_id, out)
    return out


def _geometry(smi: str, calculator, settings: RelaxSettings) -> tuple[Atoms, bool, str | None]:
    """(atoms, converged, force field used); :class:`MoleculeBuildError` with the stage that failed."""
    stage = "parse"
    try:
        parse_smiles(smi)
        stage = "embed"
        mol = embed_smiles(smi, seed=settings.seed)
        atoms, converged, force_field = mol_to_atoms(mol), True, None
        if settings.steps > 0:
            stage = "relax"
            if settings.uses_calculator:
                atoms, converged = relax(atoms, calculator, settings)
            else:
                atoms, converged, force_field = forcefield_relax(mol, settings.optimizer, settings.steps)
        check_geometry(atoms, mol, force_field or settings.optimizer if settings.steps > 0 else "ETKDG")
    except (InvalidStructureError, RuntimeError, ValueError) as exc:
        # RuntimeError/ValueError: RDKit and torch raise these on exotic chemistry; kept as reasons.
        raise MoleculeBuildError(smi, stage, f"{type(exc).__name__}: {exc}") from exc
    return atoms, converged, force_field


def _build_one(smi: str, calculator, settings: RelaxSettings) -> dict:
    try:
        atoms, converged, force_field = _geometry(smi, calculator, settings)
    except MoleculeBuildError as exc:
        return {"smiles": smi, "failed": exc.stage, "reason": exc.reason}
    record = {"smiles": smi, "numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
              "converged": converged}
    if force_field is not None:
        record["force_field"] = force_field
    return record


def _from_record(record: dict, mol_id: str, out: MoleculeSet) -> None:
    if "failed" in record:
        out.failures.append(Excluded(mol_id, record["failed"], record["reason"]))
        return
    out.atoms[mol_id] = Atoms(numbers=record["numbers"], positions=record["positions"], pbc=False)
    if not record["converged"]:
        out.unconverged.append(mol_id)
    if "force_field" in record:
        out.force_fields[mol_id] = record["force_field"]
