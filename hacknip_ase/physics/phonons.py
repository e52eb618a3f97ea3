"""Gamma-point phonons of a supercell from finite displacements of first-copy atoms.

Only the atoms and directions that the crystal's symmetry does not already relate are displaced
(:class:`DisplacementPlan`): a rotation that maps the supercell onto itself maps one atom's
force-constant rows onto another's, and a site rotation of a displaced atom turns one displacement
into others. With ``symprec=0`` every first-copy atom is displaced +- along x, y and z.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units

from ..errors import InvalidOptionError

#: hbar * sqrt(eV / (A^2 amu)) in eV: sqrt of a mass-weighted force-constant eigenvalue -> energy.
_HBAR_OMEGA_EV = units._hbar * 1e10 / np.sqrt(units._e * units._amu)
EV_TO_INVCM = 1.0 / units.invcm
#: What a simulator's energy can be exactly invariant under (``point_symmetry`` of a backbone).
POINT_SYMMETRIES = ("O(3)", "SO(3)", None)


def phonon_repeats(atoms: Atoms, min_length: float) -> tuple[int, int, int]:
    """Repeats along each lattice vector so that every one is at least ``min_length`` (A)."""
    return tuple(max(1, int(np.ceil(min_length / length - 1e-9))) for length in atoms.cell.lengths())


@dataclass(frozen=True)
class Operation:
    """A symmetry operation of the supercell: Cartesian rotation and the image of every atom."""

    rotation: np.ndarray  #: (3, 3), x' = rotation @ x
    image: np.ndarray  #: (n,) int, atom j goes to atom image[j]


@dataclass(frozen=True)
class DisplacedSite:
    """A displaced first-copy atom: its directions, and for each the site operation that turns
    the + displacement into the - one (None: the - copy is computed too)."""

    atom: int
    site_operations: tuple[Operation, ...]
    directions: tuple[np.ndarray, ...]
    reverses: tuple[Operation | None, ...]


@dataclass(frozen=True)
class DisplacementPlan:
    """Which copies to compute, and how every first-copy atom's force-constant rows follow from them."""

    supercell: Atoms
    sites: tuple[DisplacedSite, ...]
    #: per first-copy atom: (index into ``sites``, operation taking that site's atom to this one)
    images: tuple[tuple[int, Operation], ...]

    def displaced(self, step: float) -> list[Atoms]:
        """The copies to run, site by site and direction by direction: +, then - where computed."""
        copies = []
        for site in self.sites:
            for direction, reverse in zip(site.directions, site.reverses, strict=True):
                for sign in (1.0, -1.0) if reverse is None else (1.0,):
                    copy = self.supercell.copy()
                    copy.positions[site.atom] += sign * step * direction
                    copies.append(copy)
        return copies

    def first_rows(self, forces: Sequence[np.ndarray], step: float) -> np.ndarray:
        """(n_prim, 3, n, 3) force constants (eV/A^2) between the first copy's atoms and all atoms,
        from the forces of :meth:`displaced` in its order."""
        n = len(self.supercell)
        remaining = iter(np.asarray(f, float) for f in forces)
        site_rows = []
        for site in self.sites:
            directions, derivatives = [], []
            for direction, reverse in zip(site.directions, site.reverses, strict=True):
                plus = next(remaining)
                minus = next(remaining) if reverse is None else _moved(plus, reverse)
                derivative = -(plus - minus) / (2 * step)  # row d . Phi(site, :, j, :) for every atom j
                for operation in site.site_operations:
                    directions.append(operation.rotation @ direction)
                    derivatives.append(_moved(derivative, operation).reshape(-1))
            rows, *_ = np.linalg.lstsq(np.array(directions), np.array(derivatives), rcond=None)
            site_rows.append(rows.reshape(3, n, 3))
        first = np.zeros((len(self.images), 3, n, 3))
        for a, (k, operation) in enumerate(self.images):
            rotation = operation.rotation
            first[a][:, operation.image, :] = np.einsum("am,mjn,bn->ajb", rotation, site_rows[k], rotation)
        return first


