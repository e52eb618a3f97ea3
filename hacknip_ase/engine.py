"""The featurization engine: a backbone plus its cache, streaming ``(ids, embeddings)`` chunks in input order.

Every structure goes through the backbone once (many per forward pass, through the NIP's own
batch collation); its (n_depths, dim) embedding is stored in a content-keyed cache
(:mod:`hacknip_ase.cache`), so a re-run, or a run that was killed halfway, only computes what is
missing. A run whose structures are all cached never loads the model: the backbone's identity is
recorded in the cache the first time it is built (:func:`hacknip_ase.cache.known_identity`), and
CIF files whose content is already known are not parsed again.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backbones import DEFAULT_BACKBONE, get_backbone
from .cache import FeatureCache, forget_identity, known_identity, remember_identity
from .errors import HackNIPError, InvalidOptionError, InvalidStructureError, StructureParseError, StructureTypeError
from .featureset import FORMAT, FORMAT_VERSION
from .files import sha256_file
from .inputs import describe
from .provenance import NIP_PACKAGES, feature_versions, package_versions
from .readers import StructureFile, StructureSource
from .structures import as_atoms

DEFAULT_BATCH_SIZE = 32
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")

__all__ = ["DEFAULT_BATCH_SIZE", "Engine", "cache_identity", "cache_settings"]


def cache_identity(backbone) -> dict:
    """Everything that changes a backbone's embeddings, for the cache key."""
    from . import __version__

    return {
        **backbone.info.as_dict(),
        "expand_supercell": bool(backbone.expand_supercell),
        "hacknip_ase": __version__,  # adapters may change what a depth means between releases
    }


def cache_settings(cache: bool, cache_dir) -> tuple[bool, str | os.PathLike | None]:
    """(whether to use the cache, its root or None for the default) from the two parameters.

    ``cache_dir=False`` is taken as ``cache=False``: callers written before ``cache`` existed pass it.
    """
    if cache_dir is False:
        return False, None
    if not isinstance(cache, bool):
        raise InvalidOptionError(f"cache must be True or False, got {cache!r}")
    return cache, cache_dir


@dataclass
class _Item:
    """One structure in the look-ahead window."""

    sid: str
    atoms: object  #: ase Atoms (None when its embedding came from the cache without a parse)
    key: str | None  #: cache key (None without a cache)
    embedding: np.ndarray | None = None


@dataclass
class _Window:
    """The look-ahead window: structures waiting for one forward pass, in input order.

    Cache hits do not need the model: the window looks ahead up to ``limit`` structures so that
    every forward pass gets a full batch of misses, while the output keeps the input order.
    """

    batch_size: int
    limit: int
    items: list = field(default_factory=list)
    misses: int = 0

    def add(self, item) -> bool:
        """Add ``item``; True when the window should be flushed (a batch of misses, or full)."""
        self.items.append(item)
        self.misses += item.embedding is None
        return self.misses >= self.batch_size or len(self.items) >= self.limit


class Engine:
    """A backbone plus its cache; :meth:`run` streams ``(ids, embeddings)`` chunks in input order.

    Given a registry name, the backbone is built only when a structure misses the cache (its
    identity is recorded in the cache the first time); given a built backbone, it is used as is.
    """

    def __init__(self, backbone=DEFAULT_BACKBONE, *, batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu",
                 cache: bool = True, cache_dir=None, on_error: str = "raise", **backbone_options) -> None:
        cache, cache_dir = cache_settings(cache, cache_dir)
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
            self._request = _identity_request(backbone, backbone_options, self.device) if cache else None
            identity = None if self._request is None else known_identity(self._request, cache_dir)
            if identity is None:
                identity = cache_identity(self.backbone)
                if self._request is not None:
                    remember_identity(self._request, identity, cache_dir)
        else:
            self._backbone = get_backbone(backbone, **backbone_options)
            self.device = str(self._backbone.device)
            identity = cache_identity(self._backbone)
        self.identity = identity
        self.shape = (int(identity["n_depths"]), int(identity["dim"]))
        self._cache_dir = cache_dir
        self.cache = FeatureCache(identity, self.shape, cache_dir) if cache else None
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
        window = _Window(self.batch_size, limit=4 * self.batch_size)
        entries = source.entries() if isinstance(source, StructureSource) else iter(source)
        with tqdm(total=total, unit="struct", desc=f"featurize {self.identity['name']} {self.identity['model']}",
                  disable=not progress, dynamic_ncols=True, smoothing=0.1) as bar:
            for sid, structure in entries:
                item = self._resolve(str(sid), structure)
                if item is None:  # rejected and skipped
                    bar.update(1)
                    continue
                if window.add(item):
                    yield self._flush(window.items, bar)
                    window = _Window(self.batch_size, limit=window.limit)
            if window.items:
                yield self._flush(window.items, bar)
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
            "versions": feature_versions(self.identity["name"]),
            "cache_identity": None if self.cache is None else self.cache.identity_sha256,
            "source": None if source is None else describe(source),
            "skipped": list(self.skipped),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }


def _identity_request(name: str, options: dict, device: str) -> dict | None:
    """What determines the identity of the backbone ``name`` builds (None: cannot tell without building)."""
    from . import __version__

    if name not in NIP_PACKAGES or not _DEVICE.match(device):
        return None  # let the build raise its typed error
    request = {"name": name, "options": {}, "package": package_versions([NIP_PACKAGES[name]]),
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
