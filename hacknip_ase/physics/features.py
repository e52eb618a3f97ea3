"""Physics descriptors of many structures: one cached, resumable row per structure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from ..errors import HackNIPError, InvalidOptionError, InvalidStructureError
from .pipeline import compute_physics, plain_atoms
from .records import (
    COLUMN_UNITS,
    PHYSICS_COLUMNS,
    PHYSICS_FORMAT,
    PhysicsResult,
    PhysicsSettings,
    count_reasons,
    physics_identity,
    physics_root,
)
from .references import elemental_references
from .simulator import Runner


def physics_features(structures, backbone="chgnet", *, settings: PhysicsSettings | dict | None = None,
                     cache_dir: str | os.PathLike | None | bool = None, progress: bool = True,
                     on_error: str = "skip", ids: Sequence[str] | None = None,
                     batch_size: int = 16) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """Physics descriptors of many structures, one cached row each.

    Parameters
    ----------
    structures : sequence of ase Atoms or pymatgen structures
    backbone : str, Backbone or simulator
        Registry name, built backbone, or any object with ``forward(atoms_list, forces=bool)``
        (a cache then needs its ``identity`` attribute, a JSON-serialisable dict).
    settings : PhysicsSettings or dict, optional
        Method settings (defaults: :class:`PhysicsSettings`).
    cache_dir : path, None or False
        Root of the cache (entries under ``<root>/physics``, elemental references under
        ``<root>/physics/references``); None: ``cache_dir()/physics``; False: no cache.
    progress : bool
        tqdm progress bar (structures/s).
    on_error : "skip" or "raise"
        "skip" (default): a structure the backbone rejects gets a row of NaN with the reason
        "rejected by the backbone" (rows always align with ``structures``); "raise": the first
        one raises its typed error.
    ids : sequence of str, optional
        Row ids for the metadata (default "0", "1", ...).
    batch_size : int
        Structures whose copies share forward passes (each one is cached when its chunk is done,
        so a killed run resumes after the last finished chunk).

    Returns
    -------
    values : ndarray (n, len(PHYSICS_COLUMNS)) float
        NaN where a quantity could not be computed.
    columns : tuple of str
        :data:`PHYSICS_COLUMNS`; units in :data:`COLUMN_UNITS`.
    metadata : dict
        ``units``, ``settings``, ``backbone`` (identity), ``physics_format``, ``reasons``
        ({id: {column: reason}} for every NaN), ``reason_counts`` ({column: {reason: count}}),
        ``references`` (elemental reference records used), ``cache`` (hits/misses/writes),
        ``computed`` (structures computed here) and ``cpu_seconds`` (process time per stage:
        base, eos, elastic, phonon, relax, references).
    """
    from tqdm.auto import tqdm

    from ..backbones import get_backbone
    from ..cache import FeatureCache

    if on_error not in ("raise", "skip"):
        raise InvalidOptionError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidOptionError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(settings, dict):
        settings = PhysicsSettings(**settings)
    settings = settings or PhysicsSettings()
    source = get_backbone(backbone) if isinstance(backbone, str) else backbone
    if not callable(getattr(source, "forward", None)):
        raise InvalidOptionError(f"backbone must be a registry name or have forward(), got {type(source).__name__}")
    structures = [plain_atoms(s) for s in structures]
    ids = [str(i) for i in range(len(structures))] if ids is None else [str(i) for i in ids]
    if len(ids) != len(structures):
        raise InvalidOptionError(f"got {len(ids)} ids for {len(structures)} structures")
    identity = physics_identity(source, settings)
    root = None
    if cache_dir is not False:
        if identity is None:
            raise InvalidOptionError(f"{type(source).__name__} has no identity to key a cache with; pass cache_dir=False")
        root = physics_root(cache_dir)
    cache = None if root is None else FeatureCache(identity, (2, len(PHYSICS_COLUMNS)), root)
    references = elemental_references(source, settings, cache_dir) if "formation" in settings.quantities else None
    runner = Runner(source, settings.max_batch_atoms, settings.max_force_batch_atoms)

    values = np.full((len(structures), len(PHYSICS_COLUMNS)), np.nan)
    reasons: list[list[str]] = [[] for _ in structures]
    computed = 0
    name = identity.get("name", type(source).__name__) if identity else type(source).__name__
    with tqdm(total=len(structures), unit="struct", desc=f"physics {name}", disable=not progress,
              dynamic_ncols=True, smoothing=0.1) as bar:
        for start in range(0, len(structures), batch_size):
            chunk = list(range(start, min(start + batch_size, len(structures))))
            keys = {i: cache.key(structures[i]) for i in chunk} if cache is not None else {}
            todo = []
            for i in chunk:
                entry = cache.get(keys[i]) if cache is not None else None
                if entry is None:
                    todo.append(i)
                else:
                    result = PhysicsResult.decode(entry)
                    values[i], reasons[i] = result.values, result.reasons
            if todo:
                results = compute_physics([structures[i] for i in todo], source, settings, references, runner)
                for i, result in zip(todo, results, strict=True):
                    if result.reasons[0] == "rejected by the backbone":
                        if on_error == "raise":
                            _raise_rejection(source, structures[i], ids[i])
                    elif cache is not None:  # a rejection is not cached: the backbone may learn the element
                        cache.put(keys[i], result.encode())
                    values[i], reasons[i] = result.values, result.reasons
                computed += len(todo)
            bar.update(len(chunk))
            if cache is not None:
                bar.set_postfix(cached=cache.hits, refresh=False)

    if references is not None:
        runner.cpu_seconds["references"] = references.cpu_seconds
    by_row = {}
    for sid, row in zip(ids, reasons, strict=True):
        marked = {c: r for c, r in zip(PHYSICS_COLUMNS, row, strict=True) if r}
        if marked:
            by_row[sid] = marked
    counts = count_reasons(by_row.values())
    used = sorted({chemical_symbols[z] for s in structures for z in s.numbers})
    metadata = {
        "physics_format": PHYSICS_FORMAT,
        "units": dict(COLUMN_UNITS),
        "settings": asdict(settings),
        "backbone": identity,
        "reasons": by_row,
        "reason_counts": counts,
        "references": {} if references is None else {s: references.records[s] for s in used if s in references.records},
        "cache": None if cache is None else {**cache.stats(), "folder": str(cache.folder)},
        "computed": computed,
        "cpu_seconds": dict(runner.cpu_seconds),
    }
    return values, PHYSICS_COLUMNS, metadata


def _raise_rejection(source, atoms: Atoms, sid: str) -> None:
    """Re-run the base pass of a rejected structure so its own typed error propagates, naming the structure."""
    try:
        source.forward([atoms], forces=False)
    except InvalidStructureError as exc:
        raise type(exc)(f"structure {sid!r}: {exc}") from exc
    raise HackNIPError(f"structure {sid!r}: rejected by the backbone in a strained or displaced copy")
