"""The featurization engine: batched, cached, resumable (CHGNet with its shipped weights)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor

from hacknip_ase import FeatureSet, errors, featurize
from hacknip_ase.cache import FeatureCache
from hacknip_ase.featurize import Engine, cache_identity

from .featurize_support import ForwardCounter, chgnet, kill_after_entries, small_structures

TOL = 1e-6  # cached vs fresh, same batches
#: float32 sums change at the 1e-6 level when a structure shares its batch with others.
BATCH_TOL = 1e-5
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backbone():
    return chgnet()


@pytest.fixture(scope="module")
def structures():
    return small_structures(4, seed=1)


@pytest.fixture(scope="module")
def fresh(backbone, structures):
    """Embeddings straight from the backbone, one batch, no cache."""
    return backbone.embed(structures)


def cache_entries(root):
    return sorted(Path(root).glob("*/*/*.emb"))


def test_matches_backbone_and_cached_rerun_matches_fresh(backbone, structures, fresh, tmp_path):
    with ForwardCounter(backbone) as first:
        result = featurize(structures, backbone, batch_size=3, cache_dir=tmp_path, progress=False)
    assert result.embeddings.shape == (4, backbone.info.n_depths, backbone.info.dim)
    assert result.embeddings.dtype == np.float32
    assert result.ids == [str(i) for i in range(4)]
    np.testing.assert_allclose(result.embeddings, fresh, atol=BATCH_TOL, rtol=0)
    assert first.calls == 2 and first.structures == 4  # batches of 3 + 1
    assert len(cache_entries(tmp_path)) == 4

    with ForwardCounter(backbone) as second:
        cached = featurize(structures, backbone, batch_size=3, cache_dir=tmp_path, progress=False)
    assert second.calls == 0
    np.testing.assert_allclose(cached.embeddings, result.embeddings, atol=TOL, rtol=0)
    assert cached.metadata["backbone"]["weights_sha256"] == backbone.info.weights_sha256


def test_partly_cached_run_computes_only_the_new_structures(backbone, structures, fresh, tmp_path):
    featurize(structures[:2], backbone, cache_dir=tmp_path, progress=False)
    with ForwardCounter(backbone) as counter:
        result = featurize(structures, backbone, batch_size=8, cache_dir=tmp_path, progress=False)
    assert counter.structures == 2 and counter.calls == 1
    np.testing.assert_allclose(result.embeddings, fresh, atol=BATCH_TOL, rtol=0)


def test_batch_size_does_not_change_results(backbone, structures, fresh):
    one = featurize(structures, backbone, batch_size=1, cache=False, progress=False)
    np.testing.assert_allclose(one.embeddings, fresh, atol=BATCH_TOL, rtol=0)


def test_cache_false_and_the_older_cache_dir_false_write_no_cache(backbone, structures, tmp_path, monkeypatch):
    monkeypatch.setenv("HACKNIP_CACHE_DIR", str(tmp_path))
    off = featurize(structures[:2], backbone, cache=False, progress=False)
    old = featurize(structures[:2], backbone, cache_dir=False, progress=False)
    np.testing.assert_array_equal(off.embeddings, old.embeddings)
    assert off.metadata["cache_identity"] is None and old.metadata["cache_identity"] is None
    assert not (tmp_path / "features").exists()
    with pytest.raises(errors.InvalidOptionError, match="cache must be"):
        featurize(structures[:1], backbone, cache="no", progress=False)


def test_rotated_structure_has_its_own_key_but_the_same_embedding(backbone, tmp_path):
    atoms = bulk("GaAs", "zincblende", a=5.65).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=4)
    rotated = atoms.copy()
    rotated.rotate(37, "x", rotate_cell=True)
    rotated.rotate(71, "z", rotate_cell=True)
    cache = FeatureCache(cache_identity(backbone), (backbone.info.n_depths, backbone.info.dim), tmp_path)
    assert cache.key(atoms) != cache.key(rotated)
    with ForwardCounter(backbone) as counter:
        result = featurize([atoms, rotated], backbone, cache_dir=tmp_path, progress=False)
    assert counter.structures == 2 and len(cache_entries(tmp_path)) == 2
    np.testing.assert_allclose(result.embeddings[0], result.embeddings[1], atol=1e-5, rtol=0)


def test_corrupt_entry_is_recomputed(backbone, structures, fresh, tmp_path):
    first = featurize(structures, backbone, cache_dir=tmp_path, progress=False)
    damaged = cache_entries(tmp_path)[2]
    blob = bytearray(damaged.read_bytes())
    blob[60] ^= 0xFF  # inside the float payload: only the checksum can notice
    damaged.write_bytes(bytes(blob))
    engine = Engine(backbone, cache_dir=tmp_path)
    with ForwardCounter(backbone) as counter:
        chunks = list(engine.run([(str(i), s) for i, s in enumerate(structures)]))
    assert counter.structures == 1 and engine.cache.corrupt == 1
    np.testing.assert_allclose(np.concatenate([c for _, c in chunks]), first.embeddings, atol=BATCH_TOL, rtol=0)
    assert damaged.exists()  # rewritten
    with ForwardCounter(backbone) as again:
        featurize(structures, backbone, cache_dir=tmp_path, progress=False)
    assert again.calls == 0


def test_duplicates_are_computed_once(backbone, structures, fresh, tmp_path):
    doubled = [structures[0], structures[1], structures[0].copy()]
    with ForwardCounter(backbone) as counter:
        result = featurize(doubled, backbone, cache_dir=tmp_path, progress=False)
    assert counter.structures == 2
    np.testing.assert_allclose(result.embeddings, fresh[[0, 1, 0]], atol=BATCH_TOL, rtol=0)


def test_inputs_pymatgen_pairs_ids_and_generators(backbone, structures, fresh):
    pymatgen = [AseAtomsAdaptor.get_structure(a) for a in structures[:2]]
    result = featurize(pymatgen, backbone, ids=["a", "b"], cache=False, progress=False)
    assert result.ids == ["a", "b"]
    np.testing.assert_allclose(result.embeddings, fresh[:2], atol=1e-5, rtol=0)
    pairs = featurize(((f"s{i}", s) for i, s in enumerate(structures[:3])), backbone, cache=False, progress=False)
    assert pairs.ids == ["s0", "s1", "s2"]
    single = featurize(structures[0], backbone, cache=False, progress=False)
    assert single.embeddings.shape == (1, *fresh.shape[1:])
    with pytest.raises(ValueError, match="3 ids for 2"):
        featurize(structures[:2], backbone, ids=["a", "b", "c"], cache=False, progress=False)


def test_rejected_structure_raises_with_its_id_or_is_skipped(backbone, structures, fresh, tmp_path):
    americium = bulk("Cu", "fcc", a=3.6)
    americium.numbers[:] = 95  # not covered by CHGNet
    inputs = [("ok0", structures[0]), ("bad", americium), ("ok1", structures[1])]
    with pytest.raises(errors.UnsupportedElementError, match="'bad'"):
        featurize(inputs, backbone, cache_dir=tmp_path, progress=False)
    result = featurize(inputs, backbone, cache_dir=tmp_path, on_error="skip", progress=False)
    assert result.ids == ["ok0", "ok1"]
    np.testing.assert_allclose(result.embeddings, fresh[:2], atol=BATCH_TOL, rtol=0)
    assert [s["id"] for s in result.metadata["skipped"]] == ["bad"]
    assert "UnsupportedElementError" in result.metadata["skipped"][0]["error"]


def test_out_file_round_trip(backbone, structures, fresh, tmp_path):
    result = featurize(structures[:4], backbone, cache_dir=tmp_path / "cache", out=tmp_path / "features",
                       progress=False)
    path = tmp_path / "features.npz"
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["embeddings", "ids", "metadata"]
        np.testing.assert_allclose(archive["embeddings"], result.embeddings, atol=TOL, rtol=0)
    np.testing.assert_allclose(result.embeddings, fresh[:4], atol=BATCH_TOL, rtol=0)
    loaded = FeatureSet.load(path)
    assert loaded.ids == result.ids == ["0", "1", "2", "3"]
    meta = loaded.metadata
    assert meta["format"] == "hacknip-features" and meta["format_version"] == 1
    assert meta["backbone"]["name"] == "chgnet" and len(meta["backbone"]["weights_sha256"]) == 64
    assert meta["options"]["expand_supercell"] is False
    assert {"hacknip-ase", "torch", "chgnet", "numpy"} <= set(meta["versions"])
    assert not list(tmp_path.glob(".*"))  # no spill or temp file left behind


CHILD = """
import sys
from hacknip_ase import featurize
from tests.featurize_support import ForwardCounter, chgnet, small_structures

