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
from hacknip_ase.errors import PartialOccupancyError


def _cifs(folder):
    folder.mkdir(parents=True)
    write(folder / "Nb1-MP-mp-75.cif", bulk("Nb", "bcc", a=3.3))
    write(folder / "Li1F1-MP-mp-1138.cif", bulk("LiF", "rocksalt", a=4.03))
    write(folder / "Na1Cl1-MP-mp-22862.cif", bulk("NaCl", "rocksalt", a=5.64))
    doped = Structure(Lattice.cubic(4.0), [{"Pd": 0.9, "Ag": 0.1}, "Sr"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(doped).write_file(folder / "Sr1Pd0.9Ag0.1-MP-mvc-11697-synth_doped.cif")


def test_3dsc_ln_tc_exclusions_and_ordering(tmp_path):
    root = tmp_path / "3dsc"
    _cifs(root / "cifs")
    pd.DataFrame({"formula_sc": ["Nb", "NaCl", "SrPdAg", "LiF"],
                  "cif": ["cifs/Nb1-MP-mp-75.cif", "cifs/Na1Cl1-MP-mp-22862.cif",
                          "cifs/Sr1Pd0.9Ag0.1-MP-mvc-11697-synth_doped.cif", "cifs/Li1F1-MP-mp-1138.cif"],
                  "tc": [9.25, 0.0, 2.5, 1.0]}).to_csv(root / "3DSC_MP.csv", index=False)
    task = get_task("3dsc_mp")
    with pytest.warns(UserWarning, match="1 structures had 1 partially occupied sites"):
        data = task.load(tmp_path)
    assert data.ids == ["3dsc-0", "3dsc-2", "3dsc-3"] and task.count(tmp_path) == 3
    np.testing.assert_allclose(data.targets, np.log([9.25, 2.5, 1.0]))
    assert [(e.id, e.stage) for e in data.excluded] == [("3dsc-1", "target")]
    assert sorted(data.inputs[1].get_chemical_symbols()) == ["Pd", "Sr"]  # majority species kept
    assert data.meta["host_ids"] == ["mp-75", "mvc-11697", "mp-1138"]
    assert data.meta["partial_occupancy"] == {"3dsc-2": [("Pd0.9Ag0.1", "Pd")]}
    assert "Pd0.9Ag0.1 -> Pd (1)" in data.notes[1]
    with pytest.raises(PartialOccupancyError, match="Pd0.9Ag0.1"):
        task.load(tmp_path, partial_occupancy="error")


@pytest.fixture
def doped_hosts(tmp_path):
    """A fake 3DSC_MP: 6 hosts, each with its own CIF, every other one with a doped variant (9 rows)."""
    root = tmp_path / "3dsc"
    (root / "cifs").mkdir(parents=True)
    rows = []
    for h, (element, a) in enumerate([("Nb", 3.3), ("V", 3.0), ("Ta", 3.3), ("Mo", 3.15), ("W", 3.16),
                                      ("Cr", 2.9)]):
        for d in range(1 + h % 2):
            x = 0.05 * (d + 1)
            site = {element: 1 - x, "Ti": x} if d else element
            name = f"cifs/{element}{1 - x:g}Ti{x:g}-MP-mp-{100 + h}-synth_doped.cif" if d else f"cifs/{element}1-MP-mp-{100 + h}.cif"
            CifWriter(Structure(Lattice.cubic(a), [site, site], [[0, 0, 0], [0.5, 0.5, 0.5]])).write_file(root / name)
            rows.append({"formula_sc": element, "cif": name, "tc": 1.0 + h + d})
    pd.DataFrame(rows).to_csv(root / "3DSC_MP.csv", index=False)
    return tmp_path


def test_grouped_3dsc_folds_keep_each_host_on_one_side(doped_hosts):
    grouped, random = get_task("3dsc_mp"), get_task("3dsc_mp_random")
    with pytest.warns(UserWarning):
        data = grouped.load(doped_hosts)
    hosts = np.asarray(data.meta["host_ids"])
    assert len(data) == 9 and len(set(hosts)) == 6
    splits = list(grouped.splits(data))
    assert len(splits) == 5 and sorted(np.concatenate([s.test for s in splits]).tolist()) == list(range(9))
    assert [s.test.tolist() for s in splits] == [s.test.tolist() for s in grouped.splits(data)]  # seeded
    for split in splits:
        assert not set(hosts[split.train]) & set(hosts[split.test])
        scores = grouped.score_split(data, split, data.targets[split.test] + 1.0)
        assert scores["n_unseen_host"] == len(split.test) and scores["mae_unseen_host"] == pytest.approx(1.0)
    # random folds put hosts on both sides; the unseen-host MAE covers only the others
    shared = 0
    for split in random.splits(data):
        y_pred = data.targets[split.test] + np.where(np.isin(hosts[split.test], hosts[split.train]), 0.0, 2.0)
        scores = random.score_split(data, split, y_pred)
        unseen = int((~np.isin(hosts[split.test], hosts[split.train])).sum())
        shared += len(split.test) - unseen
        assert scores["n_unseen_host"] == unseen
        if unseen:
            assert scores["mae_unseen_host"] == pytest.approx(2.0)
    assert shared > 0


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
                  "cif": ["cifs/Li1F1-MP-mp-1138.cif"] * 3 + ["cifs/Na1Cl1-MP-mp-22862.cif", "cifs/Li1F1-MP-mp-1138.cif"]}).to_csv(
        root / "aimd_li_diffusivity.csv", index=False)
    task = get_task("aimd_li_diffusivity")
    data = task.load(tmp_path)
    assert data.ids == ["mp-1@1000K", "mp-1@1500K"]
    np.testing.assert_allclose(data.targets, [-6, -5])
    np.testing.assert_allclose(data.features[:, 0], [1000, 1500])
    assert [e.stage for e in data.excluded] == ["temperature", "composition", "target"]
    scores = task.score([-6, -5], [-6, np.log10(2e-5)])
    assert scores["mae"] == pytest.approx(0.5e-5)  # on D itself, not on log10 D
