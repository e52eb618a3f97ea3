"""NIP-simulated physics descriptors: the frozen NIP used as a simulator of each structure.

For every structure the same frozen backbone that gives the embeddings also gives, from its
energies, forces and stresses (many strained or displaced copies per forward batch):

========================================  ==========  ==============================================
quantity (columns)                        unit        how
========================================  ==========  ==============================================
``energy_per_atom``                       eV/atom     NIP energy of the input structure
``formation_energy_per_atom``             eV/atom     energy minus the NIP's own elemental references
``pressure``                              GPa         -trace(stress)/3 of the input structure
``eos_bulk_modulus`` (+ B', V0, V0/V)     GPa         E(V) fit (:mod:`ase.eos`) over isotropic strains
``elastic_c11`` ... ``elastic_c66``       GPa         finite strains, 6 components x +-1 step
``bulk/shear_modulus_voigt/reuss/vrh``    GPa         Voigt, Reuss and Hill averages of that tensor
``elastic_min_eigenvalue``                GPa         smallest eigenvalue of the 6x6 tensor (stability)
``gamma_max_frequency`` (+ mean, rms)     cm^-1       Gamma point of a supercell, finite displacements
``gamma_n_imaginary``                     count       modes below -``imaginary_tol`` (acoustic excluded)
========================================  ==========  ==============================================

Conventions
-----------
Stress is ASE's: Voigt order xx, yy, zz, yz, xz, xy, eV/A^3, ``sigma = (1/V) dE/d(strain)``
(positive = tensile); the adapters convert CHGNet's GPa and SevenNet's sign and order to it.
A strain ``eps`` maps the cell to ``cell @ (1 + eps)`` with the atoms scaled along
(clamped ions: no internal relaxation, so elastic constants of crystals with free internal
coordinates are upper bounds of the relaxed-ion ones). Shear strains are engineering strains
(``eps_4 = 2 eps_yz``), so ``C_ij = d sigma_i / d eps_j`` in the usual Voigt form.

The structure is used as given unless ``PhysicsSettings(relax=True)``: then positions and cell
of a periodic structure are first relaxed with the NIP (BFGS on ASE's ``FrechetCellFilter``),
every quantity (energies included) refers to the relaxed structure, and the settings in the
cache identity and the metadata record it. The EOS fit finds the NIP's own equilibrium volume either way (``eos_volume_ratio``).

Phonons: the cell is repeated until every lattice vector is at least ``phonon_min_length``
(default 6 A; at most ``phonon_max_atoms`` atoms, else NaN); only the atoms of the first copy
are displaced (+-``phonon_displacement`` along x, y, z; translation symmetry gives the rest of
the supercell's force constants), the force constants are symmetrised, the acoustic sum rule is
imposed, and the mass-weighted Gamma-point dynamical matrix of the supercell is diagonalised.
Its eigenvalues are the frequencies at every q commensurate with the supercell. The three
acoustic (translation) modes are excluded; imaginary frequencies count as negative.

Formation energy: ``(E - sum_i mu_Z(i)) / n_atoms`` with ``mu_Z`` the NIP's energy per atom of
element Z in its lowest simple phase (fcc, bcc, hcp, diamond, simple cubic: a batched volume
scan, then the best one relaxed), or, for H, N, O, F, Cl, Br and I, of the relaxed dimer in
vacuum (a documented choice: DFT tables use the gas or a fitted correction for these, so
compare these elements' formation energies with care). Each element is computed once per
backbone and cached in a small JSON file (:class:`ElementalReferences`).

NaN policy: a quantity that cannot be computed is NaN, never a guess, and its reason is kept
(per column, one of :data:`REASONS`): not requested, a non-periodic structure (no stress), a
failed or unbracketed EOS fit, a non-positive bulk modulus, an elastic tensor that is not
positive definite (Reuss and Hill averages; Voigt and the C_ij are still given), a supercell
over the atom cap, no real optical mode, a backbone that rejects the structure.

Any object with ``forward(atoms_list, forces=bool)`` returning energies (eV), forces (eV/A)
and Voigt stresses (eV/A^3, None for a non-periodic structure), like
:meth:`hacknip_ase.backbones.Backbone.forward`, can be the simulator (the tests use ase's EMT).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from .errors import HackNIPError, InvalidOptionError, InvalidStructureError

log = logging.getLogger(__name__)

#: Bump when a column, a reason code or a recipe changes (part of every cache identity).
PHYSICS_FORMAT = 2  # 2: elemental references guarded against NIP collapse (unbracketed scans, big drops)
QUANTITIES = ("energy", "formation", "eos", "elastic", "phonon")

#: column -> (unit, quantity that produces it). The order is the order of the feature vector.
COLUMN_INFO = {
    "energy_per_atom": ("eV/atom", "energy"),
    "formation_energy_per_atom": ("eV/atom", "formation"),
    "pressure": ("GPa", "elastic"),
    "eos_bulk_modulus": ("GPa", "eos"),
    "eos_bulk_modulus_derivative": ("1", "eos"),
    "eos_volume_per_atom": ("A^3/atom", "eos"),
    "eos_volume_ratio": ("1", "eos"),
    **{f"elastic_c{ij}": ("GPa", "elastic") for ij in ("11", "22", "33", "12", "13", "23", "44", "55", "66")},
    "bulk_modulus_voigt": ("GPa", "elastic"),
    "bulk_modulus_reuss": ("GPa", "elastic"),
    "bulk_modulus_vrh": ("GPa", "elastic"),
    "shear_modulus_voigt": ("GPa", "elastic"),
    "shear_modulus_reuss": ("GPa", "elastic"),
    "shear_modulus_vrh": ("GPa", "elastic"),
    "elastic_min_eigenvalue": ("GPa", "elastic"),
    "gamma_max_frequency": ("cm^-1", "phonon"),
    "gamma_mean_frequency": ("cm^-1", "phonon"),
    "gamma_rms_frequency": ("cm^-1", "phonon"),
    "gamma_n_imaginary": ("count", "phonon"),
}
PHYSICS_COLUMNS = tuple(COLUMN_INFO)
COLUMN_UNITS = {name: unit for name, (unit, _) in COLUMN_INFO.items()}
_INDEX = {name: i for i, name in enumerate(PHYSICS_COLUMNS)}
#: Voigt (i, j) of the elastic_cij columns.
_CIJ = {f"elastic_c{i + 1}{j + 1}": (i, j) for i, j in
        [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2), (3, 3), (4, 4), (5, 5)]}

#: Why a value is NaN; the index is the code stored in the cache (append only).
REASONS = (
    "",  # computed
    "not requested",
    "not periodic: no stress or phonons",
    "rejected by the backbone",
    "no elemental reference",
    "EOS fit failed",
    "EOS minimum outside the sampled volumes",
    "non-positive fitted bulk modulus",
    "elastic tensor not positive definite",
    "supercell over the atom cap",
    "no real optical Gamma mode",
    "non-finite NIP output",
    "relaxation did not converge",
)
_CODE = {reason: code for code, reason in enumerate(REASONS)}

#: Elements referenced by their dimer in vacuum rather than a crystal (see the module notes).
MOLECULAR_ELEMENTS = ("H", "N", "O", "F", "Cl", "Br", "I")
REFERENCE_PHASES = ("fcc", "bcc", "hcp", "diamond", "sc")
#: hbar * sqrt(eV / (A^2 amu)) in eV: sqrt of a mass-weighted force-constant eigenvalue -> energy.
_HBAR_OMEGA_EV = units._hbar * 1e10 / np.sqrt(units._e * units._amu)
EV_TO_INVCM = 1.0 / units.invcm
_EOS_FORMS = ("birchmurnaghan", "murnaghan", "vinet", "birch", "pouriertarantola")


@dataclass(frozen=True)
class PhysicsSettings:
    """Method settings; every field except the two batch caps is part of the cache identity.

    Parameters
    ----------
    quantities : tuple of str
        Subset of :data:`QUANTITIES` to compute; the other columns are NaN ("not requested").
    eos_strains : tuple of float
        Linear isotropic strains of the lattice for the E(V) fit (default +-3 %: volumes +-9 %).
    eos : str
        ``ase.eos`` form with parameters (E0, B0, B0', V0): "birchmurnaghan" (default),
        "murnaghan", "vinet", "birch", "pouriertarantola".
    elastic_strain : float
        Strain step of the +-finite differences of the stress (default 0.01).
    relax : bool
        Relax positions and cell with the NIP first (BFGS + FrechetCellFilter).
    relax_fmax, relax_steps
        Convergence (eV/A) and step cap of that relaxation and of the elemental references'.
    phonon_min_length : float
        Minimum length (A) of every supercell lattice vector (default 6.0).
    phonon_max_atoms : int
        Largest supercell (atoms) the phonon step builds (default 128); beyond it: NaN.
    phonon_displacement : float
        Finite displacement (A), +- along each axis (default 0.01).
    imaginary_tol : float
        Modes below -``imaginary_tol`` cm^-1 count as imaginary (default 10).
    max_batch_atoms : int
        Atoms per energy-only forward pass (memory; does not change the numbers beyond float
        rounding).
    max_force_batch_atoms : int
        Atoms per forward pass with forces and stress (default 64): CHGNet differentiates each
        structure's energy w.r.t. its strain separately over the whole batch graph, so its cost
        grows with the square of the batch (24 copies of a 27-atom cell: 46 s in one batch,
        8 s in batches of 6, one thread).
    """

    quantities: tuple[str, ...] = QUANTITIES
    eos_strains: tuple[float, ...] = (-0.03, -0.02, -0.01, 0.0, 0.01, 0.02, 0.03)
    eos: str = "birchmurnaghan"
    elastic_strain: float = 0.01
    relax: bool = False
    relax_fmax: float = 0.02
    relax_steps: int = 200
    phonon_min_length: float = 6.0
    phonon_max_atoms: int = 128
    phonon_displacement: float = 0.01
    imaginary_tol: float = 10.0
    max_batch_atoms: int = 1024
    max_force_batch_atoms: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantities", tuple(self.quantities))
        object.__setattr__(self, "eos_strains", tuple(float(s) for s in self.eos_strains))
        unknown = sorted(set(self.quantities) - set(QUANTITIES))
        if unknown or not self.quantities:
            raise InvalidOptionError(f"quantities must be a non-empty subset of {QUANTITIES}, got {self.quantities}")
        if self.eos not in _EOS_FORMS:
            raise InvalidOptionError(f"eos must be one of {_EOS_FORMS}, got {self.eos!r}")
        if len(self.eos_strains) < 5 or len(set(self.eos_strains)) != len(self.eos_strains) \
                or not all(-0.2 < s < 0.2 for s in self.eos_strains):
            raise InvalidOptionError(f"eos_strains needs >= 5 distinct strains in (-0.2, 0.2), got {self.eos_strains}")
        for name in ("elastic_strain", "phonon_displacement", "relax_fmax"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < 0.5):
                raise InvalidOptionError(f"{name} must be in (0, 0.5), got {value!r}")
        for name in ("relax_steps", "phonon_max_atoms", "max_batch_atoms", "max_force_batch_atoms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidOptionError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.phonon_min_length >= 0 or not self.imaginary_tol >= 0:
            raise InvalidOptionError("phonon_min_length and imaginary_tol must be >= 0")

    def identity(self) -> dict:
        """What changes the numbers (the cache identity's part from the method)."""
        record = asdict(self)
        record.pop("max_batch_atoms")
        record.pop("max_force_batch_atoms")
        record["quantities"] = sorted(record["quantities"])
        return record


@dataclass
class PhysicsResult:
    """One structure's descriptors: ``values`` in :data:`PHYSICS_COLUMNS` order, NaN where not computed."""

    values: np.ndarray  #: (n_columns,) float
    reasons: list[str]  #: per column, "" where computed (see :data:`REASONS`)
    elastic_tensor: np.ndarray | None = None  #: (6, 6) GPa, ASE Voigt order
    frequencies: np.ndarray | None = None  #: Gamma frequencies of the supercell, cm^-1 (imaginary < 0)
    details: dict = field(default_factory=dict)  #: free-text notes (relaxation, supercell, fit)

    @classmethod
    def empty(cls, reason: str = "not requested") -> PhysicsResult:
        return cls(np.full(len(PHYSICS_COLUMNS), np.nan), [reason] * len(PHYSICS_COLUMNS))

    def set(self, name: str, value: float) -> None:
        value = float(value)
        self.values[_INDEX[name]] = value
        self.reasons[_INDEX[name]] = "" if np.isfinite(value) else "non-finite NIP output"

    def fail(self, names, reason: str) -> None:
        for name in [names] if isinstance(names, str) else names:
            self.values[_INDEX[name]] = np.nan
            self.reasons[_INDEX[name]] = reason

    def as_dict(self) -> dict:
        return dict(zip(PHYSICS_COLUMNS, self.values.tolist(), strict=True))

    def encode(self) -> np.ndarray:
        """(2, n_columns) float32 for the cache: values, reason codes."""
        return np.stack([self.values, [_CODE[r] for r in self.reasons]]).astype(np.float32)

    @classmethod
    def decode(cls, entry: np.ndarray) -> PhysicsResult:
        return cls(entry[0].astype(float), [REASONS[int(c)] for c in entry[1]])


def columns_of(quantity: str) -> list[str]:
    """The columns one quantity produces."""
    return [name for name, (_, q) in COLUMN_INFO.items() if q == quantity]


#: EmbeddingCalculator properties (registered ASE outputs): every column (scalars, units in
#: :data:`COLUMN_UNITS`) and the (6, 6) elastic tensor in GPa.
PHYSICS_OUTPUTS = (*PHYSICS_COLUMNS, "elastic_tensor")
_OUTPUT_QUANTITY = {**{name: q for name, (_, q) in COLUMN_INFO.items()}, "elastic_tensor": "elastic"}


def outputs_for(items, *, names: bool = False) -> tuple[str, ...]:
    """Quantities needed for output names (``names=False``), or output names of quantities (``names=True``)."""
    items = list(items)
    if names:
        return tuple(name for name in PHYSICS_OUTPUTS if _OUTPUT_QUANTITY[name] in items)
    unknown = sorted(set(items) - set(PHYSICS_OUTPUTS))
    if unknown:
        raise InvalidOptionError(f"unknown physics propert(ies) {', '.join(unknown)}; known: {', '.join(PHYSICS_OUTPUTS)}")
    return tuple(q for q in QUANTITIES if q in {_OUTPUT_QUANTITY[name] for name in items})


def register_physics_outputs() -> None:
    """Register :data:`PHYSICS_OUTPUTS` in ``ase.outputs`` (once)."""
    from .outputs import register_output

    for name in PHYSICS_COLUMNS:
        register_output(name, ())
    register_output("elastic_tensor", (6, 6))


# -- simulator plumbing -----------------------------------------------------------------------

@dataclass
class _Request:
    owner: int  #: index of the structure in the chunk
    kind: str  #: "base", "eos", "elastic", "phonon"
    atoms: Atoms
    forces: bool
    result: tuple | None = None  #: (energy, forces, stress)


class _Runner:
    """Runs requests through the simulator in batches of at most ``max_batch_atoms`` atoms, timed by kind."""

    def __init__(self, source, max_batch_atoms: int, max_force_batch_atoms: int | None = None) -> None:
        self.source, self.max_batch_atoms = source, max_batch_atoms
        self.max_force_batch_atoms = max_force_batch_atoms or max_batch_atoms
        self.cpu_seconds: dict[str, float] = {}

    def run(self, requests: list[_Request]) -> set[int]:
        """Fill ``result`` of every request; returns the owners whose structure the simulator rejected."""
        rejected: set[int] = set()
        for (kind, forces), group in _group(requests).items():
            start = time.process_time()
            cap = self.max_force_batch_atoms if forces else self.max_batch_atoms
            batch: list[_Request] = []
            for request in group:
                if batch and sum(len(r.atoms) for r in batch) + len(request.atoms) > cap:
                    rejected |= self._batch(batch, forces)
                    batch = []
                batch.append(request)
            if batch:
                rejected |= self._batch(batch, forces)
            self.cpu_seconds[kind] = self.cpu_seconds.get(kind, 0.0) + time.process_time() - start
        return rejected

    def _batch(self, batch: list[_Request], forces: bool) -> set[int]:
        try:
            self._fill(batch, forces)
            return set()
        except InvalidStructureError:
            if len(batch) == 1:
                return {batch[0].owner}
        rejected = set()  # find the structure(s) the backbone refuses, one owner at a time
        for owner in dict.fromkeys(r.owner for r in batch):
            try:
                self._fill([r for r in batch if r.owner == owner], forces)
            except InvalidStructureError as exc:
                log.info("physics: structure %d rejected: %s", owner, exc)
                rejected.add(owner)
        return rejected

    def _fill(self, batch: list[_Request], forces: bool) -> None:
        output = self.source.forward([r.atoms for r in batch], forces=forces)
        for k, request in enumerate(batch):
            request.result = (
                float(output.energy[k]),
                None if not forces else np.asarray(output.forces[k], float),
                None if not forces or output.stress is None or output.stress[k] is None
                else np.asarray(output.stress[k], float),
            )


def _group(requests: list[_Request]) -> dict:
    groups: dict = {}
    for request in requests:
        groups.setdefault((request.kind, request.forces), []).append(request)
    return groups


class SimulatorCalculator(Calculator):
    """ASE calculator view of a simulator (``forward(atoms_list, forces=True)``), for relaxations."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, source) -> None:
        super().__init__()
        self.source = source

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        self.results = {}
        super().calculate(atoms, properties, system_changes)
        output = self.source.forward([self.atoms], forces=True)
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


# -- the numerics, each testable on its own -------------------------------------------------------

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


# -- elemental references -------------------------------------------------------------------------

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
            folder = Path(root) if root is not None else _default_root()
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
                from .cache import atomic_write

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


def _default_root() -> Path:
    from .weights import cache_dir

    return cache_dir() / "physics"


def elemental_references(source, settings: PhysicsSettings | None = None, cache_dir=None) -> ElementalReferences:
    """The elemental references of ``source``, cached under ``<cache_dir>/physics/references`` (None: the
    user cache; False: in memory only). The same file serves :func:`physics_features` and the calculator."""
    settings = settings or PhysicsSettings()
    identity = physics_identity(source, settings)
    if cache_dir is False or identity is None:
        return ElementalReferences(source, None, fmax=settings.relax_fmax, steps=settings.relax_steps)
    root = Path(cache_dir) / "physics" if cache_dir is not None else _default_root()
    base = {k: v for k, v in identity.items() if k not in ("settings", "columns")}
    return ElementalReferences(source, base, root, fmax=settings.relax_fmax, steps=settings.relax_steps)


# -- the pipeline -----------------------------------------------------------------------------------

def compute_physics(structures: Sequence[Atoms], source, settings: PhysicsSettings | None = None,
                    references: ElementalReferences | None = None, runner: _Runner | None = None) -> list[PhysicsResult]:
    """Physics descriptors of a few structures, all their copies batched through ``source``.

    ``references`` is needed for "formation" (else that column is NaN, "no elemental reference").
    A structure the simulator rejects gets all columns NaN ("rejected by the backbone").
    """
    settings = settings or PhysicsSettings()
    runner = runner or _Runner(source, settings.max_batch_atoms, settings.max_force_batch_atoms)
    wanted = set(settings.quantities)
    results = [PhysicsResult.empty() for _ in structures]
    atoms_list = [_plain(a) for a in structures]
    periodic = [bool(a.pbc.all()) for a in atoms_list]
    needs_stress = bool(wanted & {"elastic"}) or settings.relax
    base = [_Request(i, "base", a, needs_stress and periodic[i]) for i, a in enumerate(atoms_list)]
    rejected = runner.run(base)

    if settings.relax:
        start = time.process_time()
        for i, atoms in enumerate(atoms_list):
            if i in rejected or not periodic[i]:
                continue
            try:
                relaxed, converged, steps = relax(atoms, source, fmax=settings.relax_fmax, steps=settings.relax_steps)
            except InvalidStructureError as exc:  # e.g. atoms driven together: the backbone refuses the step
                results[i].details["relaxation"] = {"converged": False, "error": f"{type(exc).__name__}: {exc}"}
                continue
            results[i].details["relaxation"] = {"converged": converged, "steps": steps}
            atoms_list[i] = relaxed
            base[i] = _Request(i, "base", relaxed, True)  # every quantity then refers to the relaxed structure
        runner.cpu_seconds["relax"] = runner.cpu_seconds.get("relax", 0.0) + time.process_time() - start
        rejected |= runner.run([base[i] for i in range(len(base)) if "relaxation" in results[i].details])

    derived: list[_Request] = []
    plans: dict[int, dict] = {}
    for i, atoms in enumerate(atoms_list):
        if i in rejected or not periodic[i]:
            continue
        if settings.relax and not results[i].details["relaxation"]["converged"]:
            continue
        plan = plans.setdefault(i, {})
        if "eos" in wanted:
            plan["eos"] = [_Request(i, "eos", strained(atoms, np.eye(3) * s), False) for s in settings.eos_strains]
            derived += plan["eos"]
        if "elastic" in wanted:
            plan["elastic"] = [_Request(i, "elastic", strained(atoms, voigt_strain(c, sign * settings.elastic_strain)), True)
                               for c in range(6) for sign in (1.0, -1.0)]
            derived += plan["elastic"]
        if "phonon" in wanted:
            repeats = phonon_repeats(atoms, settings.phonon_min_length)
            n_super = len(atoms) * int(np.prod(repeats))
            results[i].details["phonon_supercell"] = {"repeats": list(repeats), "atoms": n_super}
            if n_super <= settings.phonon_max_atoms:
                supercell, copies = displaced_supercells(atoms, repeats, settings.phonon_displacement)
                plan["phonon"] = (repeats, supercell, [_Request(i, "phonon", c, True) for c in copies])
                derived += plan["phonon"][2]
    rejected |= runner.run(derived)

    for i, result in enumerate(results):
        if i in rejected:
            results[i] = PhysicsResult.empty("rejected by the backbone")
            continue
        _fill_result(result, atoms_list[i], base[i], plans.get(i, {}), periodic[i], wanted, settings, references)
    return results


def _plain(atoms) -> Atoms:
    from .structures import as_atoms

    copy = as_atoms(atoms).copy()
    copy.calc = None
    return copy


def _fill_result(result: PhysicsResult, atoms: Atoms, base: _Request, plan: dict, periodic: bool,
                 wanted: set, settings: PhysicsSettings, references) -> None:
    if settings.relax and periodic and not result.details["relaxation"]["converged"]:
        for quantity in wanted:  # the energies too: with relax=True they are the relaxed structure's
            result.fail(columns_of(quantity), "relaxation did not converge")
        return
    energy, _, stress = base.result
    n = len(atoms)
    if "energy" in wanted:
        result.set("energy_per_atom", energy / n)
    if "formation" in wanted:
        if references is None:
            result.fail("formation_energy_per_atom", "no elemental reference")
        else:
            mu = sum(references.energy(z) for z in atoms.numbers)
            result.set("formation_energy_per_atom", (energy - mu) / n)
            if not np.isfinite(mu):
                result.fail("formation_energy_per_atom", "no elemental reference")
    if not periodic:
        for quantity in ("eos", "elastic", "phonon"):
            if quantity in wanted:
                result.fail(columns_of(quantity), "not periodic: no stress or phonons")
        return
    if "eos" in wanted:
        volumes = [r.atoms.get_volume() for r in plan["eos"]]
        fit, reason = fit_eos(volumes, [r.result[0] for r in plan["eos"]], settings.eos)
        if reason:
            result.fail(columns_of("eos"), reason)
        else:
            result.set("eos_bulk_modulus", fit["bulk_modulus"])
            result.set("eos_bulk_modulus_derivative", fit["bprime"])
            result.set("eos_volume_per_atom", fit["v0"] / n)
            result.set("eos_volume_ratio", fit["v0"] / atoms.get_volume())
    if "elastic" in wanted:
        stresses = [r.result[2] for r in plan["elastic"]]
        if stress is None or any(s is None for s in stresses):
            result.fail(columns_of("elastic"), "not periodic: no stress or phonons")
        else:
            result.set("pressure", -float(np.mean(stress[:3])) / units.GPa)
            c = elastic_tensor(np.array(stresses[0::2]), np.array(stresses[1::2]), settings.elastic_strain)
            if not np.all(np.isfinite(c)):
                result.fail(columns_of("elastic"), "non-finite NIP output")
            else:
                result.elastic_tensor = c
                for name, (i, j) in _CIJ.items():
                    result.set(name, c[i, j])
                moduli = vrh_moduli(c)
                for name in ("bulk_modulus_voigt", "shear_modulus_voigt", "elastic_min_eigenvalue",
                             "bulk_modulus_reuss", "shear_modulus_reuss", "bulk_modulus_vrh", "shear_modulus_vrh"):
                    if name in moduli:
                        result.set(name, moduli[name])
                    else:
                        result.fail(name, "elastic tensor not positive definite")
    if "phonon" in wanted:
        if "phonon" not in plan:
            result.fail(columns_of("phonon"), "supercell over the atom cap")
        else:
            repeats, supercell, requests = plan["phonon"]
            forces = [r.result[1] for r in requests]
            if not all(np.all(np.isfinite(f)) for f in forces):
                result.fail(columns_of("phonon"), "non-finite NIP output")
                return
            matrix = force_constants(n, repeats, forces, settings.phonon_displacement)
            result.frequencies = frequencies_from_force_constants(matrix, supercell.get_masses())
            summary, reason = spectrum_summary(result.frequencies, settings.imaginary_tol)
            if reason:
                result.fail(columns_of("phonon"), reason)
            for name, value in summary.items():
                result.set(name, value)


# -- datasets: cached, resumable ---------------------------------------------------------------------

def physics_identity(source, settings: PhysicsSettings) -> dict | None:
    """Cache identity: backbone identity + method settings + :data:`PHYSICS_FORMAT` (None if the source has none)."""
    from .backbones import Backbone

    if isinstance(source, Backbone):
        from .featurize import cache_identity

        base = cache_identity(source)
    else:
        base = getattr(source, "identity", None)
        if base is None:
            return None
    return {**base, "physics_format": PHYSICS_FORMAT, "settings": settings.identity(), "columns": list(PHYSICS_COLUMNS)}


def physics_features(structures, backbone="chgnet", *, settings: PhysicsSettings | dict | None = None,
                     cache_dir: str | os.PathLike | None | bool = None, progress: bool = True,
                     on_error: str = "skip", ids: Sequence[str] | None = None,
                     batch_size: int = 16) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """Physics descriptors of many structures, one cached row each.

    Parameters
    ----------
    structures : sequence of ase Atoms or pymatgen structures
    backbone : str, Backbone or simulator
        Registry name, built backbone, or any object with ``forward(atoms_list, forces=bool)``
        (a cache then needs its ``identity`` attribute, a JSON-serialisable dict).
    settings : PhysicsSettings or dict, optional
        Method settings (defaults: :class:`PhysicsSettings`).
    cache_dir : path, None or False
        Root of the cache (entries under ``<root>/physics``, elemental references under
        ``<root>/physics/references``); None: ``cache_dir()/physics``; False: no cache.
    progress : bool
        tqdm progress bar (structures/s).
    on_error : "skip" or "raise"
        "skip" (default): a structure the backbone rejects gets a row of NaN with the reason
        "rejected by the backbone" (rows always align with ``structures``); "raise": the first
        one raises its typed error.
    ids : sequence of str, optional
        Row ids for the metadata (default "0", "1", ...).
    batch_size : int
        Structures whose copies share forward passes (each one is cached when its chunk is done,
        so a killed run resumes after the last finished chunk).

    Returns
    -------
    values : ndarray (n, len(PHYSICS_COLUMNS)) float
        NaN where a quantity could not be computed.
    columns : tuple of str
        :data:`PHYSICS_COLUMNS`; units in :data:`COLUMN_UNITS`.
    metadata : dict
        ``units``, ``settings``, ``backbone`` (identity), ``physics_format``, ``reasons``
        ({id: {column: reason}} for every NaN), ``reason_counts`` ({column: {reason: count}}),
        ``references`` (elemental reference records used), ``cache`` (hits/misses/writes),
        ``computed`` (structures computed here) and ``cpu_seconds`` (process time per stage:
        base, eos, elastic, phonon, relax, references).
    """
    from tqdm.auto import tqdm

    from .backbones import get_backbone
    from .cache import FeatureCache

    if on_error not in ("raise", "skip"):
        raise InvalidOptionError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidOptionError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(settings, dict):
        settings = PhysicsSettings(**settings)
    settings = settings or PhysicsSettings()
    source = get_backbone(backbone) if isinstance(backbone, str) else backbone
    if not callable(getattr(source, "forward", None)):
        raise InvalidOptionError(f"backbone must be a registry name or have forward(), got {type(source).__name__}")
    structures = [_plain(s) for s in structures]
    ids = [str(i) for i in range(len(structures))] if ids is None else [str(i) for i in ids]
    if len(ids) != len(structures):
        raise InvalidOptionError(f"got {len(ids)} ids for {len(structures)} structures")
    identity = physics_identity(source, settings)
    root = None
    if cache_dir is not False:
        if identity is None:
            raise InvalidOptionError(f"{type(source).__name__} has no identity to key a cache with; pass cache_dir=False")
        root = Path(cache_dir) / "physics" if cache_dir is not None else _default_root()
    cache = None if root is None else FeatureCache(identity, (2, len(PHYSICS_COLUMNS)), root)
    references = elemental_references(source, settings, cache_dir) if "formation" in settings.quantities else None
    runner = _Runner(source, settings.max_batch_atoms, settings.max_force_batch_atoms)

    values = np.full((len(structures), len(PHYSICS_COLUMNS)), np.nan)
    reasons: list[list[str]] = [[] for _ in structures]
    computed = 0
    name = identity.get("name", type(source).__name__) if identity else type(source).__name__
    with tqdm(total=len(structures), unit="struct", desc=f"physics {name}", disable=not progress,
              dynamic_ncols=True, smoothing=0.1) as bar:
        for start in range(0, len(structures), batch_size):
            chunk = list(range(start, min(start + batch_size, len(structures))))
            keys = {i: cache.key(structures[i]) for i in chunk} if cache is not None else {}
            todo = []
            for i in chunk:
                entry = cache.get(keys[i]) if cache is not None else None
                if entry is None:
                    todo.append(i)
                else:
                    result = PhysicsResult.decode(entry)
                    values[i], reasons[i] = result.values, result.reasons
            if todo:
                results = compute_physics([structures[i] for i in todo], source, settings, references, runner)
                for i, result in zip(todo, results, strict=True):
                    if result.reasons[0] == "rejected by the backbone":
                        if on_error == "raise":
                            _raise_rejection(source, structures[i], ids[i])
                    elif cache is not None:  # a rejection is not cached: the backbone may learn the element
                        cache.put(keys[i], result.encode())
                    values[i], reasons[i] = result.values, result.reasons
                computed += len(todo)
            bar.update(len(chunk))
            if cache is not None:
                bar.set_postfix(cached=cache.hits, refresh=False)

    if references is not None:
        runner.cpu_seconds["references"] = references.cpu_seconds
    by_row, counts = {}, {}
    for sid, row in zip(ids, reasons, strict=True):
        marked = {c: r for c, r in zip(PHYSICS_COLUMNS, row, strict=True) if r}
        if marked:
            by_row[sid] = marked
        for column, reason in marked.items():
            counts.setdefault(column, {}).setdefault(reason, 0)
            counts[column][reason] += 1
    used = sorted({chemical_symbols[z] for s in structures for z in s.numbers})
    metadata = {
        "physics_format": PHYSICS_FORMAT,
        "units": dict(COLUMN_UNITS),
        "settings": asdict(settings),
        "backbone": identity,
        "reasons": by_row,
        "reason_counts": counts,
        "references": {} if references is None else {s: references.records[s] for s in used if s in references.records},
        "cache": None if cache is None else {**cache.stats(), "folder": str(cache.folder)},
        "computed": computed,
        "cpu_seconds": dict(runner.cpu_seconds),
    }
    return values, PHYSICS_COLUMNS, metadata


def _raise_rejection(source, atoms: Atoms, sid: str) -> None:
    """Re-run the base pass of a rejected structure so its own typed error propagates, naming the structure."""
    try:
        source.forward([atoms], forces=False)
    except InvalidStructureError as exc:
        raise type(exc)(f"structure {sid!r}: {exc}") from exc
    raise HackNIPError(f"structure {sid!r}: rejected by the backbone in a strained or displaced copy")
