"""EmbeddingCalculator behaves like any ASE calculator (CHGNet, real shipped weights)."""

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.db import connect
from ase.optimize import BFGS

from hacknip_ase import EmbeddingCalculator, errors


class CountingBackbone:
    """Wraps a backbone and counts forward passes."""

    def __init__(self, backbone):
        self.inner, self.calls = backbone, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def forward(self, structures, **kwargs):
        self.calls += 1
        return self.inner.forward(structures, **kwargs)


@pytest.fixture(scope="module")
def calc():
    return EmbeddingCalculator("chgnet")


def test_get_properties_and_shapes(calc):
    atoms = bulk("Si")
    atoms.calc = calc
    props = atoms.get_properties(["energy", "embeddings", "node_embeddings"])
    assert props["embeddings"].shape == (5, 64)
    assert props["node_embeddings"].shape == (2, 5, 64)
    np.testing.assert_allclose(props["node_embeddings"].mean(axis=0), props["embeddings"], atol=1e-6)
    assert props["energy"] == pytest.approx(atoms.get_potential_energy())


def test_results_reused_until_atoms_change(calc):
    counting = CountingBackbone(calc.backbone)
    calc.backbone = counting
    try:
        atoms = bulk("Cu", cubic=True)
        atoms.calc = calc
        first = atoms.get_properties(["energy", "embeddings"])["embeddings"]
        atoms.get_properties(["embeddings"])
        atoms.get_potential_energy()
        assert counting.calls == 1
        for change in (lambda a: a.rattle(0.05, seed=1), lambda a: a.set_cell(a.cell * 1.02, scale_atoms=True),
                       lambda a: a.numbers.__setitem__(0, 28)):
            change(atoms)
            changed = atoms.get_properties(["embeddings"])["embeddings"]
            assert not np.allclose(changed, first)
            first = changed
        assert counting.calls == 4
    finally:
        calc.backbone = counting.inner


def test_runs_inside_an_optimizer():
    atoms = molecule("H2O")
    atoms.positions[0] += [0.1, 0.05, 0.0]
    atoms.calc = EmbeddingCalculator("chgnet")
    start = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=0.05, steps=50)
    assert atoms.get_potential_energy() < start
    assert np.abs(atoms.get_forces()).max() < 0.05


def test_molecule_has_no_stress(calc):
    atoms = molecule("H2O")
    atoms.calc = calc
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_results_go_into_ase_db(tmp_path, calc):
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.calc = calc
    embeddings = atoms.get_properties(["embeddings"])["embeddings"]
    atoms.get_forces()
    with connect(tmp_path / "structures.db") as db:
        row_id = db.write(atoms, data={"embeddings": embeddings}, backbone=calc.backbone.info.name)
    row = connect(tmp_path / "structures.db").get(id=row_id)
    np.testing.assert_allclose(row.data["embeddings"], embeddings)
    assert row.energy == pytest.approx(atoms.get_potential_energy())
    assert row.backbone == "chgnet"


def test_supercell_expansion_keeps_pooled_embedding():
    atoms = bulk("Si")
    plain = EmbeddingCalculator("chgnet")
    expanded = EmbeddingCalculator("chgnet", expand_supercell=True)
    props = [c.calculate_properties(atoms, ["energy", "embeddings", "node_embeddings"]) for c in (plain, expanded)]
    np.testing.assert_allclose(props[0]["embeddings"], props[1]["embeddings"], atol=1e-4)
    assert props[1]["node_embeddings"].shape == (2, 5, 64)
    assert props[1]["energy"] == pytest.approx(props[0]["energy"], rel=1e-5)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(errors.UnknownBackboneError, match="chgnet.*mace.*orb.*sevennet"):
        EmbeddingCalculator("schnet")


def test_missing_weights_file_says_where(tmp_path):
    with pytest.raises(errors.WeightsNotFoundError, match=str(tmp_path)):
        EmbeddingCalculator("chgnet", weights=tmp_path / "nope.pth.tar")


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(errors.CorruptWeightsError, match="bad.pth.tar"):
        EmbeddingCalculator("chgnet", weights=bad)


def test_failed_calculation_leaves_no_stale_results(calc, tmp_path):
    silicon = bulk("Si")
    silicon.calc = calc
    si_energy = silicon.get_properties(["energy", "stress"])["energy"]
    water = molecule("H2O")
    water.calc = calc
    with pytest.raises(PropertyNotImplementedError):
        water.get_properties(["energy", "stress"])  # a molecule has no stress
    assert calc.results == {}
    energy = water.get_potential_energy()
    assert energy != pytest.approx(si_energy)
    assert energy == pytest.approx(EmbeddingCalculator("chgnet").get_potential_energy(molecule("H2O")), abs=1e-5)

    silicon.get_potential_energy()
    overlapping = molecule("CO")
    overlapping.positions[1] = overlapping.positions[0] + [0.2, 0, 0]
    overlapping.calc = calc
    with pytest.raises(errors.OverlappingAtomsError):
        overlapping.get_potential_energy()
    assert calc.results == {}
    db = connect(tmp_path / "rows.db")
    with pytest.raises(errors.OverlappingAtomsError):
        overlapping.get_potential_energy()
    db.write(overlapping)  # what a script that ignores the error would store
    assert db.get(1).get("energy") is None  # no energy of silicon on the CO row
