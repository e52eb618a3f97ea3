"""Featurization engine: all-depth mean-pooled embeddings for whole datasets, batched and cached.

Every structure goes through the backbone once (many per forward pass, through the NIP's own
batch collation); its (n_depths, dim) embedding is stored in a content-keyed cache
(:mod:`hacknip_ase.cache`), so a re-run, or a run that was killed halfway, only computes what is
missing. Inputs and outputs are streamed: memory grows with the batch, not with the dataset.

The portable output file is described in :mod:`hacknip_ase.featureset`. A run whose structures
are all cached never loads the model: the backbone's identity is recorded in the cache the first
time it is built (:func:`hacknip_ase.cache.known_identity`), and CIF files whose content is
already known are not parsed again.

``featurize(..., engine="ray")`` runs the same :class:`Engine` on a pool of Ray actors, shard by
shard, with the same output and cache entries (:mod:`hacknip_ase.distributed`).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backbones import DEFAULT_BACKBONE, get_backbone
from .cache import FeatureCache, forget_identity, known_identity, remember_identity
from .errors import HackNIPError, InvalidOptionError, InvalidStructureError, StructureParseError, StructureTypeError
from .featureset import FORMAT, FORMAT_VERSION, FeatureSet, FeatureWriter
from .provenance import package_versions
from .readers import StructureFile, StructureSource, read_structures
from .structures import as_atoms
from .weights import sha256_file

DEFAULT_BATCH_SIZE = 32
#: The NIP's own package, for the versions record and the backbone identity request.
_NIP_PACKAGES = {"chgnet": "chgnet", "sevennet": "sevenn", "orb": "orb-models", "mace": "mace-torch"}
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")

__all__ = ["DEFAULT_BATCH_SIZE", "Engine", "FeatureSet", "FeatureWriter", "cache_identity", "featurize",
           "featurize_to_file", "versions"]


def cache_identity(backbone) -> dict:
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
    backbone=DEFAULT_BACKBONE,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    cache_dir: str | os.PathLike | None | bool = None,
    progress: bool = True,
    ids: Iterable[str] | None = None,
    format: str | None = None,
    on_error: str = "raise",
    out: str | os.PathLike | None = None,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    shard_size: int | None = None,
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
    engine
        "local" (default): this process; "ray": a pool of Ray actors, each with its own loaded
        backbone (needs ``pip install hacknip-ase[ray]``; see :mod:`hacknip_ase.distributed`).
        The output and the cache entries are those of a local run; with ``out``, finished
        shards are recorded beside it and a re-run resumes from them.
    address, actors, gpus_per_actor, shard_size
        Ray only (see :class:`hacknip_ase.distributed.RayEngine`): the cluster to join (None:
        start a local Ray), the number of actors (default: one per CPU, or per
        ``gpus_per_actor`` GPUs), GPUs per actor (default 0) and structures per shard (a
        multiple of ``batch_size``, default 1024).

    Returns
    -------
    FeatureSet
        ``embeddings`` (n, n_depths, dim) float32, ``ids`` and ``metadata``.
    """
    ray_options = {"address": address, "actors": actors, "gpus_per_actor": gpus_per_actor, "shard_size": shard_size}
    if engine == "ray":
        from .distributed import RayEngine

        ray_engine = RayEngine(backbone, batch_size=batch_size, device=device, cache_dir=cache_dir, on_error=on_error,
                               **{k: v for k, v in ray_options.items() if v is not None}, **backbone_options)
        source = _as_source(structures, ids, format)
        if out is not None:
            return FeatureSet.load(ray_engine.run_to_file(source, out, progress=progress))
        return ray_engine.run(source, progress=progress)
    if engine != "local":
        raise InvalidOptionError(f"engine must be 'local' or 'ray', got {engine!r}")
    given = sorted(k for k, v in ray_options.items() if v is not None)
    if given:
        raise InvalidOptionError(f"{', '.join(given)} only apply with engine='ray'")
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


