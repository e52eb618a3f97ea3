"""What survives writing the calculator's results to ase.db, extxyz and .traj (storage helpers)."""

import numpy as np
import pytest
from ase.build import bulk
from ase.db import connect
from ase.io import read, write

from hacknip_ase import EmbeddingCalculator, errors
from hacknip_ase.storage import attach_results, db_data, stored_results


@pytest.fixture(scope="module")
def computed():
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.calc = EmbeddingCalculator("chgnet")
    atoms.get_properties(["energy", "embeddings", "node_embeddings"])
    return atoms


def test_plain_db_write_drops_embeddings_and_data_keeps_them(computed, tmp_path):
    db = connect(tmp_path / "rows.db")
    db.write(computed)
    db.write(computed, data=db_data(computed))
    plain, kept = db.get(1), db.get(2)
    assert "embeddings" not in plain.data and plain.energy == pytest.approx(computed.get_potential_energy())
    back = stored_results(kept)
    np.testing.assert_array_equal(back["embeddings"], computed.calc.results["embeddings"])
    np.testing.assert_array_equal(back["node_embeddings"], computed.calc.results["node_embeddings"])


def test_extxyz_keeps_attached_embeddings_and_node_features(computed, tmp_path):
    path = tmp_path / "frames.extxyz"
    plain = computed.copy()
    write(path, plain)
    assert "embeddings" not in read(path).info  # without the helper nothing is kept
    atoms = computed.copy()
    atoms.calc = computed.calc
    write(path, attach_results(atoms, node_embeddings=True))
    back = stored_results(read(path))
    np.testing.assert_allclose(back["embeddings"], computed.calc.results["embeddings"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(back["node_embeddings"], computed.calc.results["node_embeddings"], rtol=1e-5, atol=1e-7)


def test_traj_keeps_pooled_embeddings_only(computed, tmp_path):
    atoms = computed.copy()
    atoms.calc = computed.calc
    path = tmp_path / "run.traj"
    write(path, attach_results(atoms, node_embeddings=True))
    back = stored_results(read(path))
    np.testing.assert_array_equal(back["embeddings"], computed.calc.results["embeddings"])
    assert "node_embeddings" not in back  # .traj keeps info, not custom per-atom arrays


def test_atoms_without_results_are_refused():
    with pytest.raises(errors.NoResultsError, match="get_properties"):
        db_data(bulk("Si"))
