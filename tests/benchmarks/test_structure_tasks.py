"""3DSC and AIMD diffusivity loaders on small files in their layouts, written by the tests."""

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.io import write
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from benchmarks.tasks import get_task
from benchmarks.tasks.base import kfold_splits


def _cifs(folder):
    folder.mkdir(parents=True)
    write(folder / "Nb.cif", bulk("Nb", "bcc", a=3.3))
    write(folder / "LiF.cif", bulk("LiF", "rocksalt", a=4.03))
    write(folder / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    doped = Structure(Lattice.cubic(4.0), [{"Pd": 0.9, "Ag": 0.1}, "Sr"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(doped).write_file(folder / "Sr1Pd0.9Ag0.1-synth_doped.cif")


def test_3dsc_ln_tc_exclusions_and_ordering(tmp_path):
    root = tmp_path / "3dsc"
    _cifs(root / "cifs")
    pd.DataFrame({"formula_sc": ["Nb", "NaCl", "SrPdAg", "LiF"],
                  "cif": ["cifs/Nb.cif", "cifs/NaCl.cif", "cifs/Sr1Pd0.9Ag0.1-synth_doped.cif", "cifs/LiF.cif"],
                  "tc": [9.25, 0.0, 2.5, 1.0]}).to_csv(root / "3DSC_MP.csv", index=False)
    task = get_task("3dsc_mp")
    data = task.load(tmp_path)
    assert data.ids == ["3dsc-0", "3dsc-2", "3dsc-3"] and task.count(tmp_path) == 3
    np.testing.assert_allclose(data.targets, np.log([9.25, 2.5, 1.0]))
    assert [(e.id, e.stage) for e in data.excluded] == [("3dsc-1", "target")]
    assert sorted(data.inputs[1].get_chemical_symbols()) == ["Pd", "Sr"]  # majority species kept
    assert "1 structures" in data.notes[0]


def test_kfold_splits_are_deterministic_and_80_20():
    first = list(kfold_splits(101, seed=18012019))
    again = list(kfold_splits(101, seed=18012019))
    other = list(kfold_splits(101, seed=1))
    assert all(np.array_equal(a.test, b.test) for a, b in zip(first, again))
    assert not all(np.array_equal(a.test, b.test) for a, b in zip(first, other))
    assert sorted(np.concatenate([s.test for s in first]).tolist()) == list(range(101))
    assert {len(s.test) for s in first} == {20, 21}
    train, test = first[0]
    assert not set(train) & set(test)


def test_aimd_filters_features_and_linear_scores(tmp_path):
    root = tmp_path / "aimd_diffusivity"
    _cifs(root / "cifs")
    pd.DataFrame({"identifier": ["mp-1", "mp-1", "mp-1", "mp-2", "mp-1"],
                  "temperature": [1000, 1500, 5000, 1000, 2000],
                  "diffusivity": [1e-6, 1e-5, 1e-3, 1e-5, 0.0],
                  "cif": ["cifs/LiF.cif"] * 3 + ["cifs/NaCl.cif", "cifs/LiF.cif"]}).to_csv(
        root / "aimd_li_diffusivity.csv", index=False)
    task = get_task("aimd_li_diffusivity")
    data = task.load(tmp_path)
    assert data.ids == ["mp-1@1000K", "mp-1@1500K"]
    np.testing.assert_allclose(data.targets, [-6, -5])
    np.testing.assert_allclose(data.features[:, 0], [1000, 1500])
    assert [e.stage for e in data.excluded] == ["temperature", "composition", "target"]
    scores = task.score([-6, -5], [-6, np.log10(2e-5)])
    assert scores["mae"] == pytest.approx(0.5e-5)  # on D itself, not on log10 D
