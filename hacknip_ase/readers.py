"""Lazy structure readers: each source yields ``(id, ase.Atoms)`` one at a time and knows its length.

Formats (``read_structures`` picks one from the path unless ``format`` is given):

- ``cif``: a folder of ``*.cif`` files (sorted by name, not recursive); id = file name without
  ``.cif``. A file that cannot be parsed raises :class:`~hacknip_ase.errors.StructureParseError`
  naming it.
- ``extxyz``: an extended-XYZ file (``.xyz``/``.extxyz``); id = the frame's ``id`` or ``name``
  info key, else ``<file stem>-<frame index>``.
- ``db``: an ase database (``.db``); id = the row's ``id``/``name`` key-value pair, else the row id.
- ``matbench``: a Matbench ``.json``/``.json.gz`` file (pandas "split" orient, pymatgen structure
  dicts); id = ``mb-<task>-<row>`` as in Matbench's official splits (``mb-jdft2d-001``,
  ``mb-log-gvrh-00001``). The file's JSON is read once; structures are built one at a time.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from ase import Atoms

from .errors import StructureParseError

FORMATS = ("cif", "extxyz", "db", "matbench")


class StructureSource:
    """An iterable of ``(id, Atoms)`` with a length, read lazily."""

    format: str = ""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or folder: {self.path}")

    def __iter__(self) -> Iterator[tuple[str, Atoms]]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class CIFFolder(StructureSource):
    format = "cif"

    def __init__(self, path) -> None:
        super().__init__(path)
        if not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is not a folder of CIF files")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() == ".cif" and p.is_file())

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        for file in self.files:
            yield file.stem, read_cif(file)


def read_cif(path: str | os.PathLike) -> Atoms:
    """First structure of a CIF file, or StructureParseError naming the file."""
    from ase.io import read

    try:
        with warnings.catch_warnings():  # ase warns about every odd-but-harmless CIF tag
            warnings.simplefilter("ignore")
            atoms = read(path, format="cif", index=0)
    except Exception as exc:  # ase raises many types (ValueError, KeyError, StopIteration, ...)
        raise StructureParseError(f"cannot parse CIF file {path}: {type(exc).__name__}: {exc}") from exc
    if len(atoms) == 0:
        raise StructureParseError(f"cannot parse CIF file {path}: no atoms found")
    return atoms


class ExtXYZFile(StructureSource):
    format = "extxyz"

    def __len__(self) -> int:
        # Count frames from the atom-count lines without parsing them (cheap, for the ETA).
        frames = 0
        with open(self.path) as handle:
            while line := handle.readline():
                if not line.strip():
                    continue
                try:
                    n = int(line.split()[0])
                except ValueError as exc:
                    raise StructureParseError(f"{self.path}: expected an atom count, got {line.strip()[:40]!r}") from exc
                for _ in range(n + 1):
                    handle.readline()
                frames += 1
        return frames

    def __iter__(self):
        from ase.io import iread

        try:
            for index, atoms in enumerate(iread(self.path, index=":", format="extxyz")):
                sid = atoms.info.get("id", atoms.info.get("name", f"{self.path.stem}-{index}"))
                yield str(sid), atoms
        except StructureParseError:
            raise
        except Exception as exc:
            raise StructureParseError(f"cannot parse extxyz file {self.path}: {type(exc).__name__}: {exc}") from exc


class AseDatabase(StructureSource):
    format = "db"

    def __len__(self) -> int:
        from ase.db import connect

        return connect(self.path).count()

    def __iter__(self):
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

    def __iter__(self):
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
                raise StructureParseError(f"{self.path}: row {row} ({sid}) is not a pymatgen structure: {exc}") from exc
            yield sid, AseAtomsAdaptor.get_atoms(structure)


_BY_FORMAT = {"cif": CIFFolder, "extxyz": ExtXYZFile, "db": AseDatabase, "matbench": MatbenchFile}


def detect_format(path: str | os.PathLike) -> str:
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "cif"
    if name.endswith((".json", ".json.gz")):
        return "matbench"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if name.endswith(".db"):
        return "db"
    if name.endswith(".cif"):
        raise ValueError(f"{path} is a single CIF file; pass the folder that holds the CIF files")
    raise ValueError(f"cannot tell the format of {path}; pass format= one of {', '.join(FORMATS)}")


def read_structures(path: str | os.PathLike, format: str | None = None) -> StructureSource:
    """A lazy ``(id, Atoms)`` source for a CIF folder, extxyz file, ase.db or Matbench json(.gz)."""
    format = format or detect_format(path)
    if format not in _BY_FORMAT:
        raise ValueError(f"unknown structure format {format!r}; valid: {', '.join(FORMATS)}")
    return _BY_FORMAT[format](path)
