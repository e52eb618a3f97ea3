import os
import time

import pytest

from hacknip_ase import errors
from hacknip_ase._trusted import import_trusted, trusted_package_loads
from hacknip_ase.weights import resolve_weights, sha256_file


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HACKNIP_CACHE_DIR", str(tmp_path / "cache"))


def test_explicit_path_and_checksum(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    assert resolve_weights(model="m", filename="w.bin", url=None, path=path, sha256=sha256_file(path)) == path
    with pytest.raises(errors.CorruptWeightsError, match="sha256"):
        resolve_weights(model="m", filename="w.bin", url=None, path=path, sha256="0" * 64)


def test_cached_file_is_used(tmp_path):
    cached = tmp_path / "cache" / "weights" / "w.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert resolve_weights(model="m", filename="w.bin", url="http://127.0.0.1:9/w.bin") == cached


def test_offline_download_fails_fast_and_says_where(tmp_path):
    start = time.monotonic()
    with pytest.raises(errors.DownloadError) as info:
        resolve_weights(model="m", filename="w.bin", url="http://127.0.0.1:9/w.bin", timeout=5)
    assert time.monotonic() - start < 30
    assert str(tmp_path / "cache" / "weights" / "w.bin") in str(info.value)
    assert not list((tmp_path / "cache" / "weights").glob("*.part"))


def test_no_download_when_disabled():
    with pytest.raises(errors.WeightsNotFoundError, match="weights=PATH"):
        resolve_weights(model="m", filename="w.bin", url="http://127.0.0.1:9/w.bin", download=False)


def test_trusted_loads_are_scoped(monkeypatch):
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    with trusted_package_loads():
        assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    import_trusted("e3nn.o3")
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
