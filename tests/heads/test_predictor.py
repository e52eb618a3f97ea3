import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from ase.build import bulk
from sklearn.neighbors import KNeighborsRegressor

from hacknip_ase import EmbeddingCalculator
from hacknip_ase.errors import PredictorMismatchError, UntrustedPredictorError
from hacknip_ase.heads import HEADS, Predictor, load_predictor


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("name", list(HEADS))
def test_save_load_round_trip(name, task, regressors, classifiers, embeddings, chgnet, tmp_path):
    predictor = (regressors if task == "regression" else classifiers)[name]
    path = tmp_path / f"{name}.hnp"
    predictor.save(path)
    loaded = load_predictor(path)
    np.testing.assert_array_equal(loaded.predict_embeddings(embeddings), predictor.predict_embeddings(embeddings))
    np.testing.assert_array_equal(loaded.domain_distance(embeddings), predictor.domain_distance(embeddings))
    if task == "classification":
        np.testing.assert_array_equal(loaded.predict_proba_embeddings(embeddings),
                                      predictor.predict_proba_embeddings(embeddings))
    with zipfile.ZipFile(path) as bundle:
        assert not any(n.endswith(".pkl") for n in bundle.namelist())
        meta = json.loads(bundle.read("predictor.json"))
    assert meta["backbones"][0]["weights_sha256"] == chgnet.info.weights_sha256
    assert meta["backbones"][0]["name"] == "chgnet"
    assert meta["n_train"] == 120 and meta["units"] == "eV/atom" and meta["target_name"] == "e_atom"
    assert meta["depths"] == [list(p) for p in predictor.depths]
    assert meta["seeds"]["random_state"] == 0 and meta["versions"]["numpy"] == np.__version__
    assert "x_mean_" not in meta["head"]["state"]  # arrays live in arrays.npz, not JSON


def test_fit_records_selection_and_transform(embeddings, alloys, split, chgnet, tmp_path):
    train, _ = split
    shifted = alloys[1][train] + 5.0  # positive, so log10 applies
    predictor = Predictor.fit(embeddings[train], shifted, backbone=chgnet, head="ridge", transform="log10",
                              candidates="concat", cv=3, target_name="shifted", units="eV/atom")
    curve = predictor.selection["curve"]
    assert len(curve) == 6 and predictor.depths == tuple(tuple(p) for p in max(curve, key=lambda c: c["score"])["candidate"])
    predictor.save(tmp_path / "p.hnp")
    meta = load_predictor(tmp_path / "p.hnp").metadata()
    assert meta["transform"] == "log10" and meta["selection"]["curve"] == json.loads(json.dumps(curve))
    assert np.all(predictor.predict_embeddings(embeddings) > 0)


def test_mismatched_backbone_raises(regressors, chgnet, tmp_path):
    predictor = regressors["ridge"]
    predictor.check_backbone(chgnet.info)
    with pytest.raises(PredictorMismatchError, match="sha256"):
        predictor.check_backbone(dataclasses.replace(chgnet.info, weights_sha256="0" * 64))
    with pytest.raises(PredictorMismatchError, match="trained on chgnet 0.3.0"):
        predictor.check_backbone(dataclasses.replace(chgnet.info, name="orb", model="orb-v2"))
    predictor.save(tmp_path / "p.hnp")
    # the same architecture with other weights (CHGNet 0.2.0 ships in the wheel too)
    with pytest.raises(PredictorMismatchError, match="trained on chgnet 0.3.0"):
        EmbeddingCalculator("chgnet", model="0.2.0", heads={"e_atom": str(tmp_path / "p.hnp")})
    with pytest.raises(PredictorMismatchError, match="depths"):
        predictor.predict_embeddings(np.zeros((1, 4, 64)))


def test_pickled_head_needs_trust(embeddings, alloys, split, chgnet, tmp_path):
    train, test = split
    predictor = Predictor.fit(embeddings[train], alloys[1][train], backbone=chgnet.info, depths=3,
                              head=KNeighborsRegressor(n_neighbors=3), target_name="e")
    predictor.save(tmp_path / "knn.hnp")
    with pytest.raises(UntrustedPredictorError, match="trust=True"):
        load_predictor(tmp_path / "knn.hnp")
    trusted = load_predictor(tmp_path / "knn.hnp", trust=True)
    np.testing.assert_array_equal(trusted.predict_embeddings(embeddings[test]),
                                  predictor.predict_embeddings(embeddings[test]))
    (tmp_path / "junk.hnp").write_bytes(b"not a zip")
    with pytest.raises(PredictorMismatchError, match="not a hacknip-ase predictor"):
        load_predictor(tmp_path / "junk.hnp")


