"""Content-keyed, crash-safe cache of mean-pooled embeddings, one small file per structure.

Layout: ``ROOT/<backbone>-<model>-<identity[:16]>/<key[:2]>/<key>.emb`` where ROOT defaults to
``cache_dir()/features``. ``identity`` is the sha256 of the backbone's identity (name, model,
weights sha256, depths, dim, cutoff, features), the options that change the numbers
(``expand_supercell``), the hacknip-ase version and the entry format. ``key`` is the sha256 of
that identity plus the structure's content: atomic numbers, positions, cell and pbc as raw
little-endian bytes. So a rotated or translated copy of a structure gets its own key (its
embedding is the same, but the cache does not try to prove that).

Two small indexes let a fully cached run skip work:

- ``ROOT/<identity folder>/files/<digest[:2]>/<digest>.key``: the structure key (hex) of a
  structure file whose bytes have sha256 ``digest``, so a known file is not parsed again;
- ``ROOT/backbones/<request sha256>.json``: the identity (and shape) of the backbone that a
  request (registry name, options, NIP package version, given weights file's sha256) builds, so
  a run whose every structure is cached never loads the model (nor imports torch).

Entry file: ``MAGIC`` (8 bytes) | sha256 of the payload (32) | n_depths, dim (2 x uint32 LE) |
payload = float32 LE array (n_depths, dim). Entries are written to a temporary file in the same
folder and moved into place with ``os.replace``, so a reader sees a whole entry or none, even
when the writer is killed. An entry that fails its checksum or shape (disk damage, power loss)
is deleted and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path

import numpy as np
from ase import Atoms

from .files import atomic_write
from .files import cache_dir as user_cache_dir

MAGIC = b"HNIPEMB1"
_HEADER = struct.Struct("<8s32sII")
#: Bump when the entry layout or the key recipe changes.
CACHE_FORMAT = 1

log = logging.getLogger(__name__)


def default_cache_root() -> Path:
    return user_cache_dir() / "features"


def structure_digest(atoms: Atoms, prefix: bytes = b"") -> str:
    """sha256 over ``prefix`` and the structure's numbers, positions, cell and pbc bytes."""
    digest = hashlib.sha256(prefix)
    digest.update(struct.pack("<Q", len(atoms)))  # lengths first: no two inputs share a byte stream
    digest.update(np.ascontiguousarray(atoms.numbers, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(atoms.positions, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(atoms.cell.array, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(atoms.pbc, dtype=np.uint8).tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Embeddings of one backbone configuration, keyed by structure content.

    Parameters
    ----------
    identity : dict
        JSON-serialisable description of everything that changes the numbers (see
        :func:`hacknip_ase.engine.cache_identity`).
    shape : (n_depths, dim)
        Shape every entry must have.
    root : path, optional
        Cache root; default ``cache_dir()/features``.
    """

    def __init__(self, identity: dict, shape: tuple[int, int], root: str | os.PathLike | None = None) -> None:
        self.identity = {**identity, "cache_format": CACHE_FORMAT}
        text = json.dumps(self.identity, sort_keys=True)
        self.identity_sha256 = hashlib.sha256(text.encode()).hexdigest()
        self._prefix = bytes.fromhex(self.identity_sha256)
        self.shape = (int(shape[0]), int(shape[1]))
        self._nbytes = self.shape[0] * self.shape[1] * 4
        label = "-".join(str(identity.get(k, "")) for k in ("name", "model")).replace(os.sep, "_")
        self.root = Path(root) if root is not None else default_cache_root()
        self.folder = self.root / f"{label}-{self.identity_sha256[:16]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._made: set[str] = set()
        self.hits = self.misses = self.corrupt = self.writes = 0
        described = self.folder / "identity.json"
        if not described.exists():  # for humans cleaning up the cache
            atomic_write(described, (text + "\n").encode())

    def key(self, atoms: Atoms) -> str:
        return structure_digest(atoms, self._prefix)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.emb"

    def get(self, key: str) -> np.ndarray | None:
        """The cached (n_depths, dim) float32 embedding, or None (missing or corrupt)."""
        path = self.path(key)
        try:
            with open(path, "rb") as handle:
                blob = handle.read()
        except FileNotFoundError:
            self.misses += 1
            return None
        value = self._decode(blob)
        if value is None:
            self.corrupt += 1
            self.misses += 1
            log.warning("corrupt feature cache entry %s: deleted, will recompute", path)
            path.unlink(missing_ok=True)
            return None
        self.hits += 1
        return value

    def put(self, key: str, embedding: np.ndarray) -> None:
        """Store one (n_depths, dim) embedding atomically."""
        payload = np.ascontiguousarray(embedding, dtype="<f4")
        if payload.shape != self.shape:
            raise ValueError(f"embedding shape {payload.shape} does not match the cache's {self.shape}")
        data = payload.tobytes()
        header = _HEADER.pack(MAGIC, hashlib.sha256(data).digest(), *self.shape)
        path = self.path(key)
        if path.parent.name not in self._made:
            path.parent.mkdir(exist_ok=True)
            self._made.add(path.parent.name)
        atomic_write(path, header + data)
        self.writes += 1

    def _decode(self, blob: bytes) -> np.ndarray | None:
        if len(blob) != _HEADER.size + self._nbytes:
            return None
        magic, checksum, n_depths, dim = _HEADER.unpack_from(blob)
        data = blob[_HEADER.size:]
        if magic != MAGIC or (n_depths, dim) != self.shape or hashlib.sha256(data).digest() != checksum:
            return None
        return np.frombuffer(data, dtype="<f4").reshape(self.shape).astype(np.float32)

    def file_key(self, digest: str) -> str | None:
        """The structure key recorded for a structure file with content sha256 ``digest``."""
        try:
            key = self._file_index(digest).read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return key if len(key) == 64 else None

    def remember_file(self, digest: str, key: str) -> None:
        atomic_write(self._file_index(digest), key.encode())

    def _file_index(self, digest: str) -> Path:
        return self.folder / "files" / digest[:2] / f"{digest}.key"

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt, "writes": self.writes}


def _request_path(request: dict, root: str | os.PathLike | None) -> Path:
    text = json.dumps(request, sort_keys=True, default=str)
    name = hashlib.sha256(text.encode()).hexdigest()
    return (Path(root) if root is not None else default_cache_root()) / "backbones" / f"{name}.json"


def known_identity(request: dict, root: str | os.PathLike | None = None) -> dict | None:
    """The backbone identity recorded for ``request``, or None (never built through this cache)."""
    try:
        record = json.loads(_request_path(request, root).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record.get("identity") if record.get("request") == json.loads(json.dumps(request, default=str)) else None


def remember_identity(request: dict, identity: dict, root: str | os.PathLike | None = None) -> None:
    record = {"request": request, "identity": identity}
    atomic_write(_request_path(request, root), (json.dumps(record, sort_keys=True, default=str) + "\n").encode())


def forget_identity(request: dict, root: str | os.PathLike | None = None) -> None:
    _request_path(request, root).unlink(missing_ok=True)
