"""The staged choices of Predictor.fit beyond depth: composition source, target transform, tuning.

Every stage scores on the inner splits of the data given to fit, so these tests spy on every
head fit and check that no row outside the training part (by its target value) ever reaches one.
"""

import numpy as np
import pytest
from ase.build import bulk, molecule

from hacknip_ase import EmbeddingCalculator
from hacknip_ase.composition import CompositionSource, columns
from hacknip_ase.heads import Predictor, load_predictor
from hacknip_ase.heads import estimators as est
from hacknip_ase.heads.base import RegressorHead
from hacknip_ase.heads import transforms
from hacknip_ase.heads.tuning import tune_xgboost

FAST_XGB = {"n_estimators": 60}


@pytest.fixture(scope="module")
def composition(alloys, tmp_path_factory):
    source = CompositionSource(cache_dir=tmp_path_factory.mktemp("composition"))
    return source, source.embed(alloys[0])


def test_composition_source_is_cached_and_depends_on_formula_only(alloys, tmp_path):
    source = CompositionSource(cache_dir=tmp_path)
    structures = alloys[0][:3]
    first = source.embed(structures)
    assert first.shape == (3, 1, len(columns())) == (3, 1, 146) and first.dtype == np.float32
    again = CompositionSource(cache_dir=tmp_path)
    np.testing.assert_array_equal(again.embed(structures), first)
    entries = list(tmp_path.rglob("*.emb"))
    assert len(entries) == 3  # one cache entry per structure, read back the second time
    a, b = bulk("Cu", "fcc", a=3.6), bulk("Cu", "bcc", a=2.9)  # polymorphs: same composition
    np.testing.assert_array_equal(*CompositionSource(cache_dir=False).embed([a, b])[:, 0])
    nacl = CompositionSource(cache_dir=False).embed([bulk("NaCl", "rocksalt", a=5.64)])
    assert not np.allclose(nacl, CompositionSource(cache_dir=False).embed([a]))


def test_transform_candidates_follow_the_training_targets():
    assert transforms.candidates([1.0, 2.0]) == [None, "log10", "log1p"]
    assert transforms.candidates([0.0, 2.0]) == [None, "log1p"]
    assert transforms.candidates([-1.0, 2.0]) == [None]
    np.testing.assert_allclose(transforms.inverse("log1p", transforms.forward("log1p", [0.0, 3.0])), [0.0, 3.0])
    with pytest.raises(ValueError, match=">= 0"):
        transforms.forward("log1p", [-0.5])


def _spy_on_fits(monkeypatch):
    """Record the targets of every regression head fit (selection, transform, tuning, refit)."""
    seen = []
    original = RegressorHead.fit

    def spy(self, X, y):
        seen.append(np.asarray(y, dtype=float).copy())
        return original(self, X, y)

    monkeypatch.setattr(RegressorHead, "fit", spy)
    return seen


def test_every_stage_sees_the_training_rows_only(alloys, embeddings, composition, chgnet, split, monkeypatch):
    train, test = split
    energies = alloys[1] - alloys[1].min() + 0.1  # positive: log10 and log1p are candidates too
    source, descriptors = composition
    seen = _spy_on_fits(monkeypatch)
    predictor = Predictor.fit([embeddings[train], descriptors[train]], energies[train],
                              backbone=[chgnet, source], head="xgboost", head_params=FAST_XGB, candidates="all",
                              transform="auto", tune_trials=3, cv=3, random_state=0)
    labels = [e["label"] for e in predictor.selection["curve"]]
    everything = "+".join([f"chgnet:{d}" for d in range(5)] + ["composition:0"])
    assert "composition:0" in labels and labels[-1] == everything  # composition alone, everything
    assert len(labels) == 5 + 1 + 1 + 1 + 1  # singles, chgnet concat, composition, best of each, everything
    stage = predictor.selection["transform"]
    assert [c["transform"] for c in stage["candidates"]] == [None, "log10", "log1p"]
    assert stage["chosen"] == max(stage["candidates"], key=lambda c: c["score"])["transform"]
    assert predictor.head.target_transform == stage["chosen"]
    assert predictor.selection["tuning"]["n_trials"] == 3 and predictor.selection["tuning"]["space"] == "xgboost"
    training, held_out = set(energies[train].tolist()), set(energies[test].tolist())
    assert len(seen) > 9 * 3  # every candidate x inner fold, transforms, trials, refits
    for y in seen:
        values = set(y.tolist())
        assert values <= training and not values & held_out
    # held-out predictions of the inner splits are recorded for training rows only
    assert max(predictor.selection["held_out"]["rows"]) < len(train)


def test_tuning_starts_from_the_default_and_keeps_the_best(embeddings, alloys, split):
    from sklearn.model_selection import KFold

    train, _ = split
    X, y = embeddings[train][:, 3], alloys[1][train]
    base = est.XGBoostHead(**FAST_XGB)
    head, record = tune_xgboost(X, y, KFold(3, shuffle=True, random_state=0), base=base, n_trials=4, random_state=0)
    assert record["n_trials"] == 4 and record["best_score"] >= record["default_score"]
    assert record["cpu_seconds"] > 0 and not record["stopped_by_budget"]
    assert head.get_params()["n_estimators"] == record["best_params"]["n_estimators"]
    _, stopped = tune_xgboost(X, y, KFold(3, shuffle=True, random_state=0), base=base, n_trials=50, cpu_budget=0.0)
    assert stopped["stopped_by_budget"] and stopped["n_trials"] == 1


