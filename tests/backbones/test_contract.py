"""The shared contract every backbone adapter must satisfy."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from hacknip_ase import EmbeddingCalculator, errors
from hacknip_ase.backbones import available_backbones
from hacknip_ase.structures import box_in_vacuum

from .conftest import BACKBONE_NAMES

TOL = 1e-5


def rocksalt():
    return bulk("NaCl", "rocksalt", a=5.64)


def perturbed_alloy():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.numbers[[1, 4]] = 28  # Ni
    atoms.rattle(0.05, seed=3)
    return atoms


def test_every_adapter_is_registered():
    assert available_backbones() == sorted(BACKBONE_NAMES)


def test_info_describes_the_model(backbone):
    info = backbone.info
    assert info.n_depths >= 2 and info.dim > 0
    assert len(info.weights_sha256) == 64 and int(info.weights_sha256, 16) >= 0
    assert info.cutoff > 0 and 14 in info.elements


def test_architecture_is_the_network_the_weights_fill(backbone):
    """The adapter's ``architecture`` (what tests fill with random weights) is the loaded network."""
    untrained = type(backbone).architecture(backbone.info.model, backbone.config)
    loaded = backbone.model.state_dict()
    assert {k: v.shape for k, v in untrained.state_dict().items()} == {k: v.shape for k, v in loaded.items()}
    assert not any(p.requires_grad for p in backbone.model.parameters())  # frozen


@pytest.mark.parametrize("make", [rocksalt, perturbed_alloy, lambda: molecule("H2O")])
def test_one_pass_equals_truncated_runs(backbone, make):
    atoms = make()
    nodes = backbone.embed([atoms], per_atom=True)[0]
    assert nodes.shape == (len(atoms), backbone.info.n_depths, backbone.info.dim)
    for depth in range(backbone.info.n_depths):
        reference = backbone.truncated_features(atoms, depth)
        np.testing.assert_allclose(nodes[:, depth], reference, atol=TOL, rtol=0)


def test_batch_equals_single(backbone):
    structures = [rocksalt(), perturbed_alloy(), molecule("CH4")]
    batched = backbone.embed(structures)
    single = np.concatenate([backbone.embed([s]) for s in structures])
    assert batched.shape == (3, backbone.info.n_depths, backbone.info.dim)
    np.testing.assert_allclose(batched, single, atol=TOL, rtol=0)


def _invariance_cases(atoms):
    translated = atoms.copy()
    translated.translate([0.37, -1.2, 2.9])
    order = np.random.default_rng(1).permutation(len(atoms))
    permuted = atoms[order]
    cases = {"translation": translated, "permutation": permuted}
    if atoms.pbc.all():
        cases["supercell"] = atoms.repeat((2, 1, 2))
    return cases


def _moved(atoms, operation):
    moved = atoms.copy()
    moved.positions = atoms.positions @ operation.T
    if atoms.pbc.any():
        moved.cell = atoms.cell.array @ operation.T
    return moved


@pytest.mark.parametrize("make", [perturbed_alloy, lambda: molecule("CH3CH2OH")])
def test_forces_obey_the_declared_point_symmetry(backbone, make):
    """``point_symmetry`` is a promise the phonon step relies on (it spares displacements that a
    crystal's rotations relate): the forces of a rotated structure, and for "O(3)" of an
    inverted one, are the rotated forces."""
    atoms = make()
    forces = backbone.forward([atoms], forces=True).forces[0]
    rotation = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))  # a proper rotation
    promised = {"rotation": (rotation, backbone.point_symmetry in ("O(3)", "SO(3)")),
                "inversion": (-np.eye(3), backbone.point_symmetry == "O(3)")}
    for label, (operation, holds) in promised.items():
        if holds:
            moved = backbone.forward([_moved(atoms, operation)], forces=True).forces[0]
            error = np.abs(moved - forces @ operation.T).max()  # eV/A; float32 models: ~1e-5 of the forces
            assert error < 1e-4 + 1e-4 * np.abs(forces).max(), f"{label}: force error {error:.1e} eV/A"


