"""Clamped-ion elastic constants from finite strains of the stress, and their Voigt-Reuss-Hill averages."""

from __future__ import annotations

import numpy as np
from ase import Atoms, units


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """A copy with cell ``cell @ (1 + strain)`` and the atoms scaled along (clamped ions)."""
    copy = atoms.copy()
    copy.calc = None
    copy.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return copy


def voigt_strain(component: int, step: float) -> np.ndarray:
    """3x3 symmetric strain of one Voigt component (0..5: xx, yy, zz, yz, xz, xy; engineering shear)."""
    strain = np.zeros((3, 3))
    if component < 3:
        strain[component, component] = step
    else:
        i, j = {3: (1, 2), 4: (0, 2), 5: (0, 1)}[component]
        strain[i, j] = strain[j, i] = step / 2
    return strain


def elastic_tensor(stress_plus: np.ndarray, stress_minus: np.ndarray, step: float) -> np.ndarray:
    """C_ij (GPa) = d sigma_i / d eps_j by central differences; rows j of the inputs are the +-eps_j stresses (eV/A^3)."""
    columns = (np.asarray(stress_plus) - np.asarray(stress_minus)) / (2 * step)  # (6 strains, 6 stresses)
    tensor = columns.T / units.GPa
    return 0.5 * (tensor + tensor.T)  # the asymmetric part is finite-difference noise


def vrh_moduli(c: np.ndarray) -> dict[str, float]:
    """Voigt, Reuss and Hill bulk and shear moduli (GPa) of a 6x6 Voigt stiffness tensor (GPa).

    Reuss and Hill need the compliance; for a tensor that is not positive definite they are NaN.
    """
    k_v = (c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[0, 2] + c[1, 2])) / 9
    g_v = (c[0, 0] + c[1, 1] + c[2, 2] - (c[0, 1] + c[0, 2] + c[1, 2]) + 3 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15
    moduli = {"bulk_modulus_voigt": k_v, "shear_modulus_voigt": g_v, "elastic_min_eigenvalue": np.linalg.eigvalsh(c)[0]}
    if moduli["elastic_min_eigenvalue"] > 0:
        s = np.linalg.inv(c)
        k_r = 1 / (s[0, 0] + s[1, 1] + s[2, 2] + 2 * (s[0, 1] + s[0, 2] + s[1, 2]))
        g_r = 15 / (4 * (s[0, 0] + s[1, 1] + s[2, 2]) - 4 * (s[0, 1] + s[0, 2] + s[1, 2]) + 3 * (s[3, 3] + s[4, 4] + s[5, 5]))
        moduli.update(bulk_modulus_reuss=k_r, shear_modulus_reuss=g_r,
                      bulk_modulus_vrh=(k_v + k_r) / 2, shear_modulus_vrh=(g_v + g_r) / 2)
    return {name: float(value) for name, value in moduli.items()}
