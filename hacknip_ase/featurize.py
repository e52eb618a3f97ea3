"""Featurization engine: all-depth mean-pooled embeddings for whole datasets, batched and cached.

Every structure goes through the backbone once (many per forward pass, through the NIP's own
batch collation); its (n_depths, dim) embedding is stored in a content-keyed cache
(:mod:`hacknip_ase.cache`), so a re-run, or a run that was killed halfway, only computes what is
missing. Inputs and outputs are streamed: memory grows with the batch, not with the dataset.

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
    ``on_error="skip"``) and ``created`` (UTC ISO time).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backbones import DEFAULT_BACKBONE, Backbone, get_backbone
from .cache import FeatureCache
from .errors import InvalidStructureError
from .readers import StructureSource, read_structures
from .provenance import package_versions
from .structures import as_atoms

FORMAT = "hacknip-features"
FORMAT_VERSION = 1
DEFAULT_BATCH_SIZE = 32
#: The NIP's own package, for the versions record.
_NIP_PACKAGES = {"chgnet": "chgnet", "sevennet": "sevenn", "orb": "orb-models", "mace": "mace-torch"}


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
        with np.load(path, allow_pickle=False) as archive:
            metadata = json.loads(str(archive["metadata"][()]))
            if metadata.get("format") != FORMAT:
                raise ValueError(f"{path} is not a {FORMAT} file")
            return cls(ids=archive["ids"].tolist(), embeddings=archive["embeddings"], metadata=metadata)


class FeatureWriter:
    """Streams embeddings to the portable format: batches go to a spill file, then one archive.

    The archive is assembled in a temporary file and renamed into place on success, so an
    interrupted run never leaves a half-written output.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int]) -> None:
        self.path = Path(path)
        if self.path.suffix != ".npz":
            self.path = self.path.with_name(self.path.name + ".npz")  # np.savez's convention
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.shape = tuple(int(s) for s in shape)
        self.ids: list[str] = []
        self.metadata: dict = {}
        self._spill = tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".spill", delete=False)

    def write(self, ids: list[str], embeddings: np.ndarray) -> None:
        embeddings = np.ascontiguousarray(embeddings, dtype="<f4")
        if embeddings.shape[1:] != self.shape or len(ids) != len(embeddings):
            raise ValueError(f"expected {len(ids)} embeddings of shape {self.shape}, got {embeddings.shape}")
        self._spill.write(embeddings.tobytes())
        self.ids.extend(ids)

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._spill.close()
        try:
            if exc_type is None:
                self._assemble()
        finally:
            Path(self._spill.name).unlink(missing_ok=True)

    def _assemble(self) -> None:
        header = {"descr": "<f4", "fortran_order": False, "shape": (len(self.ids), *self.shape)}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                with archive.open("embeddings.npy", "w", force_zip64=True) as member, open(self._spill.name, "rb") as spill:
                    np.lib.format.write_array_header_1_0(member, header)
                    shutil.copyfileobj(spill, member, 1 << 22)
                with archive.open("ids.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.array(self.ids, dtype=str).reshape(-1), allow_pickle=False)
                with archive.open("metadata.npy", "w") as member:
                    np.lib.format.write_array(member, np.array(json.dumps(self.metadata)), allow_pickle=False)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def cache_identity(backbone: Backbone) -> dict:
    """Everything that changes a backbone's embeddings, for the cache key."""
    from . import __version__

    return {
        **backbone.info.as_dict(),
        "expand_supercell": bool(backbone.expand_supercell),
        "hacknip_ase": __version__,  # adapters may change what a depth means between releases
    }


def versions(backbone_name: str | None = None) -> dict:
    packages = ["hacknip-ase", "numpy", "torch", "ase", "pymatgen"]
    if backbone_name in _NIP_PACKAGES:
        packages.append(_NIP_PACKAGES[backbone_name])
    return package_versions(packages)


def featurize(
    structures,
    backbone: str | Backbone = DEFAULT_BACKBONE,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    cache_dir: str | os.PathLike | None | bool = None,
    progress: bool = True,
    ids: Iterable[str] | None = None,
    format: str | None = None,
    on_error: str = "raise",
    out: str | os.PathLike | None = None,
    **backbone_options,
) -> FeatureSet:
    """Mean-pooled all-depth embeddings of many structures, shape (n, n_depths, dim).

    Parameters
    ----------
    structures
        ase Atoms / pymatgen Structures (a list or any iterable, also of ``(id, structure)``
        pairs), or a path: a folder of CIFs, an extxyz file, an ase ``.db`` or a Matbench
        ``.json.gz`` (see :mod:`hacknip_ase.readers`; ``format`` overrides the guess).
    backbone
        Registry name or a built :class:`~hacknip_ase.backbones.Backbone`; ``device`` and
        ``backbone_options`` (``model=``, ``weights=``, ``expand_supercell=``) build it.
    batch_size
        Structures per forward pass. Memory grows with it, not with the dataset.
    cache_dir
        Root of the embedding cache; None: ``cache_dir()/features``; False: no cache.
    ids
        Ids for the structures (default: the reader's ids, else "0", "1", ...).
    on_error
        "raise" (default) or "skip": leave out structures the backbone rejects and list them
        in ``metadata["skipped"]``.
    out
        Also stream the result to this ``.npz`` file (the portable format).

    Returns
    -------
    FeatureSet
        ``embeddings`` (n, n_depths, dim) float32, ``ids`` and ``metadata``.
    """
    if out is not None:
        run = featurize_to_file(structures, out, backbone, batch_size=batch_size, device=device,
                                cache_dir=cache_dir, progress=progress, ids=ids, format=format,
                                on_error=on_error, **backbone_options)
        return FeatureSet.load(run)
    engine = Engine(backbone, batch_size=batch_size, device=device, cache_dir=cache_dir,
                    on_error=on_error, **backbone_options)
    source = _as_source(structures, ids, format)
    out_ids, chunks = [], []
    for chunk_ids, chunk in engine.run(source, progress=progress):
        out_ids.extend(chunk_ids)
        chunks.append(chunk)
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, *engine.shape), dtype=np.float32)
    return FeatureSet(ids=out_ids, embeddings=embeddings, metadata=engine.metadata(source))