@pytest.mark.parametrize("make", [perturbed_alloy, lambda: molecule("CH3CH2OH")])
def test_pooled_embeddings_are_invariant(backbone, make):
    atoms = make()
    reference = backbone.embed([atoms])[0]
    cases = _invariance_cases(atoms)
    rotated = atoms.copy()
    rotation = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))[0]
    rotated.positions = atoms.positions @ rotation
    if atoms.pbc.any():
        rotated.cell = atoms.cell.array @ rotation
    if backbone.point_symmetry is not None:
        cases["rotation"] = rotated
    for label, variant in cases.items():
        np.testing.assert_allclose(backbone.embed([variant])[0], reference, atol=1e-4, rtol=1e-4, err_msg=label)


def test_calculator_energy_matches_native_calculator(built):
    backbone, module = built
    for atoms in (perturbed_alloy(), molecule("H2O")):
        ours = atoms.copy()
        ours.calc = EmbeddingCalculator(backbone)
        native = atoms.copy()
        if backbone.needs_cell and not atoms.pbc.any():
            native = box_in_vacuum(atoms, backbone.info.cutoff)
        native.calc = module.native_calculator(backbone)
        assert ours.get_potential_energy() == pytest.approx(native.get_potential_energy(), abs=1e-4, rel=1e-5)
        np.testing.assert_allclose(ours.get_forces(), native.get_forces(), atol=1e-4)
        if atoms.pbc.all():
            np.testing.assert_allclose(ours.get_stress(), native.get_stress(), atol=1e-5)


def test_calculator_properties(backbone):
    atoms = bulk("Si")
    atoms.calc = EmbeddingCalculator(backbone)
    props = atoms.get_properties(["energy", "embeddings", "node_embeddings"])
    assert props["embeddings"].shape == (backbone.info.n_depths, backbone.info.dim)
    assert props["node_embeddings"].shape == (2, backbone.info.n_depths, backbone.info.dim)
    assert np.isfinite(props["energy"])


BAD_INPUTS = {
    "empty": (lambda z: Atoms(), errors.EmptyStructureError),
    "nan position": (lambda z: Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), errors.NonFiniteStructureError),
    "inf cell": (lambda z: Atoms("Si", cell=[np.inf, 3, 3], pbc=True), errors.NonFiniteStructureError),
    "overlap": (lambda z: Atoms("CO", positions=[[0, 0, 0], [0.2, 0, 0]]), errors.OverlappingAtomsError),
    "singular cell": (lambda z: Atoms("Si2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True),
                      errors.SingularCellError),
    "unsupported element": (lambda z: Atoms(numbers=[z, 8], positions=[[0, 0, 0], [2, 0, 0]]), errors.UnsupportedElementError),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_typed_error(built, case):
    backbone, module = built
    make, error = BAD_INPUTS[case]
    with pytest.raises(error) as info:
        backbone.embed([make(module.UNSUPPORTED_Z)])
    assert isinstance(info.value, ValueError)
    if case == "unsupported element":
        from ase.data import chemical_symbols

        assert chemical_symbols[module.UNSUPPORTED_Z] in str(info.value) and backbone.name in str(info.value)


def test_trainable_view_matches_the_frozen_last_depth_and_trains_only_its_layers(backbone):
    """Every adapter's fine-tuning view: a deep copy whose pooled forward is the last depth's
    embedding, with gradient reaching trainable parameters only (ORB/MACE: random weights)."""
    structures = [rocksalt(), perturbed_alloy()]
    view = backbone.trainable_view("cpu")
    assert view.model is not backbone.model and view.trainable_names() and view.frozen_names()
    pooled = view.pooled_features(structures)
    np.testing.assert_allclose(pooled.detach().numpy(), backbone.embed(structures)[:, -1], atol=TOL, rtol=1e-5)
    pooled.pow(2).sum().backward()
    grads = {n for n, p in view.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and grads <= set(view.trainable_names())
    assert not any(p.requires_grad for p in backbone.model.parameters())  # the shared backbone stays frozen
