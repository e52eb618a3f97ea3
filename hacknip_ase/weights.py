"""Where model weights come from: an explicit path, the user cache, or a download.

One place for all adapters. The cache folder is ``$HACKNIP_CACHE_DIR/weights`` (default
``~/.cache/hacknip_ase/weights``).
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

from .errors import CorruptWeightsError, DownloadError, WeightsNotFoundError
from .files import cache_dir, download_file, sha256_file

__all__ = ["DOWNLOAD_TIMEOUT", "cache_dir", "resolve_weights", "sha256_file"]

#: Seconds before a download that gets no answer gives up.
DOWNLOAD_TIMEOUT = 30.0


def resolve_weights(
    *,
    model: str,
    filename: str,
    url: str | None,
    path: str | os.PathLike | None = None,
    sha256: str | None = None,
    download: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> Path:
    """Return a local weights file for ``model``.

    Order: ``path`` if given (it must exist), else ``cache_dir()/weights/filename``, else a
    download from ``url`` into that cache. A known ``sha256`` is checked.
    """
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_file():
            raise WeightsNotFoundError(
                f"weights file for {model} not found at {local}; "
                + (f"download it from {url}" if url else "pass the path of a trained checkpoint")
            )
    else:
        local = cache_dir() / "weights" / filename
        if not local.is_file():
            if not download or url is None:
                raise WeightsNotFoundError(
                    f"no weights for {model} at {local}; put the file there or pass weights=PATH"
                    + (f" (source: {url})" if url else "")
                )
            _download(url, local, model=model, timeout=timeout)
    if sha256 is not None and sha256_file(local) != sha256:
        raise CorruptWeightsError(f"weights file {local} for {model} fails its sha256 check; delete it and fetch it again")
    return local


def _download(url: str, destination: Path, *, model: str, timeout: float) -> None:
    try:
        download_file(url, destination, timeout=timeout)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DownloadError(
            f"could not download weights for {model} from {url} ({exc}); this machine may be "
            f"offline: fetch the file elsewhere and put it at {destination}, or pass weights=PATH"
        ) from exc
