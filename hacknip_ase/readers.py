"""Lazy structure readers: each source yields ``(id, ase.Atoms)`` one at a time and knows its length.

Formats (``read_structures`` picks one from the path unless ``format`` is given):

- ``cif``: a folder of ``*.cif`` files (sorted by name, not recursive), or one ``.cif`` file;
  id = file name without ``.cif``.
- ``extxyz``: an extended-XYZ file (``.xyz``/``.extxyz``); id = the frame's ``id`` or ``name``
  info key, else ``<file stem>-<frame index>``. Frames are parsed one at a time.
- ``db``: an ase database (``.db``); id = the row's ``id``/``name`` key-value pair, else the row id.
- ``matbench``: a Matbench ``.json``/``.json.gz`` file (pandas "split" orient, pymatgen structure
  dicts); id = ``mb-<task>-<row>`` as in Matbench's official splits (``mb-jdft2d-001``,
  ``mb-log-gvrh-00001``). The file's JSON is read once; structures are built one at a time.
- ``table``: a Parquet (``.parquet``/``.pq``, needs pyarrow) or CSV (``.csv``) table, one row per
  structure (see :class:`TableFile`): column ``structure`` holds JSON of a pymatgen
  Structure/Molecule dict, JSON of an ase Atoms (``ase.io.jsonio.encode``) or CIF text; column
  ``id`` (optional) the id, else ``<file stem>-<row>``. Rows are read a batch at a time.

Iterating a source raises :class:`~hacknip_ase.errors.StructureParseError` (naming the file,
frame or row) at the first entry that cannot be parsed. :meth:`StructureSource.entries` instead
yields every entry, an unparsable one as its error, so that a caller can skip it and go on
(``featurize(..., on_error="skip")``). CIF entries come as :class:`StructureFile` (parsed on
demand), so a caller that already knows a file's content can skip the parse.

Every source can also be read in shards (contiguous runs of entries, for the distributed engine):
:meth:`StructureSource.shards` plans them in one pass and :meth:`StructureSource.shard_entries`
reads one without reading the entries before it (CIF file lists, ase.db offsets, Parquet row
groups, and file positions recorded by the plan for extxyz and CSV).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

from .choices import STRUCTURE_FORMATS
from .errors import InputNotFoundError, StructureParseError, UnknownFormatError
from .reader_base import Shard, StructureFile, StructureSource, _validate_shard_size, read_cif
from .table_reader import TableFile, parse_structure_text

__all__ = ["FORMATS", "AseDatabase", "CIFFolder", "ExtXYZFile", "MatbenchFile", "Shard", "StructureFile",
           "StructureSource", "TableFile", "detect_format", "parse_structure_text", "read_cif", "read_structures"]

FORMATS = STRUCTURE_FORMATS


class CIFFolder(StructureSource):
    """A folder of CIF files, or a single CIF file."""

    format = "cif"

    def __init__(self, path) -> None:
        super().__init__(path)
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() == ".cif" and p.is_file())
        else:
            self.files = [self.path]

    def __len__(self) -> int:
        return len(self.files)

    def entries(self):
        for file in self.files:
            yield file.stem, StructureFile(file)

    def shard_entries(self, shard):
        for file in self.files[shard.start:shard.stop]:
            yield file.stem, StructureFile(file)


class ExtXYZFile(StructureSource):
    format = "extxyz"

    def _frames(self, offset: int = 0, first: int = 0,
                mark: int | None = None) -> Iterator[tuple[int, str | StructureParseError, int | None]]:
        """Each frame's text, split on the atom-count lines; a count that cannot be read ends the file.

        Reading starts at file position ``offset`` with frame index ``first``. With ``mark``, the
        file position where frame ``index`` starts is given for every index divisible by
        ``mark`` (shard starts), else None: ``tell`` in text mode is too slow for every frame.
        """
        with open(self.path) as handle:
            handle.seek(offset)
            index = first
            while True:
                position = handle.tell() if mark is not None and index % mark == 0 else None
                line = handle.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    n = int(line.split()[0])
                except ValueError:
                    yield index, StructureParseError(
                        f"{self.path}: frame {index}: expected an atom count, got {line.strip()[:40]!r}; "
                        "the rest of the file cannot be read"), position
                    return
                yield index, line + "".join(handle.readline() for _ in range(n + 1)), position
                index += 1

    def __len__(self) -> int:
        return sum(1 for _ in self._frames())

    def shards(self, size):
        size = _validate_shard_size(size)
        starts, n = [], 0
        for index, _, position in self._frames(mark=size):  # one pass: the positions of shard starts
            if position is not None:
                starts.append((index, position))
            n = index + 1
        return [Shard(k, index, min(index + size, n), position) for k, (index, position) in enumerate(starts)]

    def entries(self):
        return self._parse(self._frames())

    def shard_entries(self, shard):
        if shard.offset is None:
            return super().shard_entries(shard)
        return self._parse(itertools.islice(self._frames(shard.offset, shard.start), len(shard)))

    def _parse(self, frames):
        from ase.io import read

        for index, text, _ in frames:
            fallback = f"{self.path.stem}-{index}"
            if isinstance(text, StructureParseError):
                yield fallback, text
                return
            try:
                atoms = read(io.StringIO(text), format="extxyz")
            except Exception as exc:  # ase raises many types for a damaged frame
                yield fallback, StructureParseError(
                    f"cannot parse frame {index} of extxyz file {self.path}: {type(exc).__name__}: {exc}")
                continue
            yield str(atoms.info.get("id", atoms.info.get("name", fallback))), atoms


class AseDatabase(StructureSource):
    format = "db"

    def __len__(self) -> int:
        from ase.db import connect

        return connect(self.path).count()

    def entries(self):
        return self._rows()

    def shard_entries(self, shard):
        return self._rows(offset=shard.start, limit=len(shard))

    def _rows(self, **window):
        from ase.db import connect

        for row in connect(self.path).select(**window):
            kv = row.key_value_pairs
            yield str(kv.get("id", kv.get("name", row.id))), row.toatoms()


class MatbenchFile(StructureSource):
    format = "matbench"

    def __init__(self, path, task: str | None = None) -> None:
        super().__init__(path)
        name = self.path.name
        for suffix in (".gz", ".json"):
            name = name.removesuffix(suffix)
        #: task name as it appears in Matbench ids ("matbench_log_gvrh" -> "log-gvrh")
        self.task = task or name.removeprefix("matbench_").replace("_", "-")
        self._table = None

    def __getstate__(self) -> dict:
        # Shipped to other processes (the distributed engine): each reads the file itself.
        return {**self.__dict__, "_table": None}

    def _load(self) -> dict:
        if self._table is None:
            opener = gzip.open if self.path.suffix == ".gz" else open
            try:
                with opener(self.path, "rt") as handle:
                    table = json.load(handle)
                table["columns"].index("structure")
            except (OSError, ValueError, KeyError) as exc:
                raise StructureParseError(f"{self.path} is not a Matbench json file with a 'structure' column: {exc}") from exc
            self._table = table
        return self._table

    def __len__(self) -> int:
        return len(self._load()["data"])

    @property
    def columns(self) -> list[str]:
        """The table's column names ("structure" and the target)."""
        return list(self._load()["columns"])

    def column(self, name: str) -> list:
        """One column's values in file order (the target, for a benchmark)."""
        table = self._load()
        if name not in table["columns"]:
            raise StructureParseError(f"{self.path} has no column {name!r}; columns: {', '.join(table['columns'])}")
        index = table["columns"].index(name)
        return [row[index] for row in table["data"]]

    def entries(self):
        return self._rows(0, None)

    def shard_entries(self, shard):
        return self._rows(shard.start, shard.stop)

    def _rows(self, start: int, stop: int | None):
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        table = self._load()
        column = table["columns"].index("structure")
        width = len(str(len(table["data"])))  # Matbench pads row numbers to the table's size
        for row, values in enumerate(table["data"][start:stop], start=start):
            sid = f"mb-{self.task}-{row + 1:0{width}d}"
            try:
                structure = Structure.from_dict(values[column])
            except Exception as exc:
                yield sid, StructureParseError(f"{self.path}: row {row} ({sid}) is not a pymatgen structure: {exc}")
                continue
            yield sid, AseAtomsAdaptor.get_atoms(structure)


_BY_FORMAT = {"cif": CIFFolder, "extxyz": ExtXYZFile, "db": AseDatabase, "matbench": MatbenchFile, "table": TableFile}


def detect_format(path: str | os.PathLike) -> str:
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() or name.endswith(".cif"):
        return "cif"
    if name.endswith((".json", ".json.gz")):
        return "matbench"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if name.endswith(".db"):
        return "db"
    if name.endswith((".parquet", ".pq", ".csv")):
        return "table"
    raise UnknownFormatError(f"cannot tell the format of {path} from its name; pass format= one of {', '.join(FORMATS)}")


def read_structures(path: str | os.PathLike, format: str | None = None) -> StructureSource:
    """A lazy ``(id, Atoms)`` source for CIF files, an extxyz file, an ase.db, Matbench json(.gz) or a table."""
    if not Path(path).exists():
        raise InputNotFoundError(f"no such file or folder: {path}")
    format = format or detect_format(path)
    if format not in _BY_FORMAT:
        raise UnknownFormatError(f"unknown structure format {format!r}; valid: {', '.join(FORMATS)}")
    return _BY_FORMAT[format](path)
