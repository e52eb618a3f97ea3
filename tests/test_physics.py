"""NIP-simulated physics (hacknip_ase.physics) on simulators whose answers are known.

ase's EMT stands in for the NIP where a reference needs an independent route (elastic
constants from EMT energies, not stresses); a harmonic spring model has analytic phonons; an
analytic Birch-Murnaghan curve has a known bulk modulus. CHGNet runs only in the smoke tests.
"""

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.neighborlist import neighbor_list

from hacknip_ase import errors, physics
from hacknip_ase.backbones.base import ForwardResult
from hacknip_ase.physics import PHYSICS_COLUMNS, PhysicsSettings, compute_physics, physics_features

COL = {name: i for i, name in enumerate(PHYSICS_COLUMNS)}


class EMTSimulator:
    """ase's EMT behind the simulator protocol (``forward(atoms_list, forces=..., stress=...)``);
    ``asked`` records each call's (forces, stress)."""

    identity = {"name": "emt", "model": "ase"}

    def __init__(self, reject: str | None = None, interrupt_after: int | None = None):
        self.reject, self.interrupt_after, self.calls = reject, interrupt_after, 0
        self.asked = []

    def forward(self, atoms_list, forces=False, stress=None):
        stress = forces if stress is None else stress
        self.calls += 1
        self.asked.append((forces, stress))
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt  # a killed run
        energies, all_forces, stresses = [], [], []
        for atoms in atoms_list:
            if self.reject and self.reject in atoms.get_chemical_symbols():
                raise errors.UnsupportedElementError(f"{self.reject} not covered")
            atoms = atoms.copy()
            atoms.calc = EMT()
            energies.append(atoms.get_potential_energy())
            if forces:
                all_forces.append(atoms.get_forces())
            if stress:
                stresses.append(atoms.get_stress() if atoms.pbc.all() else None)
        return ForwardResult(node_features=[], energy=np.array(energies),
                             forces=all_forces if forces else None, stress=stresses if stress else None)


def equilibrium_cu() -> Atoms:
    """Cubic Cu at EMT's own zero-stress lattice constant (bisection on the pressure)."""
    low, high = 3.5, 3.7
    for _ in range(60):
        a = 0.5 * (low + high)
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.calc = EMT()
        low, high = (a, high) if atoms.get_stress()[0] < 0 else (low, a)  # compressed: negative stress
    return bulk("Cu", "fcc", a=0.5 * (low + high), cubic=True)


