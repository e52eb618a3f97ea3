"""Keeping the calculator's embeddings and learned properties when atoms are written to disk.

ASE's file formats store a calculator's standard results (energy, forces, stress) and drop the
rest. What survives a plain write (measured with ase 3.2x):

==========================  ==============  ================  =====================
format                      embeddings      node_embeddings   learned properties
==========================  ==============  ================  =====================
``db.write(atoms)``         dropped         dropped           dropped
``db.write(atoms, data=)``  kept            kept              kept
extxyz ``write``            kept in info    kept in arrays    kept in info
``.traj`` ``write``         kept in info    dropped           kept in info
==========================  ==============  ================  =====================

extxyz is text: values come back to about 8 significant digits; the others are exact.

The "kept" rows need the helpers below: :func:`attach_results` copies the results into
``atoms.info`` (and per-atom features into ``atoms.arrays``), :func:`db_data` builds the
``data=`` dict of an ase.db row, and :func:`stored_results` reads either back with the
calculator's shapes.
"""

from __future__ import annotations

import numpy as np

from .errors import NoResultsError

#: Results that ASE's formats already store through the calculator.
_STANDARD = {"energy", "free_energy", "forces", "stress", "energies", "stresses", "dipole", "charges",
             "magmom", "magmoms"}
#: Key of the per-atom features in ``atoms.arrays``: (n_atoms, n_depths * dim), since per-atom
#: arrays must be two-dimensional.
NODE_KEY = "node_embeddings"


def _extra_results(atoms) -> dict:
    calc = atoms.calc
    if calc is None or not getattr(calc, "results", None):
        raise NoResultsError("the atoms have no calculated results; call atoms.get_properties([...]) first")
    return {key: value for key, value in calc.results.items() if key not in _STANDARD}


def attach_results(atoms, *, node_embeddings: bool = False):
    """Copy the calculator's embeddings and learned properties into ``atoms.info`` (in place).

    ``node_embeddings=True`` also puts the per-atom features into ``atoms.arrays`` (kept by
    extxyz, dropped by .traj). Returns ``atoms``.
    """
    for key, value in _extra_results(atoms).items():
        if key == NODE_KEY:
            if node_embeddings:
                atoms.arrays[NODE_KEY] = np.asarray(value).reshape(len(atoms), -1)
        else:
            atoms.info[key] = np.asarray(value) if np.ndim(value) else value
    return atoms


def db_data(atoms, *, node_embeddings: bool = True) -> dict:
    """The ``data=`` dict for ``db.write(atoms, data=db_data(atoms))``: every non-standard result."""
    return {key: np.asarray(value) for key, value in _extra_results(atoms).items()
            if node_embeddings or key != NODE_KEY}


def stored_results(obj) -> dict:
    """Embeddings and learned properties back from read atoms (info/arrays) or an ase.db row (data)."""
    if hasattr(obj, "data") and not hasattr(obj, "info"):  # an ase.db row
        return {key: np.asarray(value) if np.ndim(value) else value for key, value in dict(obj.data).items()}
    results = {key: value for key, value in obj.info.items()}
    if NODE_KEY in obj.arrays:
        nodes = np.asarray(obj.arrays[NODE_KEY])
        n_depths = np.shape(results.get("embeddings"))[0] if "embeddings" in results else 1
        results[NODE_KEY] = nodes.reshape(len(obj), n_depths, -1)
    return results
