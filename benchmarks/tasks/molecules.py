"""SMILES -> RDKit ETKDG 3D (seeded) -> ``ase.Atoms`` -> relaxation with an ASE calculator.

Every molecule that fails (parse, 3D embedding, relaxation) is returned as an
:class:`~benchmarks.tasks.base.Excluded` with its reason. Relaxed geometries (and failures) are
cached on disk, written atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from hacknip_ase.errors import InvalidStructureError, StructureParseError
from hacknip_ase.weights import cache_dir

from .base import Excluded

#: Bumped when the geometry recipe changes, so old cache entries are not reused.
RECIPE_VERSION = 1


class EmbeddingFailedError(InvalidStructureError):
    """RDKit could not build 3D coordinates for a parsed molecule."""


@dataclass(frozen=True)
class RelaxSettings:
    """How molecules are built and relaxed (part of the cache key)."""

    seed: int = 0  #: ETKDG random seed
    optimizer: str = "FIRE"  #: "FIRE" or "BFGS" (ase.optimize)
    fmax: float = 0.05  #: eV/A, convergence on the largest force
    steps: int = 300  #: bound on optimizer steps; 0 keeps the ETKDG geometry


@dataclass
class MoleculeSet:
    """Built molecules by id, what failed and why, and which did not converge."""

    atoms: dict[str, Atoms] = field(default_factory=dict)
    failures: list[Excluded] = field(default_factory=list)
    unconverged: list[str] = field(default_factory=list)
    seconds: float = 0.0  #: wall time spent on molecules not taken from the cache


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


def smiles_to_atoms(smiles: str, *, seed: int = 0) -> Atoms:
    """3D geometry from ETKDG v3 with a fixed seed (random-coordinate start as fallback)."""
    from rdkit.Chem import AllChem

    mol = parse_smiles(smiles)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True  # needed by some large or strained molecules
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise EmbeddingFailedError(f"ETKDG found no 3D embedding for {smiles!r} (seed {seed})")
    positions = mol.GetConformer().GetPositions()
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    return Atoms(numbers=numbers, positions=positions, pbc=False)


def relax(atoms: Atoms, calculator, settings: RelaxSettings) -> tuple[Atoms, bool]:
    """Relax a copy of ``atoms``; returns it and whether ``fmax`` was reached within ``steps``."""
    from ase.optimize import BFGS, FIRE

    optimizers = {"FIRE": FIRE, "BFGS": BFGS}
    if settings.optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {settings.optimizer!r}")
    atoms = atoms.copy()
    atoms.calc = calculator
    optimizer = optimizers[settings.optimizer](atoms, logfile=None)
    converged = bool(optimizer.run(fmax=settings.fmax, steps=settings.steps))
    positions = atoms.get_positions()
    if not np.all(np.isfinite(positions)) or not np.isfinite(atoms.get_potential_energy()):
        raise InvalidStructureError("relaxation produced non-finite positions or energy")
    result = Atoms(numbers=atoms.numbers, positions=positions, pbc=False)
    return result, converged


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

    ``calculator`` defaults to ``EmbeddingCalculator("chgnet")``, created only when needed.
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
        if settings.steps > 0 and calculator is None:
            from hacknip_ase.calculator import EmbeddingCalculator

            calculator = EmbeddingCalculator("chgnet")
        if tag is None:
            tag = calculator_tag(calculator) if settings.steps > 0 else "etkdg"
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
            _write_atomic(path, json.dumps(record))
        _from_record(record, mol_id, out)
    return out


def _build_one(smi: str, calculator, settings: RelaxSettings) -> dict:
    stage = "parse"
    try:
        parse_smiles(smi)
        stage = "embed"
        atoms = smiles_to_atoms(smi, seed=settings.seed)
        converged = True
        if settings.steps > 0:
            stage = "relax"
            atoms, converged = relax(atoms, calculator, settings)
    except (InvalidStructureError, RuntimeError, ValueError) as exc:
        # RuntimeError/ValueError: RDKit and torch raise these on exotic chemistry; kept as reasons.
        return {"smiles": smi, "failed": stage, "reason": f"{type(exc).__name__}: {exc}"}
    return {"smiles": smi, "numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
            "converged": converged}


def _from_record(record: dict, mol_id: str, out: MoleculeSet) -> None:
    if "failed" in record:
        out.failures.append(Excluded(mol_id, record["failed"], record["reason"]))
        return
    out.atoms[mol_id] = Atoms(numbers=record["numbers"], positions=record["positions"], pbc=False)
    if not record["converged"]:
        out.unconverged.append(mol_id)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".part") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)