def test_domain_distance_flags_unfamiliar_structures(regressors, embeddings, split, chgnet):
    predictor = regressors["xgboost"]
    train, test = split
    inside = predictor.domain_distance(embeddings[test])
    assert 0.3 < np.median(inside) < 2.0
    far = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    outside = predictor.domain_distance(chgnet.embed(far))
    assert np.all(outside > 3 * np.max(inside))


def test_calculator_heads_share_one_forward_pass(regressors, classifiers, alloys, embeddings, chgnet, tmp_path):
    regressors["xgboost"].save(tmp_path / "e.hnp")
    classifiers["ridge"].save(tmp_path / "high.hnp")
    calc = EmbeddingCalculator(chgnet, heads={"e_atom": str(tmp_path / "e.hnp"), "high_e": str(tmp_path / "high.hnp")})
    calls = []
    forward = chgnet.forward
    chgnet.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        atoms = alloys[0][5].copy()
        atoms.calc = calc
        names = ["e_atom", "e_atom_domain_distance", "high_e", "high_e_probability", "high_e_domain_distance"]
        values = atoms.get_properties(names)
    finally:
        del chgnet.forward
    assert len(calls) == 1
    x = embeddings[5:6]
    assert values["e_atom"] == pytest.approx(regressors["xgboost"].predict_embeddings(x)[0], rel=1e-5)
    assert values["high_e_probability"] == pytest.approx(classifiers["ridge"].predict_proba_embeddings(x)[0, 1],
                                                         rel=1e-4)
    assert values["high_e"] in (0.0, 1.0) and 0 < values["e_atom_domain_distance"] < 5


def test_fresh_process_reads_saved_predictor(regressors, alloys, tmp_path):
    path = tmp_path / "e_atom.hnp"
    regressors["modnet"].save(path)
    atoms = alloys[0][7]
    atoms.write(tmp_path / "atoms.traj")
    script = textwrap.dedent(f"""
        import json
        from ase.io import read
        from hacknip_ase import EmbeddingCalculator
        atoms = read({str(tmp_path / 'atoms.traj')!r})
        atoms.calc = EmbeddingCalculator(backbone="chgnet", heads={{"e_atom": {str(path)!r}}})
        names = ["e_atom", "e_atom_domain_distance"]
        values = atoms.get_properties(names)
        print(json.dumps({{name: float(values[name]) for name in names}}))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    expected = regressors["modnet"].predict(alloys[0][7:8], backbone=None)[0]
    assert values["e_atom"] == pytest.approx(expected, rel=1e-5)
    assert values["e_atom"] == pytest.approx(alloys[1][7], abs=0.05)
    assert values["e_atom_domain_distance"] > 0


def test_fit_structures_convenience(alloys, embeddings, chgnet):
    structures, energies = alloys
    predictor = Predictor.fit_structures(structures[:40], energies[:40], backbone=chgnet, head="ridge", cv=3,
                                         target_name="e_atom", units="eV/atom")
    assert predictor.n_train == 40 and predictor.backbones[0]["weights_sha256"] == chgnet.info.weights_sha256
    np.testing.assert_allclose(predictor.predict(structures[40:45], backbone=chgnet),
                               predictor.predict_embeddings(embeddings[40:45]), rtol=1e-6)


def test_a_structure_of_a_periodicity_never_trained_on_is_out_of_domain(embeddings, alloys, split, chgnet, tmp_path):
    from ase.build import bulk, molecule

    from hacknip_ase import EmbeddingCalculator
    from hacknip_ase.heads.feature_sources import pbc_kind

    assert pbc_kind([bulk("Si"), bulk("Cu")]) == "all" and pbc_kind([molecule("H2O")]) == "none"
    assert pbc_kind([bulk("Si"), molecule("H2O")]) == "mixed"
    train, _ = split
    predictor = Predictor.fit(embeddings[train], alloys[1][train], backbone=chgnet.info, head="ridge", depths=2,
                              target_name="e")
    predictor.training_pbc = "all"  # crystals only, as Predictor.fit_structures records for alloy cells
    predictor.save(tmp_path / "e.hnp")
    calc = EmbeddingCalculator(chgnet, heads={"e": tmp_path / "e.hnp"})
    crystal, water = bulk("Cu", "fcc", a=3.6), molecule("H2O")
    crystal.calc, water.calc = calc, calc
    assert np.isfinite(crystal.get_properties(["e_domain_distance"])["e_domain_distance"])
    assert water.get_properties(["e_domain_distance"])["e_domain_distance"] == np.inf
    assert np.isfinite(water.get_properties(["e"])["e"])  # still predicted, but flagged
    assert load_predictor(tmp_path / "e.hnp").training_pbc == "all"