def _moved(vectors: np.ndarray, operation: Operation) -> np.ndarray:
    """Per-atom vectors carried by ``operation``: the vector of atom j, rotated, belongs to image[j]."""
    moved = np.empty_like(vectors)
    moved[operation.image] = vectors @ operation.rotation.T
    return moved


def displacement_plan(atoms: Atoms, repeats, symprec: float = 1e-5, symmetry: str | None = "O(3)") -> DisplacementPlan:
    """The fewest displaced copies of the supercell ``atoms.repeat(repeats)`` that give every
    first-copy atom's force constants under the rotations spglib finds (tolerance ``symprec`` A)
    and that map this supercell onto itself.

    ``symmetry`` is what the simulator's energy is exactly invariant under: "O(3)" (rotations
    and inversion: every operation is used), "SO(3)" (proper rotations only: SevenNet-0 has no
    parity), None (not even those: no symmetry, as with ``symprec=0``)."""
    if symmetry not in POINT_SYMMETRIES:
        raise InvalidOptionError(f"symmetry must be one of {POINT_SYMMETRIES}, got {symmetry!r}")
    supercell = atoms.repeat(repeats)
    supercell.calc = None
    operations = _supercell_operations(atoms, supercell, repeats, symprec if symmetry else 0.0)
    if symmetry == "SO(3)":
        operations = [op for op in operations if np.linalg.det(op.rotation) > 0]
    n_prim = len(atoms)
    sites: list[DisplacedSite] = []
    images: list[tuple[int, Operation] | None] = [None] * n_prim
    for atom in range(n_prim):
        if images[atom] is not None:
            continue
        site_operations = tuple(op for op in operations if op.image[atom] == atom)
        directions, reverses, span = [], [], np.zeros((0, 3))
        for axis in np.eye(3):
            grown = np.vstack([span, *[op.rotation @ axis for op in site_operations]])
            if np.linalg.matrix_rank(grown, tol=1e-6) > np.linalg.matrix_rank(span, tol=1e-6):
                directions.append(axis)
                reverses.append(next((op for op in site_operations
                                      if np.allclose(op.rotation @ axis, -axis, atol=1e-8)), None))
                span = grown
        sites.append(DisplacedSite(atom, site_operations, tuple(directions), tuple(reverses)))
        for op in operations:
            if op.image[atom] < n_prim and images[op.image[atom]] is None:
                images[op.image[atom]] = (len(sites) - 1, op)
    return DisplacementPlan(supercell, tuple(sites), tuple(images))


def _supercell_operations(atoms: Atoms, supercell: Atoms, repeats, symprec: float) -> list[Operation]:
    """Identity first, then the space-group operations of ``atoms`` (spglib) that map the diagonal
    supercell onto itself, each composed with every lattice translation of the supercell, so
    that every first-copy atom's images include the first copy."""
    n = len(supercell)
    identity = Operation(np.eye(3), np.arange(n))
    if symprec <= 0:
        return [identity]
    import spglib

    with warnings.catch_warnings():  # spglib >= 2.5 warns on every call until its error handling switches
        warnings.filterwarnings("ignore", "Set OLD_ERROR_HANDLING", DeprecationWarning)
        try:
            found = spglib.get_symmetry((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers),
                                        symprec=symprec)
        except spglib.error.SpglibError:
            found = None
    if found is None:  # spglib cannot analyse it: every atom is displaced, as with symprec=0
        return [identity]
    lattice = atoms.cell[:]
    dims = np.array(repeats, float)
    fractional = supercell.positions @ np.linalg.inv(lattice)  # in units of the primitive lattice vectors
    shifts = copy_grid(repeats).astype(float)
    tol = max(4 * symprec, 1e-6)
    translations = [_image(fractional + shift, fractional, dims, lattice, supercell.numbers, tol) for shift in shifts]
    operations = [identity]
    for rotation, translation in zip(found["rotations"], found["translations"], strict=True):
        on_supercell = np.diag(1 / dims) @ rotation @ np.diag(dims)
        if not np.allclose(on_supercell, np.round(on_supercell)):
            continue  # it maps the crystal onto itself but not this supercell's lattice
        image = _image(fractional @ rotation.T + translation, fractional, dims, lattice, supercell.numbers, tol)
        if image is None:
            continue
        cartesian = lattice.T @ rotation @ np.linalg.inv(lattice.T)
        for shifted in translations:
            composed = shifted[image]
            if not (np.allclose(cartesian, np.eye(3)) and np.all(composed == identity.image)):
                operations.append(Operation(cartesian, composed))
    return operations


