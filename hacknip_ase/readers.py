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

Iterating a source raises :class:`~hacknip_ase.errors.StructureParseError` (naming the file,
frame or row) at the first entry that cannot be parsed. :meth:`StructureSource.entries` instead
yields every entry, an unparsable one as its error, so that a caller can skip it and go on
(``featurize(..., on_error="skip")``). CIF entries come as :class:`StructureFile` (parsed on
demand), so a caller that already knows a file's content can skip the parse.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from ase import Atoms

from .errors import InputNotFoundError, StructureParseError, UnknownFormatError

FORMATS = ("cif", "extxyz", "db", "matbench")


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

    def _frames(self) -> Iterator[tuple[int, str | StructureParseError]]:
        """Each frame's text, split on the atom-count lines; a count that cannot be read ends the file."""
        with open(self.path) as handle:
            index = 0
            while line := handle.readline():
                if not line.strip():
                    continue
                try:
                    n = int(line.split()[0])
                except ValueError:
                    yield index, StructureParseError(
                        f"{self.path}: frame {index}: expected an atom count, got {line.strip()[:40]!r}; "
                        "the rest of the file cannot be read")
                    return
                yield index, line + "".join(handle.readline() for _ in range(n + 1))
                index += 1

    def __len__(self) -> int:
        return sum(1 for _ in self._frames())

    def entries(self):
        from ase.io import read

        for index, text in self._frames():
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
        from ase.db import connect

        for row in connect(self.path).select():
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
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        table = self._load()
        column = table["columns"].index("structure")
        width = len(str(len(table["data"])))  # Matbench pads row numbers to the table's size
        for row, values in enumerate(table["data"]):
            sid = f"mb-{self.task}-{row + 1:0{width}d}"
            try:
                structure = Structure.from_dict(values[column])
            except Exception as exc:
                yield sid, StructureParseError(f"{self.path}: row {row} ({sid}) is not a pymatgen structure: {exc}")
                continue
            yield sid, AseAtomsAdaptor.get_atoms(structure)


_BY_FORMAT = {"cif": CIFFolder, "extxyz": ExtXYZFile, "db": AseDatabase, "matbench": MatbenchFile}


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
    raise UnknownFormatError(f"cannot tell the format of {path} from its name; pass format= one of {', '.join(FORMATS)}")


def read_structures(path: str | os.PathLike, format: str | None = None) -> StructureSource:
    """A lazy ``(id, Atoms)`` source for CIF files, an extxyz file, an ase.db or Matbench json(.gz)."""
    if not Path(path).exists():
        raise InputNotFoundError(f"no such file or folder: {path}")
    format = format or detect_format(path)
    if format not in _BY_FORMAT:
        raise UnknownFormatError(f"unknown structure format {format!r}; valid: {', '.join(FORMATS)}")
    return _BY_FORMAT[format](path)
