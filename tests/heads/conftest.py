"""Offline data for the head tests: rattled fcc Cu/Ni/Au/Ag alloys labelled with EMT.

Targets are EMT energies per atom (eV/atom); the classification target is that energy above
the training median. Embeddings come from the real CHGNet 0.3.0 weights shipped in the wheel.
"""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

LATTICE = {"Cu": 3.61, "Ni": 3.52, "Au": 4.08, "Ag": 4.09}
N_STRUCTURES = 160
N_TEST = 40


def make_alloys(n: int, seed: int = 0):
    """Random 8-atom fcc alloy cells (Vegard lattice constant, strained, rattled) + EMT energy/atom."""
    rng = np.random.default_rng(seed)
    elements = list(LATTICE)
    structures, energies = [], []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        symbols = rng.choice(elements, size=len(atoms), p=rng.dirichlet(np.full(4, 0.7)))
        atoms.set_chemical_symbols(symbols)
        a = np.mean([LATTICE[s] for s in symbols]) * (1 + rng.uniform(-0.03, 0.03))
        atoms.set_cell(np.diag([2 * a, a, a]), scale_atoms=True)
        atoms.rattle(0.05, seed=seed * 100_000 + i)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy() / len(atoms))
        atoms.calc = None
        structures.append(atoms)
    return structures, np.array(energies)


@pytest.fixture(scope="session")
def alloys():
    return make_alloys(N_STRUCTURES)


@pytest.fixture(scope="session")
def chgnet():
    from hacknip_ase import get_backbone

    return get_backbone("chgnet")


@pytest.fixture(scope="session")
def embeddings(alloys, chgnet):
    """(160, 5, 64) CHGNet embeddings of the alloys, computed once per session."""
    from hacknip_ase.heads.feature_sources import embed

    return embed(chgnet, alloys[0], batch_size=80)


@pytest.fixture(scope="session")
def split():
    """Fixed train/test indices; nothing fitted in these tests sees the test part."""
    order = np.random.default_rng(1).permutation(N_STRUCTURES)
    return np.sort(order[N_TEST:]), np.sort(order[:N_TEST])


@pytest.fixture(scope="session")
def labels(alloys, split):
    energies = alloys[1]
    return (energies > np.median(energies[split[0]])).astype(int)


#: small but real settings so the whole suite runs in about two minutes on two cores
FAST = {"ridge": {}, "xgboost": {"n_estimators": 300}, "mlp": {}, "modnet": {"epochs": 150, "patience": 20}}


@pytest.fixture(scope="session")
def ridge_depths(embeddings, alloys, split):
    """Depth picked by inner CV on the training part only (shared by the slower heads)."""
    from hacknip_ase.heads import DepthSelector, RidgeHead

    train, _ = split
    return DepthSelector(RidgeHead(), cv=5).fit(embeddings[train], alloys[1][train]).best_depths_


def _fit_all(task, embeddings, targets, train, chgnet, depths):
    from hacknip_ase.heads import Predictor

    return {name: Predictor.fit(embeddings[train], targets[train], backbone=chgnet.info, head=name, task=task,
                                depths=depths, head_params=params, target_name="e_atom", units="eV/atom")
            for name, params in FAST.items()}


@pytest.fixture(scope="session")
def regressors(embeddings, alloys, split, chgnet, ridge_depths):
    """One fitted regression Predictor per head, trained on the training part."""
    return _fit_all("regression", embeddings, alloys[1], split[0], chgnet, ridge_depths)


@pytest.fixture(scope="session")
def classifiers(embeddings, labels, split, chgnet, ridge_depths):
    return _fit_all("classification", embeddings, labels, split[0], chgnet, ridge_depths)