backbone = chgnet()
with ForwardCounter(backbone, delay=0.4):  # slow enough to be killed halfway
    featurize(small_structures(8, seed=7), backbone, batch_size=1, cache_dir=sys.argv[1], progress=False)
"""


def test_resume_after_sigkill(backbone, tmp_path):
    structures = small_structures(8, seed=7)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)], cwd=REPO, env=env,
                             stderr=subprocess.PIPE)
    kill_after_entries(child, tmp_path, 2)
    assert child.returncode == -signal.SIGKILL
    finished = cache_entries(tmp_path)
    assert 2 <= len(finished) < 8  # killed halfway
    # Every entry the killed run left is whole: it reads back without a checksum failure.
    cache = FeatureCache(cache_identity(backbone), (backbone.info.n_depths, backbone.info.dim), tmp_path)
    assert all(cache.get(p.stem) is not None for p in finished) and cache.corrupt == 0

    with ForwardCounter(backbone) as counter:
        resumed = featurize(structures, backbone, batch_size=1, cache_dir=tmp_path, progress=False)
    assert counter.structures == 8 - len(finished)  # nothing finished is lost or recomputed
    fresh = featurize(structures, backbone, batch_size=1, cache=False, progress=False)
    np.testing.assert_allclose(resumed.embeddings, fresh.embeddings, atol=TOL, rtol=0)
    assert len(cache_entries(tmp_path)) == 8


def test_skip_on_error_skips_files_that_do_not_parse(backbone, tmp_path):
    from ase.io import write

    from hacknip_ase.cli import main

    folder = tmp_path / "cifs"
    folder.mkdir()
    structures = small_structures(3, seed=5)
    for i, atoms in enumerate(structures):
        write(folder / f"s{i}.cif", atoms)
    (folder / "s1b.cif").write_text("garbage, not a CIF\n")
    result = featurize(folder, backbone, cache_dir=tmp_path / "cache", on_error="skip", progress=False)
    assert result.ids == ["s0", "s1", "s2"]
    assert [s["id"] for s in result.metadata["skipped"]] == ["s1b"]
    assert "StructureParseError" in result.metadata["skipped"][0]["error"]
    with pytest.raises(errors.StructureParseError, match="s1b.cif"):
        featurize(folder, backbone, cache_dir=tmp_path / "cache", progress=False)
    out = tmp_path / "x.npz"
    assert main(["featurize", str(folder), "-o", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--on-error", "skip", "-q"]) == 0
    assert FeatureSet.load(out).ids == ["s0", "s1", "s2"]


CACHED_CHILD = """
import sys
from hacknip_ase.engine import Engine
from hacknip_ase.featurize import write_features
from hacknip_ase.readers import read_structures
import hacknip_ase.reader_base as reader_base

