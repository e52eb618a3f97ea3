"""MoleculeNet loaders through DeepChem on small CSVs in DeepChem's layout (geometry: tests/test_molecules.py)."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.tasks import get_task
from hacknip_ase.molecules import RelaxSettings

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
    assert len({tuple(s.test) for s in splits}) == 5  # five different test sets
    assert task.select_on_valid and "± over the 5 splits" in task.split_description


def _ring(n: int, substituent: str = "") -> str:
    """A cycloalkane with ``n`` carbons (its own scaffold), optionally substituted."""
    return f"C1{'C' * (n - 2)}C1{substituent}"


def test_random_scaffold_splits_differ_and_never_share_a_scaffold():
    from benchmarks.tasks.moleculenet import random_scaffold_split, scaffold_sets

    # 60 molecules: a big benzene set, acyclic chains (empty scaffold) and 21 ring sizes x 1-3 members
    smiles = ["c1ccccc1" + tail for tail in ("", "C", "CC", "O", "N", "Cl", "F", "CO", "CN", "C=O")]
    smiles += ["C" * k + "O" for k in range(1, 6)]
    smiles += [_ring(n, tail) for n in range(3, 24) for tail in ("", "C", "O")[: 1 + n % 3]]
    smiles = smiles[:60]
    scaffold_of = {i: k for k, members in enumerate(scaffold_sets(smiles)) for i in members}
    tests = []
    for seed in range(5):
        train, valid, test = random_scaffold_split(smiles, seed)
        assert sorted(train + valid + test) == list(range(len(smiles)))
        parts = [{scaffold_of[i] for i in part} for part in (train, valid, test)]
        assert not parts[0] & parts[2] and not parts[0] & parts[1] and not parts[1] & parts[2]
        assert len(train) <= 0.8 * len(smiles) and 0 < len(test)
        assert set(range(10)) <= set(train)  # the benzene set (> half the test size) goes to train
        assert (train, valid, test) == random_scaffold_split(smiles, seed)  # seeded
        tests.append(tuple(test))
    assert len(set(tests)) == 5
