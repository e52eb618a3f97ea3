"""What ``featurize`` accepts, normalised: an iterable of ``(id, structure)`` pairs that knows its length.

Accepted: a path (read lazily by :mod:`hacknip_ase.readers`), a reader's
:class:`~hacknip_ase.readers.StructureSource`, one structure, or any iterable of structures or of
``(id, structure)`` pairs; ``ids`` renames the entries in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .errors import InvalidOptionError, StructureTypeError
from .readers import StructureSource, read_structures
from .structures import as_atoms


def as_source(structures, ids=None, format: str | None = None) -> Iterable[tuple[str, object]]:
    """Normalise the accepted inputs into an iterable of (id, structure) with a length if known."""
    if isinstance(structures, str | os.PathLike):
        source = read_structures(structures, format=format)
        return source if ids is None else Renamed(source, ids)
    if isinstance(structures, StructureSource):
        return structures if ids is None else Renamed(structures, ids)
    try:
        as_atoms(structures)
        structures = [structures]  # a single structure
    except StructureTypeError:
        if isinstance(structures, str | bytes) or not isinstance(structures, Iterable):
            raise
    return Pairs(structures, ids)


class Pairs:
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


class Renamed(Pairs):
    """A reader's entries under the given ids."""

    def __iter__(self):
        entries = self.items.entries() if isinstance(self.items, StructureSource) else self.items
        for name, (_, item) in zip(self.ids, entries, strict=True):
            yield name, item


def describe(source) -> dict | str:
    """What was read, for a features file's ``source`` record."""
    if isinstance(source, StructureSource):
        return {"format": source.format, "path": str(source.path)}
    if isinstance(source, Pairs) and isinstance(source.items, StructureSource):
        return describe(source.items)
    return "in-memory structures"


def unwrap(source) -> tuple[StructureSource | None, list | None, list | None]:
    """(reader, ids given for it, None) for a file source; (None, None, pairs) for structures in memory."""
    if isinstance(source, Renamed) and isinstance(source.items, StructureSource):
        return source.items, list(source.ids), None
    if isinstance(source, StructureSource):
        return source, None, None
    return None, None, list(source)