def featurize_to_file(structures, out, backbone: str | Backbone = DEFAULT_BACKBONE, *,
                      batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu",
                      cache_dir=None, progress: bool = True, ids=None, format: str | None = None,
                      on_error: str = "raise", **backbone_options) -> Path:
    """Like :func:`featurize`, streaming to ``out`` (portable ``.npz``) without holding the result."""
    engine = Engine(backbone, batch_size=batch_size, device=device, cache_dir=cache_dir,
                    on_error=on_error, **backbone_options)
    source = _as_source(structures, ids, format)
    with FeatureWriter(out, engine.shape) as writer:
        for chunk_ids, chunk in engine.run(source, progress=progress):
            writer.write(chunk_ids, chunk)
        writer.metadata = engine.metadata(source)
    return writer.path


class Engine:
    """A backbone plus its cache; :meth:`run` streams ``(ids, embeddings)`` chunks in input order."""

    def __init__(self, backbone: str | Backbone = DEFAULT_BACKBONE, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str = "cpu", cache_dir=None, on_error: str = "raise", **backbone_options) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if isinstance(backbone, Backbone):
            self.backbone = get_backbone(backbone, **backbone_options)
        else:
            self.backbone = get_backbone(backbone, device=device, **backbone_options)
        info = self.backbone.info
        self.shape = (info.n_depths, info.dim)
        self.batch_size = batch_size
        self.on_error = on_error
        self.cache = None if cache_dir is False else FeatureCache(cache_identity(self.backbone), self.shape, cache_dir)
        self.skipped: list[dict] = []
        self.computed = 0
        self.elapsed = 0.0

    def run(self, source: Iterable[tuple[str, object]], *, progress: bool = False) -> Iterator[tuple[list[str], np.ndarray]]:
        from tqdm.auto import tqdm

        try:
            total = len(source)
        except TypeError:  # a generator: no ETA, only the rate
            total = None
        start = time.perf_counter()
        # Cache hits do not need the model: look ahead up to a few batches so that every
        # forward pass gets a full batch of misses, while keeping the output in input order.
        window_limit = 4 * self.batch_size
        window: list[list] = []  # [id, atoms, key, embedding or None]
        misses = 0
        info = self.backbone.info
        with tqdm(total=total, unit="struct", desc=f"featurize {info.name} {info.model}", disable=not progress,
                  dynamic_ncols=True, smoothing=0.1) as bar:
            for sid, structure in source:
                atoms = as_atoms(structure)
                key = self.cache.key(atoms) if self.cache is not None else None
                embedding = self.cache.get(key) if self.cache is not None else None
                window.append([sid, atoms, key, embedding])
                misses += embedding is None
                if misses >= self.batch_size or len(window) >= window_limit:
                    yield self._flush(window, bar)
                    window, misses = [], 0
            if window:
                yield self._flush(window, bar)
        self.elapsed = time.perf_counter() - start

    def _flush(self, window: list[list], bar) -> tuple[list[str], np.ndarray]:
        pending: dict = {}  # key (or position without cache) -> items; duplicates computed once
        for position, item in enumerate(window):
            if item[3] is None:
                pending.setdefault(item[2] if item[2] is not None else position, []).append(item)
        if pending:
            groups = list(pending.values())
            results = self._compute([group[0] for group in groups])
            for group, embedding in zip(groups, results, strict=True):
                if embedding is not None and self.cache is not None:
                    self.cache.put(group[0][2], embedding)
                for item in group:
                    item[3] = embedding
        done = [item for item in window if item[3] is not None]
        bar.update(len(window))
        if self.cache is not None:
            bar.set_postfix(cached=self.cache.hits, refresh=False)
        embeddings = np.stack([item[3] for item in done]) if done else np.zeros((0, *self.shape), np.float32)
        return [item[0] for item in done], embeddings

    def _compute(self, items: list[list]) -> list[np.ndarray | None]:
        """Embeddings of a batch in one forward pass; one by one only to find a bad structure."""
        try:
            embeddings = list(self.backbone.forward([item[1] for item in items]).embeddings())
        except InvalidStructureError:
            if len(items) == 1:
                return [self._reject(items[0])]
            embeddings = []
            for item in items:
                try:
                    embeddings.append(self.backbone.forward([item[1]]).embeddings()[0])
                except InvalidStructureError:
                    embeddings.append(self._reject(item))
        self.computed += sum(e is not None for e in embeddings)
        return embeddings

    def _reject(self, item: list) -> None:
        import sys

        exc = sys.exc_info()[1]
        if self.on_error == "raise":
            raise type(exc)(f"structure {item[0]!r}: {exc}") from exc
        self.skipped.append({"id": item[0], "error": f"{type(exc).__name__}: {exc}"})
        return None

    def metadata(self, source=None) -> dict:
        info = self.backbone.info
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": info.as_dict(),
            "options": {"expand_supercell": bool(self.backbone.expand_supercell), "batch_size": self.batch_size,
                        "device": str(self.backbone.device), "on_error": self.on_error},
            "versions": versions(info.name),
            "cache_identity": None if self.cache is None else self.cache.identity_sha256,
            "source": None if source is None else _describe(source),
            "skipped": list(self.skipped),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }


