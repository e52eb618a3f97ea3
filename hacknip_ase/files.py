"""The package's I/O floor: the user cache folder, whole-or-nothing writes, downloads, JSON of numpy values.

One copy of each, for the feature cache, the features file, model weights, the predictor file and
the benchmarks' data and results.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: Environment variable naming the root of hacknip-ase's user cache.
CACHE_ENV = "HACKNIP_CACHE_DIR"


def cache_dir() -> Path:
    """Root of hacknip-ase's user cache (weights, features, physics, data): ``$HACKNIP_CACHE_DIR``,
    default ``~/.cache/hacknip_ase``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "hacknip_ase"))


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed into place (parents created).

    A reader sees the whole file or none, even when the writer is killed. No fsync: a killed
    process cannot leave a partial file behind a rename, and checksums catch what a power loss
    might. The file gets the umask's permissions (mkstemp's own are 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def download_file(url: str, destination: str | os.PathLike, *, timeout: float) -> Path:
    """Fetch ``url`` into ``destination`` through :func:`atomic_output`.

    A server that does not answer within ``timeout`` seconds, or no network, raises at once
    (``urllib.error.URLError``, ``TimeoutError`` or ``OSError``: callers turn them into their typed
    error, saying where to put the file by hand); nothing is left behind.
    """
    Path(destination).parent.mkdir(parents=True, exist_ok=True)  # where to put the file by hand, if it fails
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_output(destination) as tmp:
        with open(tmp, "wb") as handle:
            shutil.copyfileobj(response, handle, 1 << 20)
    return Path(destination)


def json_default(value):
    """``json.dumps(..., default=json_default)``: numpy arrays and scalars, sets and paths as plain JSON."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
