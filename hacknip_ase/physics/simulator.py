"""The simulator behind the physics descriptors: batched forward passes of many copies, and an
ASE calculator view of it for relaxations.

A simulator is any object with ``forward(atoms_list, forces=bool, stress=bool)`` returning
energies (eV), forces (eV/A) if asked and Voigt stresses (eV/A^3, None for a non-periodic
structure) if asked; each step asks only for what it reads (the elastic step stresses, the
phonon step forces), which spares CHGNet one backward pass per copy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ..errors import InvalidStructureError

log = logging.getLogger(__name__)


@dataclass
class Request:
    """One copy of a structure to run through the simulator, and its result once run."""

    owner: int  #: index of the structure in the chunk
    kind: str  #: "base", "eos", "elastic", "phonon"
    atoms: Atoms
    forces: bool = False
    stress: bool = False
    result: tuple | None = None  #: (energy, forces or None, stress or None)


class Runner:
    """Runs requests through the simulator in batches of at most ``max_batch_atoms`` atoms, timed by kind."""

    def __init__(self, source, max_batch_atoms: int, max_force_batch_atoms: int | None = None) -> None:
        self.source, self.max_batch_atoms = source, max_batch_atoms
        self.max_force_batch_atoms = max_force_batch_atoms or max_batch_atoms
        self.cpu_seconds: dict[str, float] = {}

    def run(self, requests: list[Request]) -> set[int]:
        """Fill ``result`` of every request; returns the owners whose structure the simulator rejected."""
        rejected: set[int] = set()
        for (kind, forces, stress), group in _group(requests).items():
            start = time.process_time()
            cap = self.max_force_batch_atoms if forces or stress else self.max_batch_atoms
            batch: list[Request] = []
            for request in group:
                if batch and sum(len(r.atoms) for r in batch) + len(request.atoms) > cap:
                    rejected |= self._batch(batch)
                    batch = []
                batch.append(request)
            if batch:
                rejected |= self._batch(batch)
            self.cpu_seconds[kind] = self.cpu_seconds.get(kind, 0.0) + time.process_time() - start
        return rejected

    def _batch(self, batch: list[Request]) -> set[int]:
        try:
            self._fill(batch)
            return set()
        except InvalidStructureError:
            if len(batch) == 1:
                return {batch[0].owner}
        rejected = set()  # find the structure(s) the backbone refuses, one owner at a time
        for owner in dict.fromkeys(r.owner for r in batch):
            try:
                self._fill([r for r in batch if r.owner == owner])
            except InvalidStructureError as exc:
                log.info("physics: structure %d rejected: %s", owner, exc)
                rejected.add(owner)
        return rejected

    def _fill(self, batch: list[Request]) -> None:
        forces, stress = batch[0].forces, batch[0].stress  # a batch is one (kind, forces, stress) group
        output = self.source.forward([r.atoms for r in batch], forces=forces, stress=stress)
        for k, request in enumerate(batch):
            request.result = (
                float(output.energy[k]),
                None if not forces else np.asarray(output.forces[k], float),
                None if not stress or output.stress is None or output.stress[k] is None
                else np.asarray(output.stress[k], float),
            )


def _group(requests: list[Request]) -> dict:
    groups: dict = {}
    for request in requests:
        groups.setdefault((request.kind, request.forces, request.stress), []).append(request)
    return groups


class SimulatorCalculator(Calculator):
    """ASE calculator view of a simulator (``forward(atoms_list, forces=True, stress=True)``), for relaxations."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, source) -> None:
        super().__init__()
        self.source = source

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        self.results = {}
        super().calculate(atoms, properties, system_changes)
        output = self.source.forward([self.atoms], forces=True, stress=True)
        energy = float(output.energy[0])
        self.results = {"energy": energy, "free_energy": energy, "forces": np.asarray(output.forces[0], float)}
        if output.stress is not None and output.stress[0] is not None:
            self.results["stress"] = np.asarray(output.stress[0], float)


def relax(atoms: Atoms, source, *, fmax: float, steps: int, cell: bool = True) -> tuple[Atoms, bool, int]:
    """Relax positions (and the cell of a periodic structure) with the simulator: (atoms, converged, steps)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    relaxed = atoms.copy()
    relaxed.calc = SimulatorCalculator(source)
    target = FrechetCellFilter(relaxed) if cell and relaxed.pbc.all() else relaxed
    optimizer = BFGS(target, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=steps))
    relaxed.calc = None
    return relaxed, converged, int(optimizer.nsteps)
