"""``hacknip fit`` / ``hacknip predict`` on tables the tests write: SMILES (target: RDKit molecular
weight), structure files and extxyz (target: EMT energy), bad input as typed errors or row reasons."""

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.io import write

from hacknip_ase.cli import main
from hacknip_ase.errors import HackNIPError, TableError
from hacknip_ase.heads import load_predictor
from hacknip_ase.molecules import smiles_to_atoms
from hacknip_ase.tabular import fit_table, predict_table, read_inputs
from tests.heads.conftest import make_alloys

SMILES = ["C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC", "CO", "CCO", "CCCO", "CCCCO", "OCCO", "CC(C)O", "CC(=O)O",
          "CCC(=O)O", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1", "CN", "CCN", "CCCN", "C1CCCCC1", "C1CCCC1",
          "CC(C)C", "CC(C)(C)C", "CCOCC", "COC", "CC=O", "CCC=O", "CC(C)=O", "ClCCl", "ClC(Cl)Cl", "FC(F)F", "CCCl",
          "CCBr", "O=C=O", "N#CC", "CC#N", "C=CC", "C=CC=C"]
BAD = ["C1CC", "", "[Xx]"]  # unclosed ring, empty cell, no such element


def mol_weight(smiles):
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    return Descriptors.MolWt(Chem.MolFromSmiles(smiles))


@pytest.fixture(scope="module")
def molecules_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    rows = [{"name": f"m{i}", "smiles": s, "mw": f"{mol_weight(s):.3f}"} for i, s in enumerate(SMILES)]
    rows += [{"name": f"bad{i}", "smiles": s, "mw": "1.0"} for i, s in enumerate(BAD)]
    rows.append({"name": "no_target", "smiles": "CCCCCCC", "mw": ""})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"name": ["p0", "p1", "p2"], "smiles": ["CCCCCCCC", "C1CC", "OCCCO"]}).to_csv(
        root / "new.csv", index=False)
    return root


@pytest.fixture(scope="module")
def fitted(molecules_csv):
    return fit_table(molecules_csv / "train.csv", molecules_csv / "mw.hnp", target="mw", smiles="smiles",
                     id_column="name", head="ridge", units="g/mol", progress=False)


def test_fit_reports_used_skipped_and_the_inner_cv_estimate(fitted, molecules_csv):
    assert fitted.n_rows == len(SMILES) + len(BAD) + 1 and fitted.n_used == len(SMILES)
    reasons = dict(fitted.skipped)
    assert reasons["bad0"].startswith("parse:") and "cannot parse" in reasons["bad0"]
    assert reasons["bad1"] == "empty 'smiles'" and reasons["bad2"].startswith("parse:")
    assert reasons["no_target"] == "no 'mw' value"
    skipped = pd.read_csv(fitted.files["skipped"], keep_default_na=False)
    assert sorted(skipped["id"]) == ["bad0", "bad1", "bad2", "no_target"]
    p = fitted.predictor
    held = p.selection["held_out"]
    assert p.selection["cv"] == 5 and len(held["rows"]) == len(SMILES)  # 5-fold: every row held out once
    y = np.array([mol_weight(s) for s in SMILES])
    assert fitted.scores["MAE"] == pytest.approx(np.mean(np.abs(np.asarray(held["y_pred"]) - y[held["rows"]])),
                                                 rel=1e-4)
    assert fitted.scores["MAE"] < 0.5 * np.mean(np.abs(y - y.mean()))  # the embeddings know molecule size
    for key in ("parity", "selection"):
        assert fitted.files[key].endswith(f"mw.{key}.png") and (molecules_csv / f"mw.{key}.png").stat().st_size > 1000
    text = fitted.text()
    assert f"{len(SMILES)} used, 4 skipped" in text and "out-of-fold predictions of the chosen configuration" in text
    assert "g/mol" in text and f"chosen depth(s): {p.metadata()['depths_label']}" in text
    assert load_predictor(molecules_csv / "mw.hnp").inputs == {"kind": "smiles", "column": "smiles",
                                                                "relax": "forcefield", "id_column": "name",
                                                                "source": "train.csv"}


def test_predict_writes_every_row_and_matches_the_python_api(fitted, molecules_csv):
    out = molecules_csv / "pred.csv"
    table = predict_table(molecules_csv / "mw.hnp", molecules_csv / "new.csv", out, progress=False)
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written["id"]) == ["p0", "p1", "p2"] and list(written.columns) == ["id", "smiles", "mw",
                                                                                     "domain_distance", "error"]
    assert written["error"][1].startswith("parse:") and written["mw"][1] == "" and written["error"][0] == ""
    predictor = load_predictor(molecules_csv / "mw.hnp")
    expected = predictor.predict([smiles_to_atoms(s) for s in ("CCCCCCCC", "OCCCO")])
    np.testing.assert_allclose(table["mw"][[0, 2]], expected, rtol=1e-5)
    assert np.all(table["domain_distance"][[0, 2]] > 0)


def test_cli_fit_and_predict(molecules_csv, tmp_path, capsys):
    model = tmp_path / "cli.hnp"
    assert main(["fit", str(molecules_csv / "train.csv"), "--target", "mw", "--smiles", "smiles", "--id", "name",
                 "--head", "ridge", "-o", str(model), "-q"]) == 0
    assert "inner-CV estimate" in capsys.readouterr().out
    assert main(["predict", str(model), str(molecules_csv / "new.csv"), "-o", str(tmp_path / "p.csv"), "-q"]) == 0
    assert f"wrote 3 rows to {tmp_path / 'p.csv'}: 2 predicted, 1 without a prediction" in capsys.readouterr().out


