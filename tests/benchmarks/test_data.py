"""Data-folder resolution, download with checksum, and the data-missing error."""

import hashlib

import pytest

from benchmarks.data import DataFile, locate, resolve_data_dir
from benchmarks.tasks import get_task
from hacknip_ase.errors import DataFormatError, DataNotFoundError


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HACKNIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HACKNIP_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "cache" / "data"
    monkeypatch.setenv("HACKNIP_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_missing_file_offline_names_file_folder_and_url(tmp_path):
    url = (tmp_path / "nowhere" / "x.csv").as_uri()  # fails like an unreachable host, offline
    with pytest.raises(DataNotFoundError) as info:
        locate(DataFile("family/x.csv", url=url), tmp_path / "data")
    message = str(info.value)
    assert "family/x.csv" in message and str(tmp_path / "data") in message and url in message


def test_task_without_data_raises_data_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="aimd_li_diffusivity.csv"):
        get_task("aimd_li_diffusivity").load(tmp_path)


def test_download_checks_sha256(tmp_path):
    source = tmp_path / "official.csv"
    source.write_text("a,b\n1,2\n")
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    path = locate(DataFile("f/ok.csv", url=source.as_uri(), sha256=good), tmp_path / "data")
    assert path.read_text() == "a,b\n1,2\n"
    with pytest.raises(DataFormatError, match="sha256"):
        locate(DataFile("f/bad.csv", url=source.as_uri(), sha256="0" * 64), tmp_path / "data")
    assert not (tmp_path / "data" / "f" / "bad.csv").exists()


def test_registry_builds_only_the_task_asked_for(monkeypatch):
    import benchmarks.tasks as registry

    def never():
        raise AssertionError("another task was built")

    monkeypatch.setattr(registry, "_FACTORIES", {**{n: never for n in registry.TASKS}, "aimd_li_diffusivity":
                                                 registry._FACTORIES["aimd_li_diffusivity"]})
    assert get_task("aimd_li_diffusivity").name == "aimd_li_diffusivity"
