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
are displaced (+-``phonon_displacement``; translation symmetry gives the rest of the supercell's
force constants). Of those only the atoms and directions that the crystal's rotations (spglib,
``phonon_symprec``) do not relate are displaced: a rotation that maps the supercell onto itself
carries one atom's force constants to another's, and a displaced atom's site rotations turn one
displacement into others, fitted by least squares (``phonon_symprec=0``: every atom, +- x, y, z).
The force constants are symmetrised, the acoustic sum rule is
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

from .elastic import elastic_tensor, strained, voigt_strain, vrh_moduli
from .eos import EOS_FORMS, fit_eos
from .features import physics_features
from .phonons import (
                      EV_TO_INVCM,
                      DisplacementPlan,
                      displacement_plan,
                      force_constants,
                      frequencies_from_force_constants,
                      phonon_repeats,
                      spectrum_summary,
)
from .pipeline import compute_physics
from .records import (
                      COLUMN_INFO,
                      COLUMN_UNITS,
                      PHYSICS_COLUMNS,
                      PHYSICS_FORMAT,
                      PHYSICS_OUTPUTS,
                      QUANTITIES,
                      REASONS,
                      PhysicsResult,
                      PhysicsSettings,
                      columns_of,
                      outputs_for,
                      physics_identity,
                      register_physics_outputs,
)
from .references import (
                      MOLECULAR_ELEMENTS,
                      REFERENCE_PHASES,
                      ElementalReferences,
                      elemental_references,
)
from .simulator import SimulatorCalculator, relax

__all__ = [
                      "COLUMN_INFO",
                      "COLUMN_UNITS",
                      "EOS_FORMS",
                      "EV_TO_INVCM",
                      "MOLECULAR_ELEMENTS",
                      "PHYSICS_COLUMNS",
                      "PHYSICS_FORMAT",
                      "PHYSICS_OUTPUTS",
                      "QUANTITIES",
                      "REASONS",
                      "REFERENCE_PHASES",
                      "DisplacementPlan",
                      "ElementalReferences",
                      "PhysicsResult",
                      "PhysicsSettings",
                      "SimulatorCalculator",
                      "columns_of",
                      "compute_physics",
                      "displacement_plan",
                      "elastic_tensor",
                      "elemental_references",
                      "fit_eos",
                      "force_constants",
                      "frequencies_from_force_constants",
                      "outputs_for",
                      "phonon_repeats",
                      "physics_features",
                      "physics_identity",
                      "register_physics_outputs",
                      "relax",
                      "spectrum_summary",
                      "strained",
                      "voigt_strain",
                      "vrh_moduli",
]
