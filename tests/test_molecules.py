"""SMILES -> checked 3D molecules: recipes, salts placed apart, collapse check, typed errors, on-disk cache."""

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest

from hacknip_ase.errors import InvalidStructureError, MoleculeBuildError
from hacknip_ase.molecules import (FRAGMENT_GAP, RECIPE_VERSION, RECIPES, RelaxSettings, build_molecules,
                                   check_geometry, embed_smiles, forcefield_relax, mol_to_atoms, smiles_to_atoms)


def test_relaxation_with_chgnet_counts_failures_and_resumes(tmp_path):
    settings = RelaxSettings(seed=0, optimizer="FIRE", fmax=0.1, steps=5)
    smiles = {"water": "O", "methanol": "CO", "dummy": "*C", "bad": "C(C)(C)(C)(C)C"}
    first = build_molecules(smiles, settings=settings, cache=tmp_path)
    assert set(first.atoms) == {"water", "methanol"}
    assert {(f.id, f.stage) for f in first.failures} == {("dummy", "parse"), ("bad", "parse")}
    moved = first.atoms["methanol"].positions - smiles_to_atoms("CO", recipe="etkdg").positions
    assert np.abs(moved).max() > 1e-3  # the NIP relaxation did move the ETKDG geometry
    again = build_molecules(smiles, settings=settings, cache=tmp_path)  # everything from the cache
    assert again.seconds == 0
    np.testing.assert_allclose(again.atoms["methanol"].positions, first.atoms["methanol"].positions)


def _distances(atoms):
    distances = atoms.get_all_distances()
    np.fill_diagonal(distances, np.inf)
    return distances


def test_forcefield_recipe_relaxes_without_a_backbone_and_records_the_field(tmp_path):
    settings = RECIPES["forcefield"]
    assert not settings.uses_calculator  # no NIP is built, geometries are shared by all backbones
    smiles = {"ethanol": "CCO", "lipf6": "[Li+].F[P-](F)(F)(F)(F)F", "liasf6": "[Li+].F[As-](F)(F)(F)(F)F"}
    built = build_molecules(smiles, settings=settings, cache=tmp_path)
    assert built.force_fields == {"ethanol": "MMFF94", "lipf6": "UFF"}  # MMFF94 has no PF6- parameters
    assert [(f.id, f.stage) for f in built.failures] == [("liasf6", "relax")]
    assert "UFF has no parameters" in built.failures[0].reason
    assert (tmp_path / "mmff94-uff").is_dir()
    moved = built.atoms["ethanol"].positions - smiles_to_atoms("CCO", recipe="etkdg").positions
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
    with pytest.raises(InvalidStructureError, match="MMFF94 has no parameters"):
        forcefield_relax(embed_smiles("[Li+].F[P-](F)(F)(F)(F)F"), "MMFF94", 200)
    mol = embed_smiles("OCCO")
    atoms = mol_to_atoms(mol)
    atoms.positions[0] = atoms.positions[3] + 0.3  # an oxygen pushed onto the other end of the molecule
    with pytest.raises(InvalidStructureError, match=r"collapsed geometry: unbonded atoms 0 and \d+ are 0\.\d+ A apart"):
        check_geometry(atoms, mol, "test")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        RelaxSettings(optimizer="LBFGS")


def test_smiles_to_atoms_builds_one_checked_molecule_or_names_the_failed_stage():
    ethanol = smiles_to_atoms("CCO")  # default recipe: force field, no backbone needed
    assert ethanol.get_chemical_formula() == "C2H6O" and not ethanol.pbc.any()
    assert np.abs(ethanol.positions - smiles_to_atoms("CCO", recipe="etkdg").positions).max() > 1e-3
    salt = smiles_to_atoms("[Na+].[Cl-]")
    assert salt.get_distance(0, 1) >= FRAGMENT_GAP - 1e-6
    with pytest.raises(MoleculeBuildError, match="parse failed") as bad:
        smiles_to_atoms("C1CC")
    assert bad.value.stage == "parse" and isinstance(bad.value, InvalidStructureError)
    with pytest.raises(MoleculeBuildError, match="UFF has no parameters") as no_field:
        smiles_to_atoms("[Li+].F[As-](F)(F)(F)(F)F")
    assert no_field.value.stage == "relax"
    with pytest.raises(ValueError, match="relax recipe must be one of"):
        smiles_to_atoms("C", recipe="mmff")


def test_cache_keys_stay_those_of_earlier_runs(tmp_path):
    """Geometries cached before the move into the package must still be found (same key, same record)."""
    settings = RECIPES["forcefield"]
    key = hashlib.sha256(json.dumps(["CCO", asdict(settings), "mmff94-uff", RECIPE_VERSION]).encode()).hexdigest()
    assert RECIPE_VERSION == 2 and asdict(settings) == {"seed": 0, "optimizer": "MMFF94-UFF", "fmax": 0.05,
                                                         "steps": 2000}
    path = tmp_path / "mmff94-uff" / f"{key[:32]}.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"smiles": "CCO", "numbers": [8], "positions": [[0.0, 0.0, 0.0]], "converged": True,
                                "force_field": "MMFF94"}))
    built = build_molecules({"m": "CCO"}, settings=settings, cache=tmp_path)
    assert built.seconds == 0 and built.atoms["m"].get_chemical_formula() == "O"  # read, not rebuilt