def test_tuning_a_classifier_searches_its_own_parameters(embeddings, alloys, split, chgnet):
    train, _ = split
    labels = (alloys[1][train] > np.median(alloys[1][train])).astype(int)
    predictor = Predictor.fit(embeddings[train], labels, backbone=chgnet, head="xgboost", task="classification",
                              head_params=FAST_XGB, tune_trials=2, cv=3, random_state=0)
    tuning = predictor.selection["tuning"]
    assert tuning["n_trials"] == 2 and "objective" not in tuning["best_params"]  # no regression loss
    scores = predictor.predict_proba_embeddings(embeddings[train][:4])
    assert np.all((scores >= 0) & (scores <= 1))


def test_heads_accept_missing_descriptors(embeddings, alloys, split):
    train, test = split
    X = embeddings[:, 3].astype(float).copy()
    X[::7, :5] = np.nan  # a descriptor that could not be computed
    y = alloys[1]
    for name in ("xgboost", "ridge", "mlp"):
        head = est.make_head(name, "regression", **(FAST_XGB if name == "xgboost" else {})).fit(X[train], y[train])
        assert np.all(np.isfinite(head.predict(X[test])))
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):  # missing is NaN; inf is an error
        est.make_head("ridge").fit(X, y)


def test_predictor_with_composition_round_trips_and_serves_the_calculator(alloys, embeddings, composition, chgnet,
                                                                         split, tmp_path):
    train, test = split
    source, descriptors = composition
    predictor = Predictor.fit([embeddings[train], descriptors[train]], alloys[1][train], backbone=[chgnet, source],
                              head="ridge", depths=[(0, 3), (1, 0)], target_name="e_atom", units="eV/atom")
    path = tmp_path / "e.hnp"
    predictor.save(path)
    loaded = load_predictor(path)
    assert loaded.backbones[1]["kind"] == "descriptors"
    expected = predictor.predict_embeddings([embeddings[test], descriptors[test]])
    np.testing.assert_allclose(loaded.predict([alloys[0][i] for i in test[:3]], backbone=chgnet), expected[:3], rtol=1e-6)
    calc = EmbeddingCalculator(chgnet, heads={"e_atom": loaded})  # one NIP: the composition is computed here
    atoms = alloys[0][test[0]].copy()
    atoms.calc = calc
    assert atoms.get_properties(["e_atom"])["e_atom"] == pytest.approx(expected[0], rel=1e-6)
    with pytest.raises(ValueError, match="atoms="):
        loaded.predict_properties("e_atom", embeddings[test[:1]])
    water = molecule("H2O")
    water.calc = calc
    assert np.isfinite(water.get_properties(["e_atom"])["e_atom"])


def test_physics_sources_compute_their_own_quantities(chgnet, tmp_path):
    from hacknip_ase.physics.records import COLUMN_INFO, PHYSICS_COLUMNS
    from hacknip_ase.sources import PHYSICS_SOURCES, build_source

    structures = [bulk("Cu", "fcc", a=3.61), bulk("Al", "fcc", a=4.04)]  # near equilibrium: the EOS has its minimum
    moduli = build_source("physics-moduli", backbone=chgnet, cache_dir=tmp_path)
    values = moduli.embed(structures)[:, 0]
    for column, (_, quantity) in COLUMN_INFO.items():  # the moduli columns and nothing else
        finite = np.isfinite(values[:, PHYSICS_COLUMNS.index(column)])
        assert finite.all() if quantity in ("eos", "elastic") else not finite.any(), column
    cheap = build_source("physics", backbone=chgnet, cache_dir=tmp_path)
    assert moduli.info["name"] == "physics-moduli" and cheap.info["name"] == "physics"
    assert moduli.info["weights_sha256"] != cheap.info["weights_sha256"]  # the quantities key the record
    assert set(PHYSICS_SOURCES) == {"physics", "physics-moduli", "physics-phonons"}
    with pytest.raises(ValueError, match="physics-everything"):
        build_source("physics-everything", backbone=chgnet)


def test_physics_source_feeds_a_predictor(alloys, embeddings, chgnet, split, tmp_path):
    from hacknip_ase.physics import PHYSICS_COLUMNS
    from hacknip_ase.sources import PhysicsSource, build_source

    train, test = split
    source = PhysicsSource(chgnet, cache_dir=tmp_path)
    structures = [alloys[0][i] for i in train[:12]]
    values = source.embed(structures)
    assert values.shape == (12, 1, len(PHYSICS_COLUMNS))
    energy = PHYSICS_COLUMNS.index("energy_per_atom")
    assert np.all(np.isfinite(values[:, 0, energy])) and np.isnan(values).any()  # unrequested columns: NaN
    assert build_source("physics", backbone=chgnet, cache_dir=tmp_path).info == source.info
    predictor = Predictor.fit([embeddings[train[:12]], values], alloys[1][train[:12]], backbone=[chgnet, source],
                              head="xgboost", head_params=FAST_XGB, depths=[(0, 3), (1, 0)])
    assert predictor.backbones[1]["model"] == f"chgnet {chgnet.info.model}"
    assert np.isfinite(predictor.predict([alloys[0][test[0]]], backbone=chgnet)).all()