parsed = []
original = reader_base.read_cif
reader_base.read_cif = lambda path: parsed.append(path) or original(path)
engine = Engine("chgnet", cache_dir=sys.argv[2])
write_features(engine, read_structures(sys.argv[1]), sys.argv[3], progress=False)
print(engine.loaded, len(parsed), "torch" in sys.modules, engine.computed)
"""


def test_fully_cached_run_loads_no_model_and_parses_no_known_file(tmp_path):
    from ase.io import write

    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, atoms in enumerate(small_structures(4, seed=9)):
        write(folder / f"s{i}.cif", atoms)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def child(out):
        done = subprocess.run([sys.executable, "-c", CACHED_CHILD, str(folder), str(tmp_path / "cache"), str(out)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    assert child(tmp_path / "cold.npz") == ["True", "4", "True", "4"]
    assert child(tmp_path / "warm.npz") == ["False", "0", "False", "0"]  # no model, no parse, no torch
    cold, warm = FeatureSet.load(tmp_path / "cold.npz"), FeatureSet.load(tmp_path / "warm.npz")
    assert warm.ids == cold.ids
    np.testing.assert_array_equal(warm.embeddings, cold.embeddings)
    assert warm.metadata["backbone"] == cold.metadata["backbone"]
    assert warm.metadata["cache_identity"] == cold.metadata["cache_identity"]
    # an edited file is parsed again (its content is new), the others still are not
    write(folder / "s2.cif", small_structures(1, seed=11)[0])
    assert child(tmp_path / "edited.npz") == ["True", "1", "True", "1"]


def test_stale_identity_record_is_refused_and_removed(tmp_path):
    from hacknip_ase.cache import _request_path
    from hacknip_ase.engine import _identity_request

    engine = Engine("chgnet", cache_dir=tmp_path)
    request = _identity_request("chgnet", {}, "cpu")
    record = _request_path(request, tmp_path)
    data = json.loads(record.read_text())
    data["identity"]["weights_sha256"] = "0" * 64  # as if the packaged weights changed
    record.write_text(json.dumps(data))
    stale = Engine("chgnet", cache_dir=tmp_path)
    assert not stale.loaded
    with pytest.raises(errors.HackNIPError, match="differs from the identity"):
        stale.backbone
    assert not record.exists()
    assert Engine("chgnet", cache_dir=tmp_path).identity == engine.identity


WRITER_CHILD = """
import sys
from hacknip_ase.featurize import featurize_to_file
from tests.featurize_support import ForwardCounter, chgnet, small_structures

backbone = chgnet()
with ForwardCounter(backbone, delay=0.4):
    featurize_to_file(small_structures(8, seed=3), sys.argv[1], backbone, batch_size=1, cache_dir=sys.argv[2],
                      progress=False)
"""


def test_killed_featurize_leaves_no_spill_or_partial_output(tmp_path):
    out = tmp_path / "out" / "features.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", WRITER_CHILD, str(out), str(tmp_path / "cache")], cwd=REPO,
                             env=env, stderr=subprocess.PIPE)
    kill_after_entries(child, tmp_path / "cache", 2)
    assert list(out.parent.iterdir()) == []  # the spill file had no name; no output yet


def test_output_files_get_the_users_permissions(backbone, structures, tmp_path):
    umask = os.umask(0o022)
    try:
        featurize(structures[:2], backbone, cache=False, out=tmp_path / "f.npz", progress=False)
    finally:
        os.umask(umask)
    assert (tmp_path / "f.npz").stat().st_mode & 0o777 == 0o644
