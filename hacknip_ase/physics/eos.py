"""The E(V) equation-of-state fit (:mod:`ase.eos`) over isotropically strained copies."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from ase import units

#: ``ase.eos`` forms with parameters (E0, B0, B0', V0)
EOS_FORMS = ("birchmurnaghan", "murnaghan", "vinet", "birch", "pouriertarantola")


def fit_eos(volumes: Sequence[float], energies: Sequence[float], form: str = "birchmurnaghan") -> tuple[dict, str]:
    """Fit E(V) (A^3, eV); returns ({"v0" A^3, "e0" eV, "bulk_modulus" GPa, "bprime"}, reason) with reason "" on success."""
    from ase.eos import EquationOfState

    volumes, energies = np.asarray(volumes, float), np.asarray(energies, float)
    if not (np.all(np.isfinite(volumes)) and np.all(np.isfinite(energies))):
        return {}, "non-finite NIP output"
    eos = EquationOfState(volumes, energies, eos=form)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's OptimizeWarning: judged below, not printed
            eos.fit(warn=False)
    except (RuntimeError, ValueError, TypeError, np.linalg.LinAlgError, ZeroDivisionError, FloatingPointError):
        return {}, "EOS fit failed"
    e0, b0, bp, v0 = (float(x) for x in eos.eos_parameters)
    if not all(np.isfinite([e0, b0, bp, v0])):
        return {}, "EOS fit failed"
    if not volumes.min() < v0 < volumes.max():
        return {}, "EOS minimum outside the sampled volumes"
    if b0 <= 0:
        return {}, "non-positive fitted bulk modulus"
    return {"v0": v0, "e0": e0, "bulk_modulus": b0 / units.GPa, "bprime": bp}, ""
