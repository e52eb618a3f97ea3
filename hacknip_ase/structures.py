"""Checking and preparing structures before they reach a backbone."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.neighborlist import neighbor_list

from .errors import (
    EmptyStructureError,
    NonFiniteStructureError,
    OverlappingAtomsError,
    SingularCellError,
    StructureTypeError,
    UnsupportedElementError,
)

#: Closest approach (Angstrom) below which two atoms count as overlapping; H2 is 0.74 A.
MIN_DISTANCE = 0.5
#: Vacuum (Angstrom) added beyond the cutoff when a non-periodic structure is boxed.
BOX_MARGIN = 1.0


def as_atoms(structure) -> Atoms:
    """Return an ``ase.Atoms`` for an Atoms or a pymatgen Structure/Molecule."""
    if isinstance(structure, Atoms):
        return structure
    try:
        from pymatgen.core import Molecule, Structure
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError:  # pragma: no cover - pymatgen is a dependency
        Molecule = Structure = None
    if Structure is not None and isinstance(structure, Structure | Molecule):
        return AseAtomsAdaptor.get_atoms(structure)
    raise StructureTypeError(f"expected ase.Atoms or a pymatgen Structure/Molecule, got {type(structure).__name__} "
                             f"{_preview(structure)}")


def _preview(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate(
    atoms: Atoms,
    *,
    model: str,
    elements: Collection[int] | None = None,
    min_distance: float = MIN_DISTANCE,
) -> None:
    """Raise a typed :class:`~hacknip_ase.errors.InvalidStructureError` for unusable input."""
    if len(atoms) == 0:
        raise EmptyStructureError("the structure has no atoms")
    positions = atoms.get_positions()
    if not np.all(np.isfinite(positions)):
        bad = np.where(~np.isfinite(positions).all(axis=1))[0]
        raise NonFiniteStructureError(f"positions of atoms {bad.tolist()[:10]} are NaN or inf")
    cell = atoms.cell.array
    if not np.all(np.isfinite(cell)):
        raise NonFiniteStructureError("the cell contains NaN or inf")
    if atoms.pbc.any():
        periodic = cell[atoms.pbc]
        # Volume (3D), area (2D) or length (1D) spanned by the periodic lattice vectors.
        span = np.sqrt(abs(np.linalg.det(periodic @ periodic.T)))
        scale = np.prod(np.linalg.norm(periodic, axis=1)) if len(periodic) else 0.0
        if scale == 0.0 or span < 1e-6 * scale:
            raise SingularCellError(
                f"the periodic cell is singular (lattice vectors {periodic.round(4).tolist()}); "
                "set a proper cell or pbc=False"
            )
    if elements is not None:
        unknown = sorted(set(atoms.numbers.tolist()) - set(elements))
        if unknown:
            names = ", ".join(chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}" for z in unknown)
            raise UnsupportedElementError(f"element(s) {names} not covered by model {model}")
    i, j, d = neighbor_list("ijd", atoms, min_distance)
    if len(d):
        k = int(np.argmin(d))
        what = "its own periodic image" if i[k] == j[k] else f"atom {j[k]}"
        raise OverlappingAtomsError(
            f"atom {i[k]} is {d[k]:.3f} A from {what} (minimum allowed {min_distance} A)"
        )


def box_in_vacuum(atoms: Atoms, cutoff: float) -> Atoms:
    """Put a non-periodic structure in a periodic box with no interaction across its faces.

    For models that need a cell. Each box edge is the structure's extent plus twice
    (cutoff + margin), so no atom sees a periodic image within the cutoff.
    """
    boxed = atoms.copy()
    extent = np.ptp(boxed.positions, axis=0)
    boxed.set_cell(extent + 2.0 * (cutoff + BOX_MARGIN))
    boxed.center()
    boxed.pbc = True
    return boxed


def supercell_repeats(atoms: Atoms, cutoff: float) -> tuple[int, int, int]:
    """Repeats along each periodic lattice vector so that every one is longer than ``cutoff``.

    This is HackNIP's supercell expansion (it counts lattice vector lengths, not the
    perpendicular widths of the cell).
    """
    lengths = atoms.cell.lengths()
    return tuple(
        int(np.floor(cutoff / length)) + 1 if periodic and length > 0 else 1
        for periodic, length in zip(atoms.pbc, lengths, strict=True)
    )