def featurize_to_file(structures, out, backbone=DEFAULT_BACKBONE, *,
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


@dataclass
class _Item:
    """One structure in the look-ahead window."""

    sid: str
    atoms: object  #: ase Atoms (None when its embedding came from the cache without a parse)
    key: str | None  #: cache key (None without a cache)
    embedding: np.ndarray | None = None


class Engine:
    """A backbone plus its cache; :meth:`run` streams ``(ids, embeddings)`` chunks in input order.

    Given a registry name, the backbone is built only when a structure misses the cache (its
    identity is recorded in the cache the first time); given a built backbone, it is used as is.
    """

    def __init__(self, backbone=DEFAULT_BACKBONE, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str = "cpu", cache_dir=None, on_error: str = "raise", **backbone_options) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidOptionError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if on_error not in ("raise", "skip"):
            raise InvalidOptionError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.batch_size = batch_size
        self.on_error = on_error
        self.device = str(device)
        self._backbone = None
        self._request = None
        if isinstance(backbone, str):
            self._build = lambda: get_backbone(backbone, device=device, **backbone_options)
            self._request = _identity_request(backbone, backbone_options, self.device)
            identity = None if cache_dir is False or self._request is None else known_identity(self._request, cache_dir)
            if identity is None:
                identity = cache_identity(self.backbone)
                if cache_dir is not False and self._request is not None:
                    remember_identity(self._request, identity, cache_dir)
        else:
            self._backbone = get_backbone(backbone, **backbone_options)
            self.device = str(self._backbone.device)
            identity = cache_identity(self._backbone)
        self.identity = identity
        self.shape = (int(identity["n_depths"]), int(identity["dim"]))
        self._cache_dir = cache_dir
        self.cache = None if cache_dir is False else FeatureCache(identity, self.shape, cache_dir)
        self.skipped: list[dict] = []
        self.computed = 0
        self.elapsed = 0.0

    @property
    def backbone(self):
        """The backbone, built on first use; it must have the identity the cache was keyed with."""
        if self._backbone is None:
            self._backbone = self._build()
            built = cache_identity(self._backbone)
            if getattr(self, "identity", built) != built:
                forget_identity(self._request, self._cache_dir)
                raise HackNIPError(
                    f"the {built['name']} {built['model']} backbone built here differs from the identity recorded "
                    f"in the feature cache (weights or package changed); the record was removed, run again")
        return self._backbone

    @property
    def loaded(self) -> bool:
        """Whether the model has been built (a fully cached run never builds it)."""
        return self._backbone is not None

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
        window: list[_Item] = []
        misses = 0
        entries = source.entries() if isinstance(source, StructureSource) else iter(source)
        with tqdm(total=total, unit="struct", desc=f"featurize {self.identity['name']} {self.identity['model']}",
                  disable=not progress, dynamic_ncols=True, smoothing=0.1) as bar:
            for sid, structure in entries:
                item = self._resolve(str(sid), structure)
                if item is None:  # rejected and skipped
                    bar.update(1)
                    continue
                window.append(item)
                misses += item.embedding is None
                if misses >= self.batch_size or len(window) >= window_limit:
                    yield self._flush(window, bar)
                    window, misses = [], 0
            if window:
                yield self._flush(window, bar)
        self.elapsed = time.perf_counter() - start

    def _resolve(self, sid: str, structure) -> _Item | None:
        """The window item of one input: a cache hit, a structure to compute, or None (skipped)."""
        digest = None
        try:
            if isinstance(structure, StructureParseError):
                raise structure
            if isinstance(structure, StructureFile):
                if self.cache is not None:
                    digest = structure.digest()
                    key = self.cache.file_key(digest)
                    embedding = self.cache.get(key) if key is not None else None
                    if embedding is not None:
                        return _Item(sid, None, key, embedding)
                structure = structure.load()
            atoms = as_atoms(structure)
        except (StructureParseError, StructureTypeError) as exc:
            return self._reject(sid, exc)
        if self.cache is None:
            return _Item(sid, atoms, None)
        key = self.cache.key(atoms)
        if digest is not None:
            self.cache.remember_file(digest, key)
        return _Item(sid, atoms, key, self.cache.get(key))

    def _flush(self, window: list[_Item], bar) -> tuple[list[str], np.ndarray]:
        pending: dict = {}  # key (or position without cache) -> items; duplicates computed once
        for position, item in enumerate(window):
            if item.embedding is None:
                pending.setdefault(item.key if item.key is not None else position, []).append(item)
        if pending:
            groups = list(pending.values())
            results = self._compute([group[0] for group in groups])
            for group, embedding in zip(groups, results, strict=True):
                if embedding is not None and self.cache is not None:
                    self.cache.put(group[0].key, embedding)
                for item in group:
                    item.embedding = embedding
        done = [item for item in window if item.embedding is not None]
        bar.update(len(window))
        if self.cache is not None:
            bar.set_postfix(cached=self.cache.hits, refresh=False)
        embeddings = np.stack([item.embedding for item in done]) if done else np.zeros((0, *self.shape), np.float32)
        return [item.sid for item in done], embeddings

    def _compute(self, items: list[_Item]) -> list[np.ndarray | None]:
        """Embeddings of a batch in one forward pass; one by one only to find a bad structure."""
        try:
            embeddings = list(self.backbone.forward([item.atoms for item in items]).embeddings())
        except InvalidStructureError as exc:
            if len(items) == 1:
                return [self._reject(items[0].sid, exc)]
            embeddings = []
            for item in items:
                try:
                    embeddings.append(self.backbone.forward([item.atoms]).embeddings()[0])
                except InvalidStructureError as one:
                    embeddings.append(self._reject(item.sid, one))
        self.computed += sum(e is not None for e in embeddings)
        return embeddings

    def _reject(self, sid: str, exc: InvalidStructureError) -> None:
        if self.on_error == "raise":
            raise type(exc)(f"structure {sid!r}: {exc}") from exc
        self.skipped.append({"id": sid, "error": f"{type(exc).__name__}: {exc}"})
        return None

    def metadata(self, source=None) -> dict:
        backbone = {k: v for k, v in self.identity.items() if k not in ("expand_supercell", "hacknip_ase")}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": backbone,
            "options": {"expand_supercell": bool(self.identity.get("expand_supercell")), "batch_size": self.batch_size,
                        "device": self.device, "on_error": self.on_error},
            "versions": versions(self.identity["name"]),
            "cache_identity": None if self.cache is None else self.cache.identity_sha256,
            "source": None if source is None else _describe(source),
            "skipped": list(self.skipped),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }


