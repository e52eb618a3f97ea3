"""Tables of structures: Parquet or CSV, one row per structure (``hacknip featurize table.csv``)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys
import warnings

from ase import Atoms

from .errors import MissingDependencyError, StructureParseError, TableError
from .reader_base import Shard, StructureSource, _validate_shard_size


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
