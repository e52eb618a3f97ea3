"""The NIP's own elemental reference energies (formation energy), computed once per element and
backbone and cached in a small JSON file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from ..errors import InvalidOptionError, InvalidStructureError
from .records import PHYSICS_FORMAT, PhysicsSettings, physics_identity, physics_root
from .simulator import relax

log = logging.getLogger(__name__)

#: Elements referenced by their dimer in vacuum rather than a crystal (see the module notes).
MOLECULAR_ELEMENTS = ("H", "N", "O", "F", "Cl", "Br", "I")
REFERENCE_PHASES = ("fcc", "bcc", "hcp", "diamond", "sc")


def _phase(symbol: str, phase: str, scale: float) -> Atoms:
    """A simple phase of one element with nearest-neighbour distance ``scale`` x twice the covalent radius."""
    from ase.build import bulk

    d = 2 * covalent_radii[atomic_numbers[symbol]] * scale
    if phase == "fcc":
        return bulk(symbol, "fcc", a=d * np.sqrt(2))
    if phase == "bcc":
        return bulk(symbol, "bcc", a=2 * d / np.sqrt(3))
    if phase == "hcp":
        return bulk(symbol, "hcp", a=d, c=d * np.sqrt(8 / 3))
    if phase == "diamond":
        return bulk(symbol, "diamond", a=4 * d / np.sqrt(3))
    if phase == "sc":
        return bulk(symbol, "sc", a=d)
    if phase == "dimer":
        return Atoms(f"{symbol}2", positions=[[0, 0, 0], [0, 0, d]], pbc=False)
    raise InvalidOptionError(f"unknown reference phase {phase!r}")


class ElementalReferences:
    """The NIP's own energy per atom of each element's lowest simple phase, computed once and cached.

    Parameters
    ----------
    source
        The simulator (a Backbone or anything with ``forward``).
    identity : dict or None
        JSON-serialisable identity of the simulator (backbone identity); None: no file cache.
    root : path, optional
        Cache root; the file is ``root/references/<sha256 of identity>.json``.
    fmax, steps
        Relaxation convergence (eV/A) and step cap.

    Notes
    -----
    Per element: a volume scan (nearest-neighbour distance 0.8-1.3 x twice the covalent radius,
    dimers 0.6-1.6 x)
    of fcc, bcc, hcp (ideal c/a), diamond and simple cubic in one batch, then the lowest point
    relaxed (BFGS, cell filter); for :data:`MOLECULAR_ELEMENTS` the dimer in vacuum instead.
    Only phases whose scan minimum is bracketed count, and a relaxation that drops more than
    :attr:`MAX_RELAX_DROP` below the scan minimum (a collapse into a NIP artefact) is rejected
    in favour of the scan point (``converged: false`` and a ``note``). The record keeps phase,
    volume, energies, steps and convergence; no bracketed phase: NaN with the reason.
    """

    SCALES = (0.8, 0.875, 0.95, 1.025, 1.1, 1.2, 1.3)
    #: wider for dimers: N2 (1.10 A) is 0.78 x twice N's covalent radius, F2 (1.42 A) 1.25 x
    DIMER_SCALES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6)
    #: eV/atom a relaxation may go below the scan minimum (more: a collapse into a NIP artefact)
    MAX_RELAX_DROP = 0.5

    def __init__(self, source, identity: dict | None, root: str | os.PathLike | None = None, *,
                 fmax: float = 0.02, steps: int = 200) -> None:
        self.source, self.fmax, self.steps = source, fmax, steps
        self.identity = None if identity is None else {
            **identity, "physics_format": PHYSICS_FORMAT, "phases": list(REFERENCE_PHASES),
            "molecular": list(MOLECULAR_ELEMENTS), "scales": list(self.SCALES), "dimer_scales": list(self.DIMER_SCALES), "fmax": fmax, "steps": steps,
            "max_relax_drop": self.MAX_RELAX_DROP}
        self.path = None
        self.records: dict[str, dict] = {}
        self.cpu_seconds = 0.0
        if self.identity is not None:
            text = json.dumps(self.identity, sort_keys=True, default=str)
            folder = Path(root) if root is not None else physics_root()
            self.path = folder / "references" / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
            self.records = self._read()

    def _read(self) -> dict:
        try:
            stored = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return stored.get("elements", {}) if stored.get("identity") == json.loads(json.dumps(self.identity, default=str)) else {}

    def energy(self, number: int) -> float:
        """Reference energy per atom (eV) of element ``number``; NaN if it could not be computed."""
        symbol = chemical_symbols[int(number)]
        if symbol not in self.records:
            start = time.process_time()
            self.records[symbol] = self._compute(symbol)
            self.cpu_seconds += time.process_time() - start
            if self.path is not None:
                from ..files import atomic_write

                merged = {**self._read(), **self.records}  # another process may have added elements
                self.records = merged
                atomic_write(self.path, (json.dumps({"identity": self.identity, "elements": merged},
                                                    indent=1, sort_keys=True, default=str) + "\n").encode())
        return float(self.records[symbol]["energy_per_atom"])

    def _compute(self, symbol: str) -> dict:
        molecular = symbol in MOLECULAR_ELEMENTS
        phases = ("dimer",) if molecular else REFERENCE_PHASES
        scales = self.DIMER_SCALES if molecular else self.SCALES
        candidates = [(phase, scale, _phase(symbol, phase, scale)) for phase in phases for scale in scales]
        try:
            energies = list(self.source.forward([atoms for *_, atoms in candidates], forces=False).energy)
        except InvalidStructureError:  # e.g. the most compressed H2 is under the overlap limit: drop those
            energies, error = [], None
            for *_, atoms in candidates:
                try:
                    energies.append(float(self.source.forward([atoms], forces=False).energy[0]))
                except InvalidStructureError as exc:
                    energies.append(np.nan)
                    error = f"{type(exc).__name__}: {exc}"
            if not np.any(np.isfinite(energies)):
                return {"energy_per_atom": float("nan"), "error": error}
        per_atom = np.asarray(energies, float) / np.array([len(a) for *_, a in candidates])
        if not np.any(np.isfinite(per_atom)):
            return {"energy_per_atom": float("nan"), "error": "non-finite NIP energies"}
        # A NIP can have unphysical holes at short distances (SevenNet-0 sends compressed B to
        # -505 eV/atom): a phase counts only if its scan minimum is bracketed (not at the
        # smallest or largest scale), and a relaxation may refine that minimum, not fall from it.
        grid = per_atom.reshape(len(phases), len(scales))
        bracketed = []
        for k in range(len(phases)):
            finite = np.flatnonzero(np.isfinite(grid[k]))  # points the backbone refused are NaN
            if len(finite) >= 3 and finite[0] < int(np.nanargmin(grid[k])) < finite[-1]:
                bracketed.append(k)
        if not bracketed:
            return {"energy_per_atom": float("nan"), "error": "no phase has a bracketed energy minimum in the scan"}
        k = min(bracketed, key=lambda k: np.nanmin(grid[k]))
        best = k * len(scales) + int(np.nanargmin(grid[k]))
        phase, scale, atoms = candidates[best]
        note = None
        try:
            relaxed, converged, steps = relax(atoms, self.source, fmax=self.fmax, steps=self.steps)
            energy = float(self.source.forward([relaxed]).energy[0]) / len(relaxed)
        except InvalidStructureError as exc:  # keep the scan's point, say so
            relaxed, converged, steps, energy = atoms, False, None, float(per_atom[best])
            note = f"relaxation failed: {type(exc).__name__}: {exc}"
        if energy < per_atom[best] - self.MAX_RELAX_DROP:
            note = f"relaxation fell {per_atom[best] - energy:.2f} eV/atom below the scan minimum: rejected"
            relaxed, converged, energy = atoms, False, float(per_atom[best])
        if note:
            log.warning("reference %s %s: %s", symbol, phase, note)
        record = {"energy_per_atom": min(energy, float(per_atom[best])), "phase": phase, "scan_scale": scale,
                  "scan_energy_per_atom": float(per_atom[best]), "relaxed_energy_per_atom": energy,
                  "converged": converged, "steps": steps, **({"note": note} if note else {})}
        if relaxed.pbc.all():
            record["volume_per_atom"] = float(relaxed.get_volume() / len(relaxed))
        else:
            record["bond_length"] = float(relaxed.get_distance(0, 1))
        return record


def elemental_references(source, settings: PhysicsSettings | None = None, cache_dir=None) -> ElementalReferences:
    """The elemental references of ``source``, cached under ``<cache_dir>/physics/references`` (None: the
    user cache; False: in memory only). The same file serves :func:`physics_features` and the calculator."""
    settings = settings or PhysicsSettings()
    identity = physics_identity(source, settings)
    if cache_dir is False or identity is None:
        return ElementalReferences(source, None, fmax=settings.relax_fmax, steps=settings.relax_steps)
    root = physics_root(cache_dir)
    base = {k: v for k, v in identity.items() if k not in ("settings", "columns")}
    return ElementalReferences(source, base, root, fmax=settings.relax_fmax, steps=settings.relax_steps)
