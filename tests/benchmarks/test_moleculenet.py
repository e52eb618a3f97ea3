"""MoleculeNet loaders through DeepChem on small CSVs in DeepChem's layout, and NIP relaxation."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.tasks import get_task
from benchmarks.tasks.molecules import RelaxSettings, build_molecules, smiles_to_atoms

BBBP = ["CCO", "CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "CN1CCC[C@H]1c2cccnc2",
        "C1CCCCC1", "c1ccc2ccccc2c1", "OC(=O)c1ccccc1O", "CC(C)NCC(O)COc1cccc2ccccc12", "N1(C)C(=O)N(C)C2=C1N=CN2C",
        "c1ccncc1", "C1=CC=C(C=C1)C1CC1", "CCN(CC)CC", "O=C1CCCCC1", "CCCCCCCC(=O)O", "c1ccc(cc1)-c1ccccc1",
        "C(C)(C)(C)N", "C1CCNCC1", "CC1=CC=CC=C1N", "c1ccc2[nH]ccc2c1"]


@pytest.fixture(scope="module")
def bbbp_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "moleculenet").mkdir()
    smiles = BBBP + ["C1=CC=CC=C1N(=O)=O=O"]  # pentavalent N: RDKit rejects it
    pd.DataFrame({"num": range(1, len(smiles) + 1), "name": [f"m{i}" for i in range(len(smiles))],
                  "p_np": [i % 2 for i in range(len(smiles))], "smiles": smiles}).to_csv(
        root / "moleculenet" / "BBBP.csv", index=False)
    return root


def test_bbbp_loads_reports_failures_and_scaffold_splits(bbbp_dir, tmp_path):
    task = get_task("bbbp")
    data = task.load(bbbp_dir, settings=RelaxSettings(steps=0), cache=tmp_path)  # geometry only
    assert len(data) == 20 and task.count(bbbp_dir) == 20
    assert [(e.id, e.stage) for e in data.excluded] == [("bbbp-20", "parse")]
    np.testing.assert_array_equal(data.targets, [i % 2 for i in range(20)])
    assert data.inputs[0].get_chemical_formula() == "C2H6O"
    splits = list(task.splits(data))
    assert [s.seed for s in splits] == [0, 1, 2, 3, 4]
    for split in splits:
        parts = [set(split.train), set(split.valid), set(split.test)]
        assert sum(map(len, parts)) == 20 and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    # DeepChem's scaffold split is deterministic: every seed gives the same split
    assert all(np.array_equal(s.test, splits[0].test) for s in splits)


def test_relaxation_with_chgnet_counts_failures_and_resumes(tmp_path):
    settings = RelaxSettings(seed=0, optimizer="FIRE", fmax=0.1, steps=5)
    smiles = {"water": "O", "methanol": "CO", "dummy": "*C", "bad": "C(C)(C)(C)(C)C"}
    first = build_molecules(smiles, settings=settings, cache=tmp_path)
    assert set(first.atoms) == {"water", "methanol"}
    assert {(f.id, f.stage) for f in first.failures} == {("dummy", "parse"), ("bad", "parse")}
    moved = first.atoms["methanol"].positions - smiles_to_atoms("CO", seed=0).positions
    assert np.abs(moved).max() > 1e-3  # the NIP relaxation did move the ETKDG geometry
    again = build_molecules(smiles, settings=settings, cache=tmp_path)  # everything from the cache
    assert again.seconds == 0
    np.testing.assert_allclose(again.atoms["methanol"].positions, first.atoms["methanol"].positions)


def _distances(atoms):
    distances = atoms.get_all_distances()
    np.fill_diagonal(distances, np.inf)
    return distances


def test_forcefield_recipe_relaxes_without_a_backbone_and_records_the_field(tmp_path):
    from benchmarks.tasks.molecules import FRAGMENT_GAP, RECIPES

    settings = RECIPES["forcefield"]
    assert not settings.uses_calculator  # no NIP is built, geometries are shared by all backbones
    smiles = {"ethanol": "CCO", "lipf6": "[Li+].F[P-](F)(F)(F)(F)F", "liasf6": "[Li+].F[As-](F)(F)(F)(F)F"}
    built = build_molecules(smiles, settings=settings, cache=tmp_path)
    assert built.force_fields == {"ethanol": "MMFF94", "lipf6": "UFF"}  # MMFF94 has no PF6- parameters
    assert [(f.id, f.stage) for f in built.failures] == [("liasf6", "relax")]
    assert "UFF has no parameters" in built.failures[0].reason
    assert (tmp_path / "mmff94-uff").is_dir()
    moved = built.atoms["ethanol"].positions - smiles_to_atoms("CCO", seed=0).positions
    assert np.abs(moved).max() > 1e-3
    lipf6 = built.atoms["lipf6"]
    li, p = list(lipf6.numbers).index(3), list(lipf6.numbers).index(15)
    fluorines = [i for i, z in enumerate(lipf6.numbers) if z == 9]
    bonds = lipf6.get_distances(p, fluorines)
    np.testing.assert_allclose(bonds, bonds[0], atol=1e-6)  # an octahedron: six equal P-F bonds ...
    cis = sorted(_distances(lipf6)[np.ix_(fluorines, fluorines)].ravel())[:24]
    np.testing.assert_allclose(cis, np.sqrt(2) * bonds[0], atol=1e-6)  # ... at right angles
    assert _distances(lipf6)[li].min() >= FRAGMENT_GAP - 1e-6  # the ions start and stay apart
    notes = built.notes(settings)
    assert notes == ["relaxed with MMFF94: 1, UFF: 1 (UFF where MMFF94 lacks parameters: ['lipf6'])"]


def test_strict_force_fields_and_collapsed_geometries_raise():
    from benchmarks.tasks.molecules import check_geometry, embed_smiles, forcefield_relax, mol_to_atoms

    from hacknip_ase.errors import InvalidStructureError

    with pytest.raises(InvalidStructureError, match="MMFF94 has no parameters"):
        forcefield_relax(embed_smiles("[Li+].F[P-](F)(F)(F)(F)F"), "MMFF94", 200)
    mol = embed_smiles("OCCO")
    atoms = mol_to_atoms(mol)
    atoms.positions[0] = atoms.positions[3] + 0.3  # an oxygen pushed onto the other end of the molecule
    with pytest.raises(InvalidStructureError, match=r"collapsed geometry: unbonded atoms 0 and \d+ are 0\.\d+ A apart"):
        check_geometry(atoms, mol, "test")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        RelaxSettings(optimizer="LBFGS")
