"""Where benchmark data lives: ``--data-dir``, then ``$HACKNIP_DATA_DIR``, then the user cache.

A missing file is downloaded from its official source when a URL is known (and checked
against its published sha256); when that fails (offline) a :class:`DataNotFoundError` names
the file, the folder searched and the URL.
"""

from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from hacknip_ase.errors import DataFormatError, DataNotFoundError
from hacknip_ase.files import cache_dir, download_file, sha256_file

DATA_ENV = "HACKNIP_DATA_DIR"
#: Seconds before a download that gets no answer gives up.
DOWNLOAD_TIMEOUT = 60.0


@dataclass(frozen=True)
class DataFile:
    """One file of a task, relative to the data folder, with its official source."""

    path: str  #: e.g. "matbench/matbench_jdft2d.json.gz"
    url: str | None = None  #: direct download URL; None when it cannot be fetched by a script
    sha256: str | None = None  #: published checksum, checked after a download
    source: str = ""  #: where a person gets it when there is no direct URL


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else ``$HACKNIP_DATA_DIR``, else ``cache_dir()/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return cache_dir() / "data"


def is_present(file: DataFile, data_dir: str | os.PathLike | None = None) -> bool:
    return (resolve_data_dir(data_dir) / file.path).is_file()


def locate(file: DataFile, data_dir: str | os.PathLike | None = None, *, download: bool = True,
           timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Local path of ``file``, downloading it into the data folder if it is missing."""
    root = resolve_data_dir(data_dir)
    local = root / file.path
    if local.is_file():
        return local
    where = file.url or file.source or "no public URL known"
    if not download or file.url is None:
        raise DataNotFoundError(
            f"data file {file.path!r} not found in {root} (searched {local}); get it from {where} "
            f"and put it there, or point --data-dir / ${DATA_ENV} at a folder that has it"
        )
    try:
        download_file(file.url, local, timeout=timeout)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DataNotFoundError(
            f"data file {file.path!r} not found in {root} (searched {local}) and the download from "
            f"{file.url} failed ({exc}); this machine may be offline: fetch it elsewhere and put "
            f"it at {local}, or point --data-dir / ${DATA_ENV} at a folder that has it"
        ) from exc
    if file.sha256 is not None and sha256_file(local) != file.sha256:
        bad = local.with_name(local.name + ".bad")
        os.replace(local, bad)  # keep it for inspection, but never load it
        raise DataFormatError(f"downloaded {file.url} fails its published sha256 {file.sha256}; kept as {bad}")
    return local

