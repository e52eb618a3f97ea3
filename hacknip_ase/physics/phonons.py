"""Gamma-point phonons of a supercell from finite displacements of the first copy's atoms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms, units

#: hbar * sqrt(eV / (A^2 amu)) in eV: sqrt of a mass-weighted force-constant eigenvalue -> energy.
_HBAR_OMEGA_EV = units._hbar * 1e10 / np.sqrt(units._e * units._amu)
EV_TO_INVCM = 1.0 / units.invcm


def phonon_repeats(atoms: Atoms, min_length: float) -> tuple[int, int, int]:
    """Repeats along each lattice vector so that every one is at least ``min_length`` (A)."""
    return tuple(max(1, int(np.ceil(min_length / length - 1e-9))) for length in atoms.cell.lengths())


def displaced_supercells(atoms: Atoms, repeats, step: float) -> tuple[Atoms, list[Atoms]]:
    """The supercell and its copies with one first-cell atom moved +-``step`` (A) along x, y, z.

    Order: atom a, axis alpha, sign (+, -): index ``(a * 3 + alpha) * 2 + (0 for +, 1 for -)``.
    """
    supercell = atoms.repeat(repeats)
    supercell.calc = None
    copies = []
    for a in range(len(atoms)):
        for alpha in range(3):
            for sign in (1.0, -1.0):
                copy = supercell.copy()
                copy.positions[a, alpha] += sign * step
                copies.append(copy)
    return supercell, copies


def force_constants(n_prim: int, repeats, forces: Sequence[np.ndarray], step: float) -> np.ndarray:
    """Supercell force constants (3N, 3N), eV/A^2, from the forces of :func:`displaced_supercells`.

    Translation symmetry: the block between atom b of copy t and atom b' of copy t' is the
    first copy's block between b and b' of copy (t' - t), with copies numbered the way
    ``Atoms.repeat`` numbers them. The result is symmetrised and the acoustic sum rule imposed.
    """
    r0, r1, r2 = (int(r) for r in repeats)
    n_copies = r0 * r1 * r2
    n = n_prim * n_copies
    first = np.zeros((n_prim, 3, n, 3))  # first[a, alpha, j, beta] = d^2E / du_(a, alpha) du_(j, beta)
    for a in range(n_prim):
        for alpha in range(3):
            plus, minus = forces[(a * 3 + alpha) * 2], forces[(a * 3 + alpha) * 2 + 1]
            first[a, alpha] = -(np.asarray(plus) - np.asarray(minus)) / (2 * step)
    grid = np.array([(m0, m1, m2) for m0 in range(r0) for m1 in range(r1) for m2 in range(r2)])
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