@pytest.mark.parametrize("content, options, message", [
    ("smiles,y\nCC,1\n", ["--smiles", "smi"], "has no column 'smi'; its columns: smiles, y"),
    ("", ["--smiles", "smiles"], "is empty"),
    ("smiles,y\n", ["--smiles", "smiles"], "header but no rows"),
    ("smiles,y\nCC,1\nCCC,heavy\n", ["--smiles", "smiles"], "target 'y' is not numeric in 1 row(s) (1: 'heavy')"),
    ("id,smiles,y\na,CC,1\na,CCC,2\n", ["--smiles", "smiles", "--id", "id"], "duplicate ids ['a']"),
    ("smiles,y\nCC,1\n", [], "name exactly one input column"),
    ("smiles,y\nCC,1\nC1CC,2\n", ["--smiles", "smiles"], "only 1 usable rows"),
])
def test_bad_tables_are_one_line_errors(tmp_path, capsys, content, options, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    assert main(["fit", str(path), "--target", "y", "-o", str(tmp_path / "m.hnp"), "-q", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hacknip fit: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "m.hnp").exists()


def test_option_errors_are_typed(molecules_csv, tmp_path):
    for options, message in [({"head": "forest"}, "unknown head 'forest'"),
                             ({"tune_trials": 3}, "needs --head modnet"),
                             ({"transform": "sqrt"}, "unknown target transform"),
                             ({"task": "classification"}, "two classes")]:
        with pytest.raises(TableError, match=message):
            fit_table(molecules_csv / "train.csv", tmp_path / "m.hnp", target="mw", smiles="smiles",
                      progress=False, **{"head": "ridge", **options})


def test_structure_files_and_extxyz_targets(tmp_path):
    structures, energies = make_alloys(24, seed=5)
    for atoms, energy, i in zip(structures, energies, range(24), strict=True):
        atoms.info.update(energy_per_atom=float(energy), name=f"a{i}")
    write(tmp_path / "alloys.extxyz", structures, format="extxyz")
    report = fit_table(tmp_path / "alloys.extxyz", tmp_path / "alloys.hnp", target="energy_per_atom",
                       id_column="name", head="ridge", units="eV/atom", progress=False)
    assert report.n_used == 24 and not report.skipped

    files = []
    for k, fmt in enumerate(["cif", "vasp", "extxyz"]):
        name = f"s{k}.{fmt}" if fmt != "vasp" else "POSCAR"
        write(tmp_path / name, structures[k], format=fmt)
        files.append(name)
    overlapping = Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=[5, 5, 5], pbc=True)
    write(tmp_path / "overlap.cif", overlapping)
    files += ["overlap.cif", "missing.cif"]
    pd.DataFrame({"path": files}).to_csv(tmp_path / "paths.csv", index=False)
    table = predict_table(tmp_path / "alloys.hnp", tmp_path / "paths.csv", tmp_path / "out.csv",
                          structures="path", progress=False)
    assert list(table["path"]) == files
    assert "OverlappingAtomsError" in table["error"][3] and table["error"][3].startswith("featurize:")
    assert table["error"][4].startswith("parse: no such file")
    expected = report.predictor.predict(structures[:3])
    np.testing.assert_allclose(table["energy_per_atom"][:3], expected, atol=2e-3)  # CIF rounds positions
    assert table["energy_per_atom"][3:].isna().all() and (table["error"][:3] == "").all()


def test_structure_file_without_the_target_key(tmp_path):
    write(tmp_path / "x.extxyz", make_alloys(2)[0], format="extxyz")
    with pytest.raises(TableError, match="no structure of x.extxyz has the key 'gap'") as error:
        read_inputs(tmp_path / "x.extxyz", target="gap")
    assert isinstance(error.value, HackNIPError) and isinstance(error.value, ValueError)


def test_classification_reports_roc_auc_and_probabilities(molecules_csv, tmp_path):
    weights = [mol_weight(s) for s in SMILES]
    labels = (np.array(weights) > np.median(weights)).astype(int)
    pd.DataFrame({"smiles": SMILES, "heavy": labels}).to_csv(tmp_path / "c.csv", index=False)
    report = fit_table(tmp_path / "c.csv", tmp_path / "c.hnp", target="heavy", smiles="smiles", head="ridge",
                       task="classification", progress=False)
    held = report.predictor.selection["held_out"]
    from sklearn.metrics import roc_auc_score

    assert report.scores["ROC-AUC"] == pytest.approx(roc_auc_score(labels[held["rows"]], held["y_pred"]))
    assert report.scores["ROC-AUC"] > 0.8 and (tmp_path / "c.roc.png").is_file()
    table = predict_table(tmp_path / "c.hnp", molecules_csv / "new.csv", tmp_path / "c_pred.csv", progress=False)
    assert list(table.columns) == ["id", "smiles", "heavy", "heavy_probability", "domain_distance", "error"]
    assert table["heavy"][0] == float(table["heavy_probability"][0] >= 0.5) and np.isnan(table["heavy"][1])
