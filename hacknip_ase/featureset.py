"""The portable features file: embeddings of a dataset with their ids and provenance.

Portable file format (``.npz``, written by :meth:`FeatureSet.save` and ``hacknip featurize``)
--------------------------------------------------------------------------------------------
An uncompressed numpy ``.npz`` archive, readable with ``np.load(path, allow_pickle=False)``:

``embeddings``
    float32, shape (n, n_depths, dim): mean-pooled per-atom features after each depth
    (depth 0 = the backbone's embedding layer, depth k = after message-passing layer k).
``ids``
    unicode strings, shape (n,): structure ids in input order (file names, Matbench ids, ...).
``metadata``
    a 0-d unicode array holding one JSON object:
    ``format`` ("hacknip-features"), ``format_version`` (1), ``backbone`` (name, model,
    weights_sha256, n_depths, dim, cutoff, elements, features), ``options`` (expand_supercell,
    batch_size, device, on_error), ``versions`` (python, hacknip-ase, numpy, torch, ase,
    pymatgen and the NIP package), ``cache_identity`` (sha256 of the cache identity, null if
    no cache), ``source`` (what was read), ``skipped`` (list of {id, error} when
    ``on_error="skip"``) and ``created`` (UTC ISO time). A run of the Ray engine adds
    ``engine`` (name "ray", the ray version, actors, shard_size, gpus_per_actor); the rest is
    as for a local run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_output
from .errors import FeatureFileError

FORMAT = "hacknip-features"
FORMAT_VERSION = 1


@dataclass
class FeatureSet:
    """Embeddings of a dataset with their ids and the identity of what produced them."""

    ids: list[str]
    embeddings: np.ndarray  #: (n, n_depths, dim) float32
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def backbone(self) -> dict:
        return self.metadata.get("backbone", {})

    def save(self, path: str | os.PathLike) -> Path:
        """Write the portable ``.npz`` format (atomically)."""
        with FeatureWriter(path, self.embeddings.shape[1:]) as writer:
            writer.write(self.ids, self.embeddings)
            writer.metadata = self.metadata
        return writer.path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureSet:
        """Read a features file; anything else raises :class:`FeatureFileError` naming the file."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                metadata = json.loads(str(archive["metadata"][()]))
                if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
                    raise FeatureFileError(f"{path} is not a {FORMAT} file")
                return cls(ids=archive["ids"].tolist(), embeddings=archive["embeddings"], metadata=metadata)
        except FeatureFileError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise FeatureFileError(f"{path} is not a readable {FORMAT} file: {type(exc).__name__}: {exc}") from exc


class FeatureWriter:
    """Streams embeddings to the portable format: batches go to a spill file, then one archive.

    The spill file has no name (it is unlinked as soon as it is made), so a killed run leaves
    nothing behind; the archive is assembled in a temporary file and renamed into place on
    success, so an interrupted run never leaves a half-written output.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int]) -> None:
        self.path = Path(path)
        if self.path.suffix != ".npz":
            self.path = self.path.with_name(self.path.name + ".npz")  # np.savez's convention
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.shape = tuple(int(s) for s in shape)
        self.ids: list[str] = []
        self.metadata: dict = {}
        self._spill = tempfile.TemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".spill")

    def write(self, ids: list[str], embeddings: np.ndarray) -> None:
        embeddings = np.ascontiguousarray(embeddings, dtype="<f4")
        if embeddings.shape[1:] != self.shape or len(ids) != len(embeddings):
            raise ValueError(f"expected {len(ids)} embeddings of shape {self.shape}, got {embeddings.shape}")
        self._spill.write(embeddings.tobytes())
        self.ids.extend(ids)

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._assemble()
        finally:
            self._spill.close()

    def _assemble(self) -> None:
        header = {"descr": "<f4", "fortran_order": False, "shape": (len(self.ids), *self.shape)}
        self._spill.flush()
        self._spill.seek(0)
        with atomic_output(self.path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("embeddings.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                shutil.copyfileobj(self._spill, member, 1 << 22)
            with archive.open("ids.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.array(self.ids, dtype=str).reshape(-1), allow_pickle=False)
            with archive.open("metadata.npy", "w") as member:
                np.lib.format.write_array(member, np.array(json.dumps(self.metadata)), allow_pickle=False)