def _identity_request(name: str, options: dict, device: str) -> dict | None:
    """What determines the identity of the backbone ``name`` builds (None: cannot tell without building)."""
    from . import __version__

    if name not in _NIP_PACKAGES or not _DEVICE.match(device):
        return None  # let the build raise its typed error
    request = {"name": name, "options": {}, "package": package_versions([_NIP_PACKAGES[name]]),
               "hacknip_ase": __version__}
    for key, value in sorted(options.items()):
        if key == "weights" and value is not None:
            path = Path(value)
            if not path.is_file():
                return None
            value = {"sha256": sha256_file(path)}  # a user's file: identified by content, not name
        elif not isinstance(value, str | int | float | bool | type(None)):
            return None
        request["options"][key] = value
    return request


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
    except StructureTypeError:
        if isinstance(structures, str | bytes) or not isinstance(structures, Iterable):
            raise
    return _Pairs(structures, ids)


class _Pairs:
    """Structures (or (id, structure) pairs) with default or given ids."""

    def __init__(self, items, ids) -> None:
        self.items, self.ids = items, None if ids is None else list(ids)
        if self.ids is not None and hasattr(items, "__len__") and len(self.ids) != len(items):
            raise InvalidOptionError(f"got {len(self.ids)} ids for {len(items)} structures")

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
        entries = self.items.entries() if isinstance(self.items, StructureSource) else self.items
        for name, (_, item) in zip(self.ids, entries, strict=True):
            yield name, item


def _describe(source) -> dict | str:
    if isinstance(source, StructureSource):
        return {"format": source.format, "path": str(source.path)}
    if isinstance(source, _Pairs) and isinstance(source.items, StructureSource):
        return _describe(source.items)
    return "in-memory structures"