def test_emt_elastic_constants_match_energy_second_derivatives():
    atoms = equilibrium_cu()
    result = compute_physics([atoms], EMTSimulator(), PhysicsSettings(quantities=("elastic", "eos")))[0]
    c = result.elastic_tensor
    # Independent route: C_ij = (1/V) d2E / d eps_i d eps_j from EMT energies (at zero stress the
    # strain measures agree to second order), central differences.
    h, volume = 1e-3, atoms.get_volume()

    def energy(strain):
        copy = physics.strained(atoms, strain)
        copy.calc = EMT()
        return copy.get_potential_energy()

    expected = np.zeros((6, 6))
    for i in range(6):
        for j in range(6):
            e = [energy(physics.voigt_strain(i, si * h) + physics.voigt_strain(j, sj * h))
                 for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
            expected[i, j] = (e[0] - e[1] - e[2] + e[3]) / (4 * h * h) / volume / units.GPa
    np.testing.assert_allclose(c, expected, atol=1.0)  # GPa
    assert c[0, 0] > c[0, 1] > 0 and c[3, 3] > 0
    assert abs(result.values[COL["pressure"]]) < 1e-6
    # cubic: K_V = K_R = (C11 + 2 C12)/3; the EOS fit of energies gives the same bulk modulus
    k = (c[0, 0] + 2 * c[0, 1]) / 3
    assert result.values[COL["bulk_modulus_vrh"]] == pytest.approx(k, rel=1e-6)
    assert result.values[COL["bulk_modulus_reuss"]] == pytest.approx(k, rel=1e-6)
    assert result.values[COL["eos_bulk_modulus"]] == pytest.approx(k, rel=0.02)
    assert result.values[COL["eos_volume_ratio"]] == pytest.approx(1.0, abs=1e-3)
    g_v = (c[0, 0] - c[0, 1] + 3 * c[3, 3]) / 5
    assert result.values[COL["shear_modulus_voigt"]] == pytest.approx(g_v, rel=1e-6)
    assert result.values[COL["shear_modulus_reuss"]] < g_v  # Reuss <= Voigt, equal only if isotropic


def test_elastic_tensor_does_not_depend_on_the_cell_choice():
    cubic, primitive = equilibrium_cu(), bulk("Cu", "fcc", a=equilibrium_cu().cell[0, 0])
    settings = PhysicsSettings(quantities=("elastic",))
    c_cubic, c_prim = (compute_physics([a], EMTSimulator(), settings)[0].elastic_tensor for a in (cubic, primitive))
    np.testing.assert_allclose(c_prim, c_cubic, atol=0.05)


def birch_murnaghan(v, e0, b0, bp, v0):
    eta = (v0 / v) ** (2 / 3)
    return e0 + 9 * v0 * b0 / 16 * ((eta - 1) ** 3 * bp + (eta - 1) ** 2 * (6 - 4 * eta))


def test_eos_fit_recovers_a_known_curve():
    b0 = 100 * units.GPa
    volumes = 20.0 * (1 + np.linspace(-0.03, 0.03, 7)) ** 3
    fit, reason = physics.fit_eos(volumes, birch_murnaghan(volumes, -3.0, b0, 4.5, 20.4))
    assert reason == ""
    assert fit["bulk_modulus"] == pytest.approx(100.0, rel=1e-4)
    assert fit["bprime"] == pytest.approx(4.5, rel=1e-3)
    assert fit["v0"] == pytest.approx(20.4, rel=1e-6)


def test_eos_fit_failures_are_reasons_not_numbers():
    volumes = np.linspace(18.0, 22.0, 7)
    # minimum far outside the sampled volumes
    far = birch_murnaghan(volumes, -3.0, 100 * units.GPa, 4.0, 30.0)
    assert physics.fit_eos(volumes, far) == ({}, "EOS minimum outside the sampled volumes")
    # a maximum, not a minimum: negative curvature
    _, reason = physics.fit_eos(volumes, -((volumes - 20.0) ** 2))
    assert reason in ("non-positive fitted bulk modulus", "EOS fit failed", "EOS minimum outside the sampled volumes")
    assert physics.fit_eos(volumes, np.full(7, np.nan)) == ({}, "non-finite NIP output")


class LinearEnergy(EMTSimulator):
    """Energy linear in the volume: no minimum, so the EOS step must give NaN with its reason."""

    identity = {"name": "linear", "model": "test"}

    def forward(self, atoms_list, forces=False, stress=None):
        result = super().forward(atoms_list, forces, stress)
        result.energy = np.array([a.get_volume() for a in atoms_list])
        return result


def test_a_failed_fit_in_the_pipeline_is_nan_with_its_reason():
    result = compute_physics([bulk("Cu")], LinearEnergy(), PhysicsSettings(quantities=("eos",)))[0]
    for name in physics.columns_of("eos"):
        assert np.isnan(result.values[COL[name]])
        assert result.reasons[COL[name]] in ("EOS minimum outside the sampled volumes", "EOS fit failed",
                                             "non-positive fitted bulk modulus")


def test_unstable_tensor_has_voigt_but_no_reuss_or_hill():
    c = np.diag([0.0, 0.0, 0.0, 30.0, 30.0, 30.0])
    c[:3, :3] = 120.0
    c[np.arange(3), np.arange(3)] = 100.0  # C12 = 120 > C11 = 100: C11 - C12 < 0, unstable
    moduli = physics.vrh_moduli(c)
    assert moduli["elastic_min_eigenvalue"] < 0
    assert "bulk_modulus_reuss" not in moduli and "shear_modulus_vrh" not in moduli
    assert moduli["bulk_modulus_voigt"] == pytest.approx((300 + 2 * 360) / 9)


class SpringModel:
    """Harmonic toy: two atoms per cell, vector springs k_x between the chain neighbours along x
    (bond 1.5 A) and k_y between each atom and its own images along y (2.5 A)."""

    identity = {"name": "springs", "model": "test"}
    # not invariant under every rotation (the springs keep to x and y), but under the orthorhombic
    # cell's own mirrors and 2-fold axes, which are all the phonon step asks about
    point_symmetry = "O(3)"
    a, b, k_x, k_y = 3.0, 2.5, 5.0, 1.0  # A, A, eV/A^2, eV/A^2

    def cell(self) -> Atoms:
        atoms = Atoms("HeAr", positions=[[0, 0, 0], [self.a / 2, 0, 0]], cell=[self.a, self.b, 7.0], pbc=True)
        atoms.set_masses([2.0, 5.0])
        return atoms

    def forward(self, atoms_list, forces=False, stress=None):
        energies, all_forces = [], []
        for atoms in atoms_list:
            i, j, d = neighbor_list("ijD", atoms, 2.6)
            along_x = np.abs(d[:, 0]) > np.abs(d[:, 1])
            rest = np.where(along_x[:, None], [[1, 0, 0]], [[0, 1, 0]]) * np.where(
                along_x, self.a / 2 * np.sign(d[:, 0]), self.b * np.sign(d[:, 1]))[:, None]
            u = d - rest
            k = np.where(along_x, self.k_x, self.k_y)
            energies.append(0.25 * np.sum(k * np.sum(u * u, axis=1)))  # each bond is listed twice
            f = np.zeros((len(atoms), 3))
            np.add.at(f, i, k[:, None] * u)
            all_forces.append(f)
        return ForwardResult(node_features=[], energy=np.array(energies), forces=all_forces if forces else None,
                             stress=[None] * len(atoms_list) if forces else None)


def analytic_spring_spectrum(model: SpringModel, repeats) -> np.ndarray:
    """Frequencies (cm^-1) at every q commensurate with the supercell, from the 2x2 Bloch matrices."""
    m = np.array([2.0, 5.0])
    values = []
    for nx in range(repeats[0]):
        for ny in range(repeats[1]):
            qa, qb = 2 * np.pi * nx / repeats[0], 2 * np.pi * ny / repeats[1]
            onsite = 2 * model.k_x + 2 * model.k_y * (1 - np.cos(qb))
            off = -model.k_x * (1 + np.exp(-1j * qa))
            phi = np.array([[onsite, off], [np.conj(off), onsite]])
            omega2 = np.linalg.eigvalsh(phi / np.sqrt(np.outer(m, m))).real  # eV / (A^2 amu)
            values += list(np.repeat(omega2, 3))  # isotropic springs: x, y, z alike
    omega = np.sqrt(np.clip(values, 0, None) * units._e / 1e-20 / units._amu)  # rad/s
    return np.sort(omega / (2 * np.pi * units._c * 100))  # cm^-1


def test_harmonic_toy_has_its_analytic_gamma_spectrum():
    model = SpringModel()
    atoms = model.cell()
    settings = PhysicsSettings(quantities=("phonon",), phonon_min_length=6.0)
    repeats = physics.phonon_repeats(atoms, 6.0)
    assert repeats == (2, 3, 1)  # different along each axis: the translation bookkeeping is exercised
    result = compute_physics([atoms], model, settings)[0]
    expected = analytic_spring_spectrum(model, repeats)
    np.testing.assert_allclose(np.sort(result.frequencies), expected, atol=1e-3 * expected.max())
    optical = np.sort(expected)[3:]
    assert result.values[COL["gamma_max_frequency"]] == pytest.approx(expected.max(), rel=1e-4)
    assert result.values[COL["gamma_n_imaginary"]] == 0
    real = optical[optical > 1.0]
    assert result.values[COL["gamma_mean_frequency"]] == pytest.approx(real.mean(), rel=1e-3)
    assert result.details["phonon_supercell"] == {"repeats": [2, 3, 1], "atoms": 12, "displaced_copies": 6}


def emt_forces(copies) -> list[np.ndarray]:
    forces = []
    for atoms in copies:
        atoms = atoms.copy()
        atoms.calc = EMT()
        forces.append(atoms.get_forces())
    return forces


def symmetry_cases() -> dict:
    l12 = bulk("Cu", "fcc", a=3.7, cubic=True)
    l12[0].symbol = "Au"
    rattled = bulk("Cu", "fcc", a=3.6, cubic=True)
    rattled.rattle(0.05, seed=1)
    return {  # name: (structure, displaced copies with symmetry, tolerance on the force constants)
        "fcc, rhombohedral primitive cell": (bulk("Cu", "fcc", a=3.6), 1, 1e-9),
        "rocksalt": (bulk("CuAu", "rocksalt", a=4.6), 2, 1e-9),
        "L1_2 (two orbits)": (l12, 3, 1e-9),
        # hexagonal: site rotations of 120 degrees mix x and y, fitted by least squares; the
        # difference is the finite differences' own O(step^2) anharmonic part
        "hcp": (bulk("Cu", "hcp", a=2.55, c=4.2), 2, 1e-4),
        "hcp, two cells along c (unequal repeats)": (bulk("Cu", "hcp", a=2.55, c=4.2).repeat((1, 1, 2)), 2, 1e-4),
        "wurtzite (no inversion: - copies computed)": (bulk("CuAu", "wurtzite", a=3.0, c=4.9), 6, 1e-4),
        "rattled (no symmetry)": (rattled, 24, 0.0),
    }


@pytest.mark.parametrize("name", list(symmetry_cases()))
def test_symmetry_spares_displacements_not_accuracy(name):
    atoms, expected_copies, tolerance = symmetry_cases()[name]
    repeats = physics.phonon_repeats(atoms, 6.0)
    plain = physics.displacement_plan(atoms, repeats, symprec=0.0)
    reduced = physics.displacement_plan(atoms, repeats, symprec=1e-5)
    plain_copies, reduced_copies = plain.displaced(0.01), reduced.displaced(0.01)
    assert len(plain_copies) == 6 * len(atoms) and len(reduced_copies) == expected_copies
    expected = physics.force_constants(repeats, plain.first_rows(emt_forces(plain_copies), 0.01))
    found = physics.force_constants(repeats, reduced.first_rows(emt_forces(reduced_copies), 0.01))
    assert np.abs(found - expected).max() <= tolerance * np.abs(expected).max() + 1e-12


def test_proper_rotations_only_for_a_model_without_parity():
    """SevenNet-0 has no parity: inversion and mirrors may not relate its forces. In wurtzite the
    in-plane displacement is reversed only by mirrors and the 6_3 screw's site part, 3m, keeps
    just its 3-fold rotation: more copies with rotations alone, and the same force constants."""
    atoms = bulk("CuAu", "wurtzite", a=3.0, c=4.9)
    repeats = physics.phonon_repeats(atoms, 6.0)
    with_parity = physics.displacement_plan(atoms, repeats, 1e-5, symmetry="O(3)")
    rotations_only = physics.displacement_plan(atoms, repeats, 1e-5, symmetry="SO(3)")
    assert len(with_parity.displaced(0.01)) == 6 and len(rotations_only.displaced(0.01)) == 8
    assert all(np.linalg.det(op.rotation) > 0 for site in rotations_only.sites for op in site.site_operations)
    assert any(np.linalg.det(op.rotation) < 0 for site in with_parity.sites for op in site.site_operations)
    expected = physics.force_constants(repeats, with_parity.first_rows(emt_forces(with_parity.displaced(0.01)), 0.01))
    found = physics.force_constants(repeats, rotations_only.first_rows(emt_forces(rotations_only.displaced(0.01)), 0.01))
    np.testing.assert_allclose(found, expected, atol=1e-4 * np.abs(expected).max())
    assert len(physics.displacement_plan(atoms, repeats, 1e-5, symmetry=None).displaced(0.01)) == 24
    with pytest.raises(ValueError, match="symmetry"):
        physics.displacement_plan(atoms, repeats, 1e-5, symmetry="C1")


def test_phonon_symprec_is_in_the_settings_and_changes_only_the_copies():
    model = SpringModel()
    plain = compute_physics([model.cell()], model, PhysicsSettings(quantities=("phonon",), phonon_symprec=0.0))[0]
    reduced = compute_physics([model.cell()], model, PhysicsSettings(quantities=("phonon",)))[0]
    assert plain.details["phonon_supercell"]["displaced_copies"] == 12
    assert reduced.details["phonon_supercell"]["displaced_copies"] == 6  # mirrors give the - copies
    np.testing.assert_allclose(reduced.frequencies, plain.frequencies, atol=1e-6 * plain.frequencies.max())
    assert PhysicsSettings().identity()["phonon_symprec"] == 1e-5
    assert physics.physics_identity(model, PhysicsSettings(quantities=("phonon",)))["point_symmetry"] == "O(3)"
    assert "point_symmetry" not in physics.physics_identity(model, PhysicsSettings(quantities=("eos",)))
    unknown = compute_physics([bulk("Cu", "fcc", a=3.6)], EMTSimulator(), PhysicsSettings(quantities=("phonon",)))[0]
    assert unknown.details["phonon_supercell"]["displaced_copies"] == 6  # no point_symmetry: no symmetry used
    with pytest.raises(errors.InvalidOptionError, match="phonon_symprec"):
        PhysicsSettings(phonon_symprec=-1.0)


def test_supercell_over_the_cap_is_nan_with_its_reason():
    model = SpringModel()
    result = compute_physics([model.cell()], model, PhysicsSettings(quantities=("phonon",), phonon_max_atoms=8))[0]
    assert np.isnan(result.values[COL["gamma_max_frequency"]])
    assert result.reasons[COL["gamma_max_frequency"]] == "supercell over the atom cap"


def test_spectrum_summary_counts_imaginary_modes_and_skips_acoustic():
    frequencies = np.array([-0.5, 0.2, 0.3, -50.0, -5.0, 100.0, 200.0])
    summary, reason = physics.spectrum_summary(frequencies, imaginary_tol=10.0)
    assert reason == "" and summary["gamma_n_imaginary"] == 1  # -5 is within the tolerance
    assert summary["gamma_max_frequency"] == 200.0 and summary["gamma_mean_frequency"] == 150.0
    summary, reason = physics.spectrum_summary(np.array([0.0, 0.0, 0.0, -80.0, -90.0]), imaginary_tol=10.0)
    assert reason == "no real optical Gamma mode" and summary == {"gamma_n_imaginary": 2.0}


def test_molecules_get_nan_with_reasons_and_rows_align(tmp_path):
    structures = [bulk("Cu", cubic=True), molecule("CH4"), bulk("Al")]
    settings = PhysicsSettings(quantities=("energy", "formation", "eos", "elastic"))
    values, columns, meta = physics_features(structures, EMTSimulator(), settings=settings, cache_dir=tmp_path,
                                             progress=False, ids=["cu", "ch4", "al"])
    assert columns == PHYSICS_COLUMNS and values.shape == (3, len(PHYSICS_COLUMNS))
    assert np.isfinite(values[1, COL["energy_per_atom"]])
    assert np.isfinite(values[1, COL["formation_energy_per_atom"]])  # molecules have references too
    assert meta["references"]["H"]["phase"] == "dimer"
    assert np.isnan(values[1, COL["bulk_modulus_vrh"]])
    assert meta["reasons"]["ch4"]["bulk_modulus_vrh"] == "not periodic: no stress or phonons"
    assert meta["reasons"]["cu"]["gamma_max_frequency"] == "not requested"
    assert np.isfinite(values[[0, 2], COL["bulk_modulus_vrh"]]).all()
    assert meta["units"]["bulk_modulus_vrh"] == "GPa" and meta["units"]["gamma_max_frequency"] == "cm^-1"
    assert meta["references"]["Cu"]["phase"] in physics.REFERENCE_PHASES
    # an element's formation energy against its own relaxed reference is ~0 or positive
    assert values[0, COL["formation_energy_per_atom"]] > -1e-3


def test_cache_hits_and_resume_after_a_kill(tmp_path):
    structures = [bulk("Cu", "fcc", a=3.6 + 0.02 * i) for i in range(4)]
    settings = PhysicsSettings(quantities=("energy", "eos", "elastic"))
    with pytest.raises(KeyboardInterrupt):  # killed after the first structure's passes
        physics_features(structures, EMTSimulator(interrupt_after=3), settings=settings, cache_dir=tmp_path,
                         progress=False, batch_size=1)
    values, _, meta = physics_features(structures, EMTSimulator(), settings=settings, cache_dir=tmp_path,
                                       progress=False, batch_size=1)
    assert meta["computed"] == 3 and meta["cache"]["hits"] == 1
    again, _, meta2 = physics_features(structures, EMTSimulator(), settings=settings, cache_dir=tmp_path,
                                       progress=False)
    assert meta2["computed"] == 0 and meta2["cache"]["hits"] == 4
    np.testing.assert_allclose(again, values, rtol=1e-6)  # float32 entries
    assert meta2["reasons"] == meta["reasons"]  # reasons survive the cache as codes
    fresh, _, _ = physics_features(structures, EMTSimulator(), settings=settings, cache_dir=False, progress=False)
    np.testing.assert_allclose(fresh, values, rtol=1e-6, equal_nan=True)
    # other settings: another identity, nothing reused
    _, _, meta3 = physics_features(structures[:1], EMTSimulator(), settings=PhysicsSettings(
        quantities=("energy", "eos", "elastic"), elastic_strain=0.005), cache_dir=tmp_path, progress=False)
    assert meta3["computed"] == 1


def test_rejected_structures_skip_to_nan_or_raise(tmp_path):
    structures = [bulk("Cu"), bulk("Ni"), bulk("Al")]
    settings = PhysicsSettings(quantities=("energy", "elastic"))
    values, _, meta = physics_features(structures, EMTSimulator(reject="Ni"), settings=settings, cache_dir=tmp_path,
                                       progress=False)
    assert np.isnan(values[1]).all() and np.isfinite(values[[0, 2], COL["energy_per_atom"]]).all()
    assert set(meta["reasons"]["1"].values()) == {"rejected by the backbone"}
    _, _, again = physics_features(structures, EMTSimulator(), settings=settings, cache_dir=tmp_path, progress=False)
    assert again["computed"] == 1  # the rejection was not cached
    with pytest.raises(errors.UnsupportedElementError, match="'1'"):
        physics_features(structures, EMTSimulator(reject="Ni"), settings=settings, cache_dir=False, progress=False,
                         on_error="raise")


def test_relaxation_is_recorded_and_reaches_equilibrium():
    squeezed = bulk("Cu", "fcc", a=3.45, cubic=True)
    settings = PhysicsSettings(quantities=("eos", "elastic"), relax=True)
    result = compute_physics([squeezed], EMTSimulator(), settings)[0]
    assert result.details["relaxation"]["converged"]
    assert abs(result.values[COL["pressure"]]) < 0.5  # GPa, after the cell relaxation
    assert result.values[COL["eos_volume_ratio"]] == pytest.approx(1.0, abs=0.01)


def test_bad_options_are_typed_errors():
    with pytest.raises(errors.InvalidOptionError):
        PhysicsSettings(quantities=("energy", "magic"))
    with pytest.raises(errors.InvalidOptionError):
        PhysicsSettings(eos_strains=(0.0, 0.01))
    with pytest.raises(errors.InvalidOptionError):
        physics_features([bulk("Cu")], EMTSimulator(), on_error="ignore", cache_dir=False)
    with pytest.raises(errors.InvalidOptionError, match="identity"):
        physics_features([bulk("Cu")], SpringModelWithoutIdentity(), progress=False)
    with pytest.raises(errors.InvalidOptionError):
        physics.outputs_for(["bulk_modulus", "elastic_tensor"])


class SpringModelWithoutIdentity(SpringModel):
    identity = None


# -- CHGNet smoke ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chgnet():
    import torch

    from hacknip_ase import get_backbone

    torch.set_num_threads(1)
    return get_backbone("chgnet")


def test_chgnet_smoke_on_tiny_crystals(chgnet, tmp_path):
    structures = [bulk("Si"), bulk("NaCl", "rocksalt", a=5.64)]
    values, _, meta = physics_features(structures, chgnet, cache_dir=tmp_path, progress=False)
    assert not meta["reasons"], meta["reasons"]  # everything computed for simple stable crystals
    si, nacl = values
    for row in values:
        assert row[COL["elastic_min_eigenvalue"]] > 0
        # the stress route (1 % strains) and the energy route (EOS over +-3 %) see the same NIP; they
        # differ because CHGNet's E(V) is far from quadratic over +-9 % volume (K(V) from energies
        # changes from 141 to 110 GPa between 0.1 % and 1 % steps for Si)
        assert 0.5 < row[COL["bulk_modulus_vrh"]] / row[COL["eos_bulk_modulus"]] < 2.0
    # stresses are the energy's strain derivative (sign, units, Voigt order of the adapter)
    si_atoms, h = structures[0], 1e-3
    for component in (0, 1, 2):
        plus, minus = (chgnet.forward([physics.strained(si_atoms, physics.voigt_strain(component, s * h))]).energy[0]
                       for s in (1, -1))
        expected = (plus - minus) / (2 * h) / si_atoms.get_volume()
        assert chgnet.forward([si_atoms], forces=True).stress[0][component] == pytest.approx(expected, rel=0.02)
    assert 60 < si[COL["bulk_modulus_vrh"]] < 160  # GPa; DFT ~ 90
    assert 15 < nacl[COL["bulk_modulus_vrh"]] < 35  # GPa; DFT ~ 25
    assert 350 < si[COL["gamma_max_frequency"]] < 600  # cm^-1; Raman 520
    assert abs(si[COL["formation_energy_per_atom"]]) < 0.05  # Si against the NIP's own Si
    assert nacl[COL["formation_energy_per_atom"]] < -1.0  # eV/atom; DFT ~ -2
    assert meta["backbone"]["name"] == "chgnet" and meta["backbone"]["physics_format"] == physics.PHYSICS_FORMAT


def test_chgnet_calculator_physics_properties(chgnet, tmp_path):
    from hacknip_ase import EmbeddingCalculator

    calc = EmbeddingCalculator(chgnet, physics=["bulk_modulus_vrh", "elastic_tensor", "formation_energy_per_atom"],
                               cache_dir=tmp_path)
    assert "gamma_max_frequency" not in calc.implemented_properties  # phonons not asked for: not computed
    atoms = bulk("Si")
    atoms.calc = calc
    props = atoms.get_properties(["energy", "bulk_modulus_vrh", "elastic_tensor"])
    assert props["elastic_tensor"].shape == (6, 6)
    k = props["elastic_tensor"][:3, :3].sum() / 9
    assert props["bulk_modulus_vrh"] == pytest.approx(k, rel=1e-6)  # cubic: K_V = K_R = K_VRH
    assert atoms.calc.get_property("formation_energy_per_atom") == pytest.approx(0.0, abs=0.05)
    water = molecule("H2O")
    water.calc = calc
    assert np.isnan(water.calc.get_property("bulk_modulus_vrh", water))
    assert calc.physics_reasons["bulk_modulus_vrh"] == "not periodic: no stress or phonons"
    assert np.isfinite(water.calc.get_property("formation_energy_per_atom", water))
    broken = bulk("Si")
    broken.positions[1] = broken.positions[0] + 0.1  # overlapping atoms: the backbone refuses
    broken.calc = calc
    with pytest.raises(errors.OverlappingAtomsError):
        broken.calc.get_property("bulk_modulus_vrh", broken)
    assert calc.results == {} and calc.physics_reasons == {}


def test_pymatgen_structures_are_accepted():
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = AseAtomsAdaptor.get_structure(bulk("Cu"))
    settings = PhysicsSettings(quantities=("energy", "formation"))
    values, _, _ = physics_features([structure], EMTSimulator(), settings=settings, cache_dir=False, progress=False)
    expected, _, _ = physics_features([bulk("Cu")], EMTSimulator(), settings=settings, cache_dir=False, progress=False)
    np.testing.assert_allclose(values, expected, equal_nan=True)
    direct = compute_physics([structure], EMTSimulator(), settings, physics.ElementalReferences(EMTSimulator(), None))
    np.testing.assert_allclose(direct[0].values, expected[0], equal_nan=True)


def test_unconverged_relaxation_leaves_every_quantity_nan():
    rattled = bulk("Cu", "fcc", a=3.45, cubic=True)
    rattled.rattle(0.05, seed=3)
    settings = PhysicsSettings(quantities=("energy", "eos"), relax=True, relax_steps=1)
    result = compute_physics([rattled], EMTSimulator(), settings)[0]
    assert result.details["relaxation"] == {"converged": False, "steps": 1}
    assert np.isnan(result.values[COL["energy_per_atom"]]) and np.isnan(result.values[COL["eos_bulk_modulus"]])
    assert result.reasons[COL["energy_per_atom"]] == "relaxation did not converge"


class CollapsingEMT(EMTSimulator):
    """EMT with an unphysical hole at short distances (as SevenNet-0 has for compressed boron)."""

    identity = {"name": "hole", "model": "test"}

    def forward(self, atoms_list, forces=False, stress=None):
        result = super().forward(atoms_list, forces, stress)
        for k, atoms in enumerate(atoms_list):
            if neighbor_list("d", atoms, 2.2).size:  # any pair closer than 2.2 A
                result.energy[k] = -500.0 * len(atoms)
        return result


def test_references_are_guarded_against_a_collapsing_nip():
    record_ok = physics.ElementalReferences(EMTSimulator(), None)
    assert -0.5 < record_ok.energy(29) < 0.5  # EMT's Cu is near zero
    guarded = physics.ElementalReferences(CollapsingEMT(), None)
    assert np.isnan(guarded.energy(29))  # every phase falls into the hole at the smallest scale
    assert guarded.records["Cu"]["error"] == "no phase has a bracketed energy minimum in the scan"


def test_each_step_asks_the_simulator_only_for_what_it_reads():
    """Elastic constants read stresses, phonons forces, the EOS energies: CHGNet takes each
    derivative in its own backward pass, so asking for both costs ~30-45 % more per copy."""
    simulator = EMTSimulator()
    settings = PhysicsSettings(quantities=("eos", "elastic", "phonon"), phonon_min_length=0.0)
    result = compute_physics([bulk("Cu", cubic=True)], simulator, settings)[0]  # 4 atoms: optical Gamma modes
    assert np.isfinite(result.values[COL["bulk_modulus_vrh"]]) and np.isfinite(result.values[COL["gamma_max_frequency"]])
    assert set(simulator.asked) == {(False, True), (False, False), (True, False)}  # never both


def test_chgnet_gives_the_same_stress_and_forces_when_asked_for_one():
    from hacknip_ase import get_backbone

    chgnet = get_backbone("chgnet")
    atoms = bulk("NaCl", "rocksalt", a=5.5).repeat((2, 1, 1))
    atoms.rattle(0.02, seed=1)
    both = chgnet.forward([atoms], forces=True)
    stress_only, forces_only = chgnet.forward([atoms], stress=True), chgnet.forward([atoms], forces=True, stress=False)
    assert stress_only.forces is None and forces_only.stress is None
    np.testing.assert_allclose(stress_only.stress[0], both.stress[0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(forces_only.forces[0], both.forces[0], rtol=1e-6, atol=1e-9)
