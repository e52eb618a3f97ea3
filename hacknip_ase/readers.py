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

import csv
import gzip
import hashlib
import io
import itertools
import json
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from .choices import STRUCTURE_FORMATS
from .errors import InputNotFoundError, MissingDependencyError, StructureParseError, TableError, UnknownFormatError

FORMATS = STRUCTURE_FORMATS


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
        from .errors import InvalidOptionError

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


def parse_structure_text(text, where: str) -> Atoms:
    """A structure from the text of a table cell (see :class:`TableFile`), or StructureParseError.

    JSON objects are told apart by their keys: ase's encoding (``__ase_objtype__: "atoms"``)
    or a pymatgen dict (``lattice`` and ``sites``: Structure; ``sites`` alone: Molecule).
    Anything that is not a JSON object is read as CIF.
    """
    if not isinstance(text, str) or not text.strip():
        raise StructureParseError(f"{where}: the structure cell is empty")
    text = text.strip()
    try:
        if text.startswith("{"):
            return _from_json(text)
        from ase.io import read

        with warnings.catch_warnings():  # ase warns about every odd-but-harmless CIF tag
            warnings.simplefilter("ignore")
            atoms = read(io.StringIO(text), format="cif", index=0)
    except StructureParseError as exc:
        raise StructureParseError(f"{where}: {exc}") from exc
    except Exception as exc:  # json, ase and pymatgen raise many types
        raise StructureParseError(f"{where}: cannot parse the structure: {type(exc).__name__}: {exc}") from exc
    if len(atoms) == 0:
        raise StructureParseError(f"{where}: no atoms found in the CIF text")
    return atoms


def _from_json(text: str) -> Atoms:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise StructureParseError("the JSON is not an object")
    if data.get("__ase_objtype__") == "atoms":
        from ase.io.jsonio import decode

        return decode(text)
    if "sites" in data:
        from pymatgen.core import Molecule, Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms((Structure if "lattice" in data else Molecule).from_dict(data))
    raise StructureParseError("JSON that is neither an ase Atoms (ase.io.jsonio.encode) nor a pymatgen "
                              "Structure/Molecule dict")


class TableFile(StructureSource):
    """A Parquet or CSV table of structures, one row per structure.

    Columns (others are ignored):

    ``structure`` (required)
        The structure as text: JSON of a pymatgen Structure or Molecule dict
        (``json.dumps(structure.as_dict())``: what Materials Project, Alexandria and Matbench
        hold), JSON of an ase Atoms (``ase.io.jsonio.encode(atoms)``), or CIF text.
    ``id`` (optional)
        The structure's id (as text); without the column, ``<file stem>-<row>`` (rows from 0).

    Parquet needs pyarrow (``pip install hacknip-ase[ray]`` brings it) and is read a row
    group at a time; CSV is read with the standard library, a row at a time (quoted cells may
    span lines, as CIF text does).
    """

    format = "table"
    STRUCTURE, ID = "structure", "id"

    def __init__(self, path) -> None:
        super().__init__(path)
        self.kind = "parquet" if self.path.suffix.lower() in (".parquet", ".pq") else "csv"
        columns = self._parquet().schema_arrow.names if self.kind == "parquet" else self._csv_header()
        if self.STRUCTURE not in columns:
            raise TableError(f"{self.path}: no {self.STRUCTURE!r} column (columns: {', '.join(map(str, columns))})")
        self.has_ids = self.ID in columns

    def _parquet(self):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise MissingDependencyError(f"reading Parquet ({self.path}) needs pyarrow: pip install pyarrow "
                                         "(or pip install hacknip-ase[ray])") from exc
        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise StructureParseError(f"{self.path} is not a readable Parquet file: {type(exc).__name__}: {exc}") from exc

    def _csv_header(self) -> list[str]:
        with open(self.path, newline="") as handle:
            header = next(csv.reader(handle), None)
        if header is None:
            raise TableError(f"{self.path}: the CSV file is empty")
        return header

    def __len__(self) -> int:
        if self.kind == "parquet":
            return self._parquet().metadata.num_rows
        return sum(1 for _ in self._csv_rows())

    def entries(self):
        return self._entries(0, None, None)

    def shards(self, size):
        if self.kind == "parquet":
            return super().shards(size)
        size = _validate_shard_size(size)
        starts, n = [], 0
        for row, _, position in self._csv_rows(mark=size):
            if position is not None:
                starts.append((row, position))
            n = row + 1
        return [Shard(k, row, min(row + size, n), position) for k, (row, position) in enumerate(starts)]

    def shard_entries(self, shard):
        return self._entries(shard.start, shard.stop, shard.offset)

    def _entries(self, start: int, stop: int | None, offset: int | None):
        rows = self._parquet_rows(start, stop) if self.kind == "parquet" else self._csv_rows(offset=offset, first=start)
        for row, values, _ in itertools.islice(rows, None if stop is None else stop - start):
            sid = values.get(self.ID) if self.has_ids else None
            sid = f"{self.path.stem}-{row}" if sid is None or sid == "" else str(sid)
            try:
                yield sid, parse_structure_text(values.get(self.STRUCTURE), f"{self.path}: row {row} ({sid})")
            except StructureParseError as exc:
                yield sid, exc

    def _parquet_rows(self, start: int, stop: int | None):
        parquet = self._parquet()
        columns = [self.STRUCTURE] + ([self.ID] if self.has_ids else [])
        first = 0  # row number of the first row of the current row group
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if first + size <= start:  # before the wanted rows: not read at all
                first += size
                continue
            if stop is not None and first >= stop:
                return
            table = parquet.read_row_group(group, columns=columns)
            values = {name: table.column(name).to_pylist() for name in columns}
            for i in range(max(start - first, 0), size):
                yield first + i, {name: values[name][i] for name in columns}, None
            first += size

    def _csv_rows(self, offset: int | None = None, first: int = 0, mark: int | None = None):
        """``(row, {column: text}, position)``; positions as in :meth:`ExtXYZFile._frames`."""
        # A CIF in a cell is easily longer than csv's default limit of 128 kB per field.
        csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
        header = self._csv_header()
        with open(self.path, newline="") as handle:
            if offset is None:
                handle.readline()  # the header (a header with quoted line breaks is not supported)
            else:
                handle.seek(offset)
            lines = iter(handle.readline, "")  # readline, not iteration: keeps tell() usable
            reader = csv.reader(lines)
            row = first
            while True:
                position = handle.tell() if mark is not None and row % mark == 0 else None
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise StructureParseError(f"{self.path}: row {row}: not valid CSV: {exc}") from exc
                if not values:  # a blank line
                    continue
                yield row, dict(zip(header, values, strict=False)), position
                row += 1


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
