"""Coulombic-efficiency loader on a tiny workbook with Dataset S1's layout, written by the test."""

import numpy as np
import pytest
from openpyxl import Workbook

from benchmarks.tasks import get_task
from benchmarks.tasks.electrolytes import mixture_embeddings
from hacknip_ase.molecules import RelaxSettings

SOLVENTS = [("DME (C4H10O2)", 90.12, 0.868, "COCCOC"), ("DOL (C3H6O2)", 74.078, 1.06, "O1CCOC1"),
            ("EC (C3H4O3)", 88.062, 1.32, "C1COC(=O)O1")]
TFSI = "[Li+].C(F)(F)(F)S(=O)(=O)[N-]S(=O)(=O)C(F)(F)F"
SALTS = [("LiFSI", TFSI), ("LiTFSI", TFSI), ("LiNO3", "[Li+].[N+](=O)([O-])[O-]")]


def molarity(name):
    _, mw, rho, _ = next(s for s in SOLVENTS if s[0].startswith(name))
    return 1000 * rho / mw


def write_workbook(path, rows):
    book = Workbook()
    sheet = book.active
    sheet.title = "Dataset"
    sheet.append([None, None, "Solvent 1", "Solvent 2", "Solvent 3", "Solvent 1", "Solvent 2", "Solvent 3",
                  "Salt 1", "Salt 2", "Salt 3"])
    sheet.append([None, "Electrolyte"] + ["Volume %"] * 3 + ["mol/L"] * 6 + ["FC"] * 13 + ["CE (%)", "LCE"])
    for name, vols, concs, salts, ce in rows:
        sheet.append([None, name, *vols, *concs, *salts] + [0.0] * 13 + [ce, None])
    db = book.create_sheet("Molecular Database")
    db.append([])
    db.append([])
    db.append([None, "Solvent", "C", "H", "O", "F", "N", "S", "P", None, "B/Cl/As/Si etc.", "MW",
               "density (g/mL)", "mol/L", "SMILES"])
    for name, mw, rho, smiles in SOLVENTS:
        db.append([None, name] + [None] * 9 + [mw, rho, 1000 * rho / mw, smiles])
    db.append([None, "Salt", None, None, None, None, None, None, None, None, None, None, "SMILES"])
    for name, smiles in SALTS:
        db.append([None, name] + [None] * 10 + [smiles])
    book.create_sheet("References")
    book.save(path)


@pytest.fixture(scope="module")
def workbook(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "coulombic_efficiency").mkdir()
    c = molarity
    write_workbook(root / "coulombic_efficiency" / "pnas.2214357120.sd01.xlsx", [
        ("1 M LiFSI DME", (1, None, None), (c("DME"), None, None), (1, None, None), 99.0),
        # mol/L columns in the other order than the name, as in the real sheet
        ("0.5 M LiTFSI 0.5 M LiNO3 DOL-DME (1:1 v)", (0.5, 0.5, None), (0.5 * c("DOL"), 0.5 * c("DME"), None),
         (0.5, 0.5, None), 97.0),
        ("LiFSI-1.2DME-3TTE", (None,) * 3, (None,) * 3, (None,) * 3, 99.5),  # molar ratio only
        ("1 M LiFSI EC", (1, None, None), (3.0, None, None), (1, None, None), 90.0),  # inconsistent column
        ("2 M LiFSI DOL-DME (1:1 vol)", (0.5, 0.5, None), (0.5 * c("DME"), 0.5 * c("DOL"), None),
         (2, None, None), 98.0),
    ])
    return root


def test_formulations_concentrations_and_exclusions(workbook):
    task = get_task("coulombic_efficiency")
    ids, mixtures, targets, used, excluded = task.formulations(workbook)
    assert ids == ["ce-0", "ce-1", "ce-4"] and task.count(workbook) == 3
    assert mixtures[0] == pytest.approx({"DME": molarity("DME"), "LiFSI": 1.0})
    assert mixtures[1] == pytest.approx({"DOL": 0.5 * molarity("DOL"), "DME": 0.5 * molarity("DME"),
                                         "LiTFSI": 0.5, "LiNO3": 0.5})
    np.testing.assert_allclose(targets, -np.log10([0.01, 0.03, 0.02]))
    assert [(e.id, e.stage) for e in excluded] == [("ce-2", "formulation"), ("ce-3", "formulation")]
    assert "molar ratio" in excluded[0].reason
    # the sheet's LiFSI SMILES is LiTFSI's: corrected
    assert used["LiFSI"].smiles == "[Li+].FS(=O)(=O)[N-]S(=O)(=O)F" and used["LiTFSI"].smiles == TFSI


def test_load_builds_molecules_and_splits_are_seeded(workbook, tmp_path):
    task = get_task("coulombic_efficiency")
    data = task.load(workbook, settings=RelaxSettings(steps=0), cache=tmp_path)  # ETKDG geometry only
    assert set(data.molecules) == {"DME", "DOL", "LiFSI", "LiTFSI", "LiNO3"}
    assert data.molecules["LiFSI"].get_chemical_formula() == "F2LiNO4S2"
    embeddings = {name: np.full(2, float(len(atoms))) for name, atoms in data.molecules.items()}
    x = mixture_embeddings(data.inputs, embeddings)
    assert x[0] == pytest.approx(molarity("DME") * 16 + 1.0 * 10)  # DME 16 atoms, LiFSI 10


def test_splits_are_repeated_seeded_5_fold_cv():
    from benchmarks.tasks.base import TaskData

    task = get_task("coulombic_efficiency")
    data = TaskData(ids=[f"ce-{i}" for i in range(23)], inputs=[{}] * 23, targets=np.zeros(23), target_names=("y",))
    splits = [tuple(map(tuple, s)) for s in task.splits(data)]
    assert splits == [tuple(map(tuple, s)) for s in task.splits(data)] and len(splits) == 25
    for repeat in range(5):  # each row tested once per repeat
        tested = sorted(i for _, test in splits[5 * repeat: 5 * repeat + 5] for i in test)
        assert tested == list(range(23))
    assert len({test for _, test in splits}) == 25  # repeats reshuffle the folds


def test_harness_builds_molecules_with_the_recipe_a_suite_names(workbook, tmp_path):
    from benchmarks.harness.run import load_task, task_header
    from benchmarks.harness.suite import read_suite

    suite = tmp_path / "suite.toml"
    suite.write_text('[[run]]\ntasks = ["coulombic_efficiency"]\nbackbones = ["chgnet"]\nheads = ["ridge"]\n'
                     'relax = "forcefield"\n')
    (spec,) = read_suite(suite).runs
    assert spec.relax == "forcefield"
    task = get_task("coulombic_efficiency")
    # backbone=None: force-field geometries need no NIP, so none may be built
    data = load_task(task, None, data_dir=workbook, relax=spec.relax, progress=False)
    assert set(data.molecules) == {"DME", "DOL", "LiFSI", "LiTFSI", "LiNO3"}
    assert any(n.startswith("relaxed with MMFF94: 5") for n in data.notes)
    assert task_header(task, data)["relaxation"] | {"recipe": None} == \
        {"recipe": None, "seed": 0, "optimizer": "MMFF94-UFF", "fmax": 0.05, "steps": 2000}
    crystals = get_task("synthetic_emt_alloys")
    assert "relaxation" not in task_header(crystals, load_task(crystals, None, limit=8, relax="forcefield"))
    with pytest.raises(ValueError, match="relax must be one of"):
        load_task(task, None, data_dir=workbook, relax="amber", progress=False)
