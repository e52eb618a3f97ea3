"""The content-keyed, atomic embedding cache."""

import os

import numpy as np
import pytest
from ase.build import bulk

from hacknip_ase import cache as cache_module
from hacknip_ase.cache import FeatureCache, structure_digest

IDENTITY = {"name": "toy", "model": "m1", "weights_sha256": "ab" * 32, "expand_supercell": False}
SHAPE = (3, 4)


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(IDENTITY, SHAPE, tmp_path)


def entries(cache):
    return sorted(cache.folder.glob("*/*.emb"))


def test_put_then_get_is_exact(cache):
    value = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    key = cache.key(bulk("Si"))
    assert cache.get(key) is None
    cache.put(key, value)
    np.testing.assert_array_equal(cache.get(key), value)
    assert cache.stats() == {"hits": 1, "misses": 1, "corrupt": 0, "writes": 1}
    assert [p.name for p in entries(cache)] == [f"{key}.emb"]
    assert not list(cache.folder.rglob("*.part"))


def test_key_follows_content_and_identity(tmp_path, cache):
    si = bulk("Si")
    key = cache.key(si)
    assert cache.key(si.copy()) == key
    moved = si.copy()
    moved.positions[1, 0] += 1e-6
    assert cache.key(moved) != key
    rotated = si.copy()
    rotated.rotate(30, "z", rotate_cell=True)
    assert cache.key(rotated) != key
    other_cell = si.copy()
    other_cell.pbc = [True, True, False]
    assert cache.key(other_cell) != key
    other_weights = FeatureCache({**IDENTITY, "weights_sha256": "cd" * 32}, SHAPE, tmp_path)
    other_option = FeatureCache({**IDENTITY, "expand_supercell": True}, SHAPE, tmp_path)
    assert len({key, other_weights.key(si), other_option.key(si)}) == 3
    assert len({cache.folder, other_weights.folder, other_option.folder}) == 3
    assert structure_digest(si) != structure_digest(bulk("Ge", a=5.43))


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "shape"])
def test_corrupt_entry_is_detected_and_deleted(cache, damage):
    key = cache.key(bulk("Si"))
    cache.put(key, np.ones(SHAPE, np.float32))
    path = cache.path(key)
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[-3] ^= 0x10
    elif damage == "truncate":
        blob = blob[:-5]
    elif damage == "empty":
        blob = b""
    else:  # a valid entry of another shape under this key
        FeatureCache(IDENTITY, (4, 3), cache.root).put(key, np.ones((4, 3), np.float32))
        blob = (FeatureCache(IDENTITY, (4, 3), cache.root).path(key)).read_bytes()
    path.write_bytes(bytes(blob))
    assert cache.get(key) is None
    assert cache.corrupt == 1 and not path.exists()
    cache.put(key, np.full(SHAPE, 2.0, np.float32))
    np.testing.assert_array_equal(cache.get(key), np.full(SHAPE, 2.0))


def test_failed_write_leaves_neither_entry_nor_temp_file(cache, monkeypatch):
    key = cache.key(bulk("Si"))

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        cache.put(key, np.ones(SHAPE, np.float32))
    monkeypatch.undo()
    assert cache.get(key) is None
    assert not [p for p in cache.folder.rglob("*") if p.is_file() and p.name != "identity.json"]


def test_wrong_shape_is_refused(cache):
    with pytest.raises(ValueError, match="shape"):
        cache.put(cache.key(bulk("Si")), np.ones((2, 4), np.float32))


def test_identity_is_written_for_humans(cache):
    import json

    record = json.loads((cache.folder / "identity.json").read_text())
    assert record["weights_sha256"] == IDENTITY["weights_sha256"] and record["cache_format"] == 1
    assert cache.folder.name.startswith("toy-m1-")
    assert os.path.commonpath([cache.folder, cache.root]) == str(cache.root)
