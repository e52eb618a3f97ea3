"""What every structure reader shares: the source interface, on-demand CIF files, shards.

A :class:`StructureSource` yields ``(id, ase.Atoms)`` one at a time and knows its length; the
formats are in :mod:`hacknip_ase.readers` (and :mod:`hacknip_ase.table_reader`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from .errors import InputNotFoundError, InvalidOptionError, StructureParseError


@dataclass(frozen=True)
class Shard:
    """A contiguous run of a source's entries, ``[start, stop)`` in input order.

    ``offset`` is where entry ``start`` begins in the file, for formats that can only be read
    sequentially (extxyz, CSV): recorded by :meth:`StructureSource.shards`, so reading a shard
    does not read the file up to it. None where the format needs no position.
    """

    index: int
    start: int
    stop: int
    offset: int | None = None

    def __len__(self) -> int:
        return self.stop - self.start


def _validate_shard_size(size) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidOptionError(f"shard size must be an integer >= 1, got {size!r}")
    return size


class StructureFile:
    """A structure file read on demand: its content digest is known before it is parsed."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._bytes: bytes | None = None

    def digest(self) -> str:
        """sha256 of the file's bytes."""
        if self._bytes is None:
            self._bytes = self.path.read_bytes()
        return hashlib.sha256(self._bytes).hexdigest()

    def load(self) -> Atoms:
        """The parsed structure, or :class:`StructureParseError` naming the file."""
        return read_cif(self.path)

    def __repr__(self) -> str:
        return f"StructureFile({str(self.path)!r})"


class StructureSource:
    """An iterable of ``(id, Atoms)`` with a length, read lazily."""

    format: str = ""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputNotFoundError(f"no such file or folder: {self.path}")

    def entries(self) -> Iterator[tuple[str, Atoms | StructureFile | StructureParseError]]:
        """Every entry in order; one that cannot be parsed is yielded as its error."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[str, Atoms]]:
        for sid, item in self.entries():
            if isinstance(item, StructureParseError):
                raise item
            yield sid, item.load() if isinstance(item, StructureFile) else item

    def __len__(self) -> int:
        raise NotImplementedError

    def shards(self, size: int) -> list[Shard]:
        """Consecutive shards of ``size`` entries (the last one shorter), covering every entry."""
        size = _validate_shard_size(size)
        n = len(self)
        return [Shard(index, start, min(start + size, n)) for index, start in enumerate(range(0, n, size))]

    def shard_entries(self, shard: Shard) -> Iterator[tuple[str, Atoms | StructureFile | StructureParseError]]:
        """The entries of one shard, as :meth:`entries` yields them (formats override the skip)."""
        return itertools.islice(self.entries(), shard.start, shard.stop)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def read_cif(path: str | os.PathLike) -> Atoms:
    """First structure of a CIF file, or StructureParseError naming the file."""
    from ase.io import read

    try:
        with warnings.catch_warnings():  # ase warns about every odd-but-harmless CIF tag
            warnings.simplefilter("ignore")
            atoms = read(path, format="cif", index=0)
    except Exception as exc:  # ase raises many types (ValueError, KeyError, StopIteration, ...)
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else "not valid CIF syntax"
        raise StructureParseError(f"cannot parse CIF file {path}: {reason}") from exc
    if len(atoms) == 0:
        raise StructureParseError(f"cannot parse CIF file {path}: no atoms found")
    return atoms
