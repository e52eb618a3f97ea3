"""What a physics descriptor row is: its columns and units, the reasons a value is NaN, the method
settings, one structure's result record, the EmbeddingCalculator outputs, and the cache identity."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidOptionError
from .eos import EOS_FORMS

#: Bump when a column, a reason code or a recipe changes (part of every cache identity).
PHYSICS_FORMAT = 2  # 2: elemental references guarded against NIP collapse (unbracketed scans, big drops)
QUANTITIES = ("energy", "formation", "eos", "elastic", "phonon")
#: Settings that change one quantity's numbers only (the others, e.g. ``relax``, change them all).
QUANTITY_SETTINGS = {"eos": ("eos_strains", "eos"), "elastic": ("elastic_strain",),
                     "phonon": ("phonon_min_length", "phonon_max_atoms", "phonon_displacement", "phonon_symprec",
                                "imaginary_tol")}
_MISSING = object()

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
CIJ_POSITIONS = {f"elastic_c{i + 1}{j + 1}": (i, j) for i, j in
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
    phonon_symprec : float
        Tolerance (A) of spglib's search for the rotations that spare displacements (default
        1e-5: the symmetry the structure has to within 1e-5 A); 0 displaces every first-copy
        atom +- along x, y and z.
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
    phonon_symprec: float = 1e-5
    imaginary_tol: float = 10.0
    max_batch_atoms: int = 1024
    max_force_batch_atoms: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantities", tuple(self.quantities))
        object.__setattr__(self, "eos_strains", tuple(float(s) for s in self.eos_strains))
        unknown = sorted(set(self.quantities) - set(QUANTITIES))
        if unknown or not self.quantities:
            raise InvalidOptionError(f"quantities must be a non-empty subset of {QUANTITIES}, got {self.quantities}")
        if self.eos not in EOS_FORMS:
            raise InvalidOptionError(f"eos must be one of {EOS_FORMS}, got {self.eos!r}")
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
        if not self.phonon_min_length >= 0 or not self.imaginary_tol >= 0 or not 0 <= self.phonon_symprec < 0.5:
            raise InvalidOptionError("phonon_min_length and imaginary_tol must be >= 0, phonon_symprec in [0, 0.5)")

    def identity(self) -> dict:
        """What changes the numbers of the quantities asked for (the cache identity's part from the
        method). Another quantity's settings are left out, so that adding or changing a phonon setting
        keeps the moduli already computed."""
        record = asdict(self)
        record.pop("max_batch_atoms")
        record.pop("max_force_batch_atoms")
        for quantity, names in QUANTITY_SETTINGS.items():
            if quantity not in self.quantities:
                for name in names:
                    record.pop(name)
        record["quantities"] = sorted(record["quantities"])
        return record

    def matches(self, recorded: dict) -> bool:
        """Whether settings recorded as a dict (a result file's, maybe written before a setting existed)
        give this method's numbers: every setting in :meth:`identity` present and equal."""
        wanted = json.loads(json.dumps(self.identity()))  # tuples as lists, as a JSON file holds them
        held = {name: recorded.get(name, _MISSING) for name in wanted}
        if isinstance(held["quantities"], list | tuple):
            held["quantities"] = sorted(held["quantities"])
        return held == wanted


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
    from ..outputs import register_output

    for name in PHYSICS_COLUMNS:
        register_output(name, ())
    register_output("elastic_tensor", (6, 6))


def physics_identity(source, settings: PhysicsSettings) -> dict | None:
    """Cache identity: backbone identity + method settings + :data:`PHYSICS_FORMAT` (None if the source has none)."""
    from ..backbones import Backbone

    if isinstance(source, Backbone):
        from ..engine import cache_identity

        base = cache_identity(source)
    else:
        base = getattr(source, "identity", None)
        if base is None:
            return None
    identity = {**base, "physics_format": PHYSICS_FORMAT, "settings": settings.identity(), "columns": list(PHYSICS_COLUMNS)}
    if "phonon" in settings.quantities:  # how much of a crystal's symmetry the phonon step may use
        identity["point_symmetry"] = getattr(source, "point_symmetry", None)
    return identity


def physics_root(cache_dir=None) -> Path:
    """Root of the physics cache: ``<cache_dir>/physics``, by default under the user cache."""
    if cache_dir is not None:
        return Path(cache_dir) / "physics"
    from ..files import cache_dir as user_cache_dir

    return user_cache_dir() / "physics"


def count_reasons(marked_rows) -> dict[str, dict[str, int]]:
    """{column: {reason: rows}} over rows given as {column: reason} dicts (the NaN reasons of a set)."""
    counts: dict[str, dict[str, int]] = {}
    for marked in marked_rows:
        for column, reason in marked.items():
            counts.setdefault(column, {}).setdefault(reason, 0)
            counts[column][reason] += 1
    return counts