def _as_source(structures, ids, format) -> Iterable[tuple[str, object]]:
    """Normalise the accepted inputs into an iterable of (id, structure) with a length if known."""
    if isinstance(structures, str | os.PathLike):
        source = read_structures(structures, format=format)
        return source if ids is None else _Renamed(source, ids)
    if isinstance(structures, StructureSource):
        return structures if ids is None else _Renamed(structures, ids)
    try:
        as_atoms(structures)
        structures = [structures]  # a single structure
    except TypeError:
        pass
    return _Pairs(structures, ids)


class _Pairs:
    """Structures (or (id, structure) pairs) with default or given ids."""

    def __init__(self, items, ids) -> None:
        self.items, self.ids = items, None if ids is None else list(ids)
        if self.ids is not None and hasattr(items, "__len__") and len(self.ids) != len(items):
            raise ValueError(f"got {len(self.ids)} ids for {len(items)} structures")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        for index, item in enumerate(self.items):
            sid = str(index)
            if isinstance(item, tuple) and len(item) == 2:
                sid, item = str(item[0]), item[1]
            yield (self.ids[index] if self.ids is not None else sid), item


class _Renamed(_Pairs):
    def __iter__(self):
        for name, (_, item) in zip(self.ids, self.items, strict=True):
            yield name, item


def _describe(source) -> dict | str:
    if isinstance(source, StructureSource):
        return {"format": source.format, "path": str(source.path)}
    if isinstance(source, _Pairs) and isinstance(source.items, StructureSource):
        return _describe(source.items)
    return "in-memory structures"
