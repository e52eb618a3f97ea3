"""Reading your own data: every row of a table or structure file with its structure (or the
reason it has none) and its target, and the rows' embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TableError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
STRUCTURE_SUFFIXES = (".xyz", ".extxyz", ".db")


@dataclass
class Inputs:
    """Rows of a data file: ``ids[i]``, ``sources[i]`` (the SMILES or file path as given, or ""),
    ``structures[i]`` (``ase.Atoms``, or None with ``reasons[i]`` saying why) and ``targets[i]``."""

    ids: list[str]
    sources: list[str]
    structures: list
    reasons: list[str | None]
    targets: np.ndarray | None = None
    kind: str = ""  #: "smiles", "structures" or "file"
    column: str | None = None  #: the SMILES / path column of a table
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def skip(self, i: int, reason: str) -> None:
        self.structures[i], self.reasons[i] = None, reason

    @property
    def usable(self) -> np.ndarray:
        return np.array([s is not None for s in self.structures], dtype=bool)


# -- reading ------------------------------------------------------------------------------
def read_inputs(path, *, smiles: str | None = None, structures: str | None = None, target: str | None = None,
                id_column: str | None = None, relax: str = "forcefield", calculator=None, cache=None,
                progress: bool = False) -> Inputs:
    """Structures (and targets, if ``target`` is given) of every row of ``path`` (see the module doc).

    SMILES become molecules with the ``relax`` recipe of :data:`hacknip_ase.molecules.RECIPES`
    (cached on disk). Raises :class:`~hacknip_ase.errors.TableError` for an unusable file (empty,
    missing column, non-numeric target, duplicate ids); a row that cannot be used gets a reason.
    """
    path = Path(path)
    if not path.exists():
        raise TableError(f"no such file: {path}")
    if path.suffix.lower() in STRUCTURE_SUFFIXES:
        if smiles or structures:
            raise TableError(f"{path.name} holds structures; --smiles/--structures name columns of a table")
        inputs = _read_structure_file(path, target, id_column)
    elif path.suffix.lower() in TABLE_SUFFIXES:
        inputs = _read_table(path, smiles, structures, target, id_column)
    else:
        raise TableError(f"{path.name}: expected a table ({', '.join(TABLE_SUFFIXES)}) or a structure file "
                         f"({', '.join(STRUCTURE_SUFFIXES)})")
    if inputs.kind == "smiles":
        _build_molecules(inputs, relax, calculator, cache, progress)
    return inputs


def _read_table(path: Path, smiles, structures, target, id_column) -> Inputs:
    import pandas as pd

    if bool(smiles) == bool(structures):
        raise TableError("name exactly one input column: the SMILES column (--smiles COL) or the column of "
                         "structure file paths (--structures COL)")
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, sep=TABLE_SUFFIXES[path.suffix.lower()], dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise TableError(f"{path} is empty") from None
    except (ImportError, ValueError, pd.errors.ParserError, OSError) as exc:
        raise TableError(f"cannot read table {path}: {type(exc).__name__}: {exc}") from exc
    if table.empty:
        raise TableError(f"{path} has a header but no rows")
    column = smiles or structures
    wanted = [c for c in (column, target, id_column) if c]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise TableError(f"{path.name} has no column {', '.join(map(repr, missing))}; "
                         f"its columns: {', '.join(map(str, table.columns))}")
    ids = _ids(table[id_column].astype(str).tolist() if id_column else None, len(table), path.name)
    sources = ["" if _blank(v) else str(v).strip() for v in table[column]]
    inputs = Inputs(ids=ids, sources=sources, structures=[None] * len(table), reasons=[None] * len(table),
                    kind="smiles" if smiles else "structures", column=column)
    for i, source in enumerate(sources):
        if not source:
            inputs.skip(i, f"empty {column!r}")
        elif structures:
            inputs.structures[i], inputs.reasons[i] = _read_structure(path.parent / source)
    if target:
        inputs.targets = _targets(table[target].tolist(), target, ids, inputs)
    return inputs


def _read_structure_file(path: Path, target, id_column) -> Inputs:
    if path.suffix.lower() == ".db":
        from ase.db import connect

        try:
            rows = [(row.key_value_pairs, row.toatoms()) for row in connect(path).select()]
        except Exception as exc:  # ase raises sqlite3 and JSON errors of its own kinds
            raise TableError(f"cannot read ase database {path}: {type(exc).__name__}: {exc}") from exc
        ids = [str(kv.get("id", kv.get("name", k + 1))) for k, (kv, _) in enumerate(rows)]
    else:
        from ase.io import read

        try:
            frames = read(path, index=":", format="extxyz")
        except Exception as exc:  # ase's extxyz parser raises many kinds; all mean "not readable"
            raise TableError(f"cannot read extxyz file {path}: {type(exc).__name__}: {exc}") from exc
        rows = [(atoms.info, atoms) for atoms in frames]
        ids = [str(info.get("id", info.get("name", f"{path.stem}-{k}"))) for k, (info, _) in enumerate(rows)]
    if not rows:
        raise TableError(f"{path} holds no structures")
    if id_column:
        if any(id_column not in info for info, _ in rows):
            raise TableError(f"not every structure of {path.name} has the key {id_column!r}")
        ids = [str(info[id_column]) for info, _ in rows]
    ids = _ids(ids, len(rows), path.name)
    inputs = Inputs(ids=ids, sources=[""] * len(rows), structures=[atoms for _, atoms in rows],
                    reasons=[None] * len(rows), kind="file")
    if target:
        found = [info.get(target) for info, _ in rows]
        if all(v is None for v in found):
            keys = sorted({k for info, _ in rows for k in info})
            raise TableError(f"no structure of {path.name} has the key {target!r}; keys found: {', '.join(keys)}")
        inputs.targets = _targets(found, target, ids, inputs)
    return inputs


def _ids(given: list[str] | None, n: int, name: str) -> list[str]:
    """Row ids: the id column, else the 0-based row number."""
    if given is None:
        return [str(i) for i in range(n)]
    seen, duplicates = set(), []
    for value in given:
        if value in seen:
            duplicates.append(value)
        seen.add(value)
    if duplicates:
        raise TableError(f"{name}: duplicate ids {sorted(set(duplicates))[:10]} ({len(duplicates)} repeats); "
                         "ids must be unique to match predictions to rows")
    return list(given)


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def _targets(values: list, name: str, ids: list[str], inputs: Inputs) -> np.ndarray:
    """Floats; a blank target skips its row, a non-numeric one is an error (a wrong column, most likely)."""
    targets = np.full(len(values), np.nan)
    bad = []
    for i, value in enumerate(values):
        if _blank(value):
            if inputs.reasons[i] is None:
                inputs.skip(i, f"no {name!r} value")
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            bad.append((ids[i], value))
            continue
        if np.isnan(number):  # "nan" written out: no value, like a blank cell
            if inputs.reasons[i] is None:
                inputs.skip(i, f"no {name!r} value")
        elif not np.isfinite(number):
            bad.append((ids[i], value))
        else:
            targets[i] = number
    if bad:
        examples = ", ".join(f"{i}: {v!r}" for i, v in bad[:5])
        raise TableError(f"target {name!r} is not numeric in {len(bad)} row(s) ({examples}); "
                         "classification labels must be 0/1")
    return targets


def _read_structure(path: Path):
    from ase.io import read

    if not path.is_file():
        return None, f"parse: no such file {path}"
    try:
        atoms = read(path)
    except Exception as exc:  # ase's readers raise many kinds (ValueError, KeyError, IndexError ...)
        return None, f"parse: cannot read {path.name}: {type(exc).__name__}: {exc}"
    if len(atoms) == 0:
        return None, f"parse: {path.name} holds no atoms"
    return atoms, None


def _build_molecules(inputs: Inputs, relax: str, calculator, cache, progress: bool) -> None:
    from ..molecules import RECIPES, build_molecules

    if relax not in RECIPES:
        raise TableError(f"relax recipe must be one of {sorted(RECIPES)}, got {relax!r}")
    todo = {inputs.ids[i]: s for i, s in enumerate(inputs.sources) if inputs.reasons[i] is None}
    built = build_molecules(todo, calculator, settings=RECIPES[relax], cache=cache, progress=progress)
    failed = {f.id: f for f in built.failures}
    for i, row_id in enumerate(inputs.ids):
        if row_id in built.atoms:
            inputs.structures[i] = built.atoms[row_id]
        elif row_id in failed:
            inputs.skip(i, f"{failed[row_id].stage}: {failed[row_id].reason}")
    inputs.notes += built.notes(RECIPES[relax])


def embed_inputs(inputs: Inputs, backbone, *, batch_size: int = 32, cache_dir=None, progress: bool = False):
    """(n, n_depths, dim) embeddings (zeros where a row has none); rows the backbone rejects get a reason."""
    from ..featurize import featurize

    rows = np.flatnonzero(inputs.usable)
    if not len(rows):
        raise TableError("no row has a usable structure; first reasons: "
                         + "; ".join(r for r in inputs.reasons if r)[:500])
    features = featurize([inputs.structures[i] for i in rows], backbone, ids=[inputs.ids[i] for i in rows],
                         batch_size=batch_size, cache_dir=cache_dir, progress=progress, on_error="skip")
    by_id = dict(zip(features.ids, features.embeddings, strict=True))
    position = {row_id: i for i, row_id in enumerate(inputs.ids)}
    for skipped in features.metadata.get("skipped", []):
        inputs.skip(position[skipped["id"]], f"featurize: {skipped['error']}")
    X = np.zeros((len(inputs), *features.embeddings.shape[1:]), dtype=np.float32)
    for i in rows:
        if inputs.ids[i] in by_id:
            X[i] = by_id[inputs.ids[i]]
    return X


def table_columns(path) -> list[str]:
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return list(pd.read_parquet(path).columns)
    try:
        return list(pd.read_csv(path, sep=TABLE_SUFFIXES[path.suffix.lower()], nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise TableError(f"{path} is empty") from None