def _image(moved, fractional, dims, lattice, numbers, tol: float) -> np.ndarray | None:
    """For each moved position, the index of the atom it lands on modulo the supercell (None if any misses)."""
    difference = moved[:, None, :] - fractional[None, :, :]
    difference -= dims * np.round(difference / dims)
    distance = np.linalg.norm(difference @ lattice, axis=2)
    image = np.argmin(distance, axis=1)
    if distance[np.arange(len(image)), image].max() > tol or len(set(image.tolist())) != len(image) \
            or np.any(numbers[image] != numbers):
        return None
    return image


def copy_grid(repeats) -> np.ndarray:
    """(copies, 3) lattice offsets of the supercell's copies, in the order ``Atoms.repeat`` makes them."""
    r0, r1, r2 = (int(r) for r in repeats)
    return np.array([(m0, m1, m2) for m0 in range(r0) for m1 in range(r1) for m2 in range(r2)])


def force_constants(repeats, first: np.ndarray) -> np.ndarray:
    """Supercell force constants (3N, 3N), eV/A^2, from the first copy's rows
    (:meth:`DisplacementPlan.first_rows`, ``first[a, alpha, j, beta] = d^2E / du_(a, alpha) du_(j, beta)``).

    Translation symmetry: the block between atom b of copy t and atom b' of copy t' is the
    first copy's block between b and b' of copy (t' - t), with copies numbered the way
    ``Atoms.repeat`` numbers them. The result is symmetrised and the acoustic sum rule imposed.
    """
    r0, r1, r2 = (int(r) for r in repeats)
    n_prim, n = first.shape[0], first.shape[2]
    grid = copy_grid(repeats)
    dims = np.array([r0, r1, r2])
    full = np.zeros((n, 3, n, 3))
    for t, shift in enumerate(grid):
        # copy t' seen from copy t is copy (t' - t) seen from copy 0
        relative = (grid - shift) % dims
        source_copy = (relative[:, 0] * r1 + relative[:, 1]) * r2 + relative[:, 2]
        columns = (source_copy[:, None] * n_prim + np.arange(n_prim)[None, :]).reshape(-1)
        full[t * n_prim:(t + 1) * n_prim] = first[:, :, columns, :]
    matrix = full.reshape(3 * n, 3 * n)
    matrix = 0.5 * (matrix + matrix.T)
    blocks = matrix.reshape(n, 3, n, 3)
    for i in range(n):  # acoustic sum rule: a rigid translation costs no energy
        blocks[i, :, i, :] -= blocks[i].sum(axis=1)
    return blocks.reshape(3 * n, 3 * n)


def frequencies_from_force_constants(matrix: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Gamma frequencies (cm^-1, ascending; imaginary ones negative) of force constants (eV/A^2), masses (amu)."""
    inv_sqrt = np.repeat(1.0 / np.sqrt(np.asarray(masses, float)), 3)
    eigenvalues = np.linalg.eigvalsh(matrix * inv_sqrt[:, None] * inv_sqrt[None, :])
    return np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * _HBAR_OMEGA_EV * EV_TO_INVCM


def spectrum_summary(frequencies: np.ndarray, imaginary_tol: float) -> tuple[dict, str]:
    """Max, mean and rms of the real optical modes, and the imaginary count (cm^-1); the 3 modes
    nearest zero are the acoustic translations and are left out."""
    order = np.argsort(np.abs(frequencies))
    optical = np.sort(frequencies[order[3:]])
    if len(optical) == 0 or optical[-1] <= 0:
        return {"gamma_n_imaginary": float(np.sum(optical < -imaginary_tol))}, "no real optical Gamma mode"
    real = optical[optical > 0]
    return {
        "gamma_max_frequency": float(real.max()),
        "gamma_mean_frequency": float(real.mean()),
        "gamma_rms_frequency": float(np.sqrt(np.mean(real ** 2))),
        "gamma_n_imaginary": float(np.sum(optical < -imaginary_tol)),
    }, ""
