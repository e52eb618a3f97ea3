"""The I/O floor: atomic writes, the one downloader, the JSON encoder, the user cache folder."""

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from hacknip_ase.files import atomic_output, atomic_write, cache_dir, download_file, json_default


def test_atomic_write_is_whole_or_nothing(tmp_path):
    path = atomic_write(tmp_path / "a" / "b.bin", b"data")
    assert path.read_bytes() == b"data"
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "a" / "c.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin"]  # no partial file, no temporary


def test_download_copies_and_fails_fast_offline(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3_000_000)
    assert download_file(source.as_uri(), tmp_path / "out" / "copy.bin", timeout=5).read_bytes() == source.read_bytes()
    with pytest.raises(urllib.error.URLError):
        download_file((tmp_path / "missing.bin").as_uri(), tmp_path / "out" / "missing.bin", timeout=5)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy.bin"]


def test_json_default_writes_numpy_sets_and_paths():
    value = {"a": np.arange(3), "b": np.float32(0.5), "c": {3, 1}, "d": Path("/x")}
    assert json.loads(json.dumps(value, default=json_default)) == {"a": [0, 1, 2], "b": 0.5, "c": [1, 3], "d": "/x"}
    with pytest.raises(TypeError, match="object"):
        json.dumps(object(), default=json_default)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HACKNIP_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("HACKNIP_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "hacknip_ase"
