"""Your own data: a table of SMILES or structure files (or an extxyz / ase .db) -> a saved
:class:`~hacknip_ase.heads.Predictor`, and predictions for new rows.

Inputs (:func:`read_inputs`):

- a CSV / TSV / Parquet table with a SMILES column (``smiles=``) or a column of structure file
  paths (``structures=``; CIF, POSCAR, extxyz, anything ``ase.io.read`` reads; relative paths
  are relative to the table); the target is a column of it;
- an extxyz file or an ase ``.db``: the target is an ``info`` key (extxyz) or a key-value pair
  (db) of each structure.

Every row comes back: with a structure, or with the reason it has none (bad SMILES, a file that
cannot be read, a 3D build that failed, an element the backbone does not cover, overlapping
atoms). :func:`fit_table` trains through :meth:`Predictor.fit`, the path the benchmark harness
uses too; :func:`predict_table` writes one output row per input row.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .choices import RELAX_RECIPES
from .errors import HackNIPError, TableError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
STRUCTURE_SUFFIXES = (".xyz", ".extxyz", ".db")
#: How many skipped rows the report lists (all of them go to ``<model>.skipped.csv``).
REPORT_EXAMPLES = 10


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
    from .molecules import RECIPES, build_molecules

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
    from .featurize import featurize

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


# -- fit ----------------------------------------------------------------------------------
@dataclass
class FitReport:
    """What ``hacknip fit`` did: rows used and skipped, inner-CV scores, files written, seconds."""

    predictor: object
    n_rows: int
    n_used: int
    skipped: list[tuple[str, str]]  #: (id, reason)
    scores: dict[str, float]  #: of the held-out inner-CV predictions (see :func:`held_out_scores`)
    n_scored: int
    files: dict[str, str]
    seconds: dict[str, float]
    notes: list[str]

    def text(self) -> str:
        p = self.predictor
        units = f" {p.units}" if p.units else ""
        lines = [f"model: {self.files['model']}",
                 f"rows: {self.n_rows} read, {self.n_used} used, {len(self.skipped)} skipped"]
        by_stage: dict[str, int] = {}
        for _, reason in self.skipped:
            stage = reason.split(":", 1)[0]
            by_stage[stage] = by_stage.get(stage, 0) + 1
        if self.skipped:
            lines.append("  skipped by stage: " + ", ".join(f"{s}: {n}" for s, n in sorted(by_stage.items())))
            lines += [f"  {i}: {r[:160]}" for i, r in self.skipped[:REPORT_EXAMPLES]]
            if "skipped" in self.files:
                lines.append(f"  all skipped rows: {self.files['skipped']}")
        sel = p.selection
        how = f"{sel['cv']}-fold CV" if sel["cv"] else f"one {sel['validation_fraction']:.0%} hold-out"
        lines.append(f"chosen depth(s): {p.metadata()['depths_label']} of {p.backbone_label} "
                     f"({len(sel['curve'])} candidates scored by {how} on the training rows, seed "
                     f"{sel['random_state']})")
        metric = ", ".join(f"{k} {v:.4g}{units if k in ('MAE', 'RMSE') else ''}" for k, v in self.scores.items())
        lines.append(f"inner-CV estimate ({self.n_scored} rows): {metric}")
        lines.append("  = out-of-fold predictions of the chosen configuration from the selection's own inner "
                     f"{how}: each row predicted by a head ({type(p.head).__name__}) fitted without it. The depth was "
                     "picked on these same folds, so this is slightly optimistic; it is not a test-set score.")
        if sel.get("tuning"):
            lines.append(f"  (before tuning; the saved head uses the tuned parameters {sel['tuning']['best_params']})")
        lines += self.notes
        lines.append("plots: " + ", ".join(v for k, v in self.files.items() if k in ("parity", "roc", "selection")))
        lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


def held_out_scores(y_true, y_pred, task: str) -> dict[str, float]:
    """MAE, RMSE, R^2 (regression) or ROC-AUC (classification, ``y_pred`` = P(class 1))."""
    from sklearn import metrics

    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if task == "classification":
        return {"ROC-AUC": float(metrics.roc_auc_score(y_true, y_pred)),
                "accuracy": float(metrics.accuracy_score(y_true, y_pred >= 0.5))}
    return {"MAE": float(metrics.mean_absolute_error(y_true, y_pred)),
            "RMSE": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
            "R^2": float(metrics.r2_score(y_true, y_pred))}


def fit_table(path, out, *, target: str, smiles: str | None = None, structures: str | None = None,
              id_column: str | None = None, backbone: str = "chgnet", head: str = "xgboost",
              task: str = "regression", transform: str | None = None, tune_trials: int = 0, seed: int = 0,
              relax: str = "forcefield", units: str = "", device: str = "cpu", batch_size: int = 32,
              cache_dir=None, progress: bool = True) -> FitReport:
    """Train a :class:`~hacknip_ase.heads.Predictor` on the rows of ``path`` and save it to ``out``.

    Depth (and, with ``tune_trials``, MODNet hyperparameters) are chosen on these rows only, by
    :meth:`Predictor.fit` with its default size rule; ``seed`` seeds the inner splits, the head
    and the ETKDG conformers are seeded by the recipe. Writes ``out``, ``<out stem>.parity.png``
    (``.roc.png`` for classification), ``<out stem>.selection.png`` and, if rows were skipped,
    ``<out stem>.skipped.csv``.
    """
    from .backbones import get_backbone
    from .heads import Predictor
    from .heads.predictor import pbc_kind
    from .heads.estimators import HEADS

    from .heads.transforms import TRANSFORMS, canonical

    # the option errors Predictor.fit would raise as plain ValueErrors, as typed one-liners
    if head not in HEADS:
        raise TableError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
    if task not in ("regression", "classification"):
        raise TableError(f"task must be 'regression' or 'classification', got {task!r}")
    if tune_trials and (head != "modnet" or task != "regression"):
        raise TableError("--tune runs the MODNet hyperparameter search: it needs --head modnet and regression")
    if transform is not None:
        if task == "classification":
            raise TableError("target transforms apply to regression only")
        try:
            transform = canonical(transform)
        except ValueError as exc:
            raise TableError(str(exc)) from None
    out = Path(out)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    nip = get_backbone(backbone, device=device)
    calculator = None
    if relax == "backbone" and smiles:
        from .calculator import EmbeddingCalculator

        calculator = EmbeddingCalculator(nip)
    inputs = read_inputs(path, smiles=smiles, structures=structures, target=target, id_column=id_column,
                         relax=relax, calculator=calculator, progress=progress)
    seconds["read and geometry"] = time.perf_counter() - t
    t = time.perf_counter()
    X = embed_inputs(inputs, nip, batch_size=batch_size, cache_dir=cache_dir, progress=progress)
    seconds["featurize"] = time.perf_counter() - t
    rows = np.flatnonzero(inputs.usable)
    y = inputs.targets[rows]
    if task == "classification":
        labels = sorted(set(y.tolist()))
        if len(labels) != 2:
            raise TableError(f"classification needs two classes in {target!r}, found {labels[:10]}")
    if len(rows) < 10:
        raise TableError(f"only {len(rows)} usable rows; depth selection by inner CV needs at least 10")
    if transform is not None:
        try:
            TRANSFORMS[transform][0](y)
        except ValueError as exc:
            raise TableError(f"{target!r}: {exc}") from None
    t = time.perf_counter()
    predictor = Predictor.fit(X[rows], y, backbone=nip, head=head, task=task, target_name=target, units=units,
                              transform=transform, tune_trials=tune_trials, random_state=seed, progress=progress)
    seconds["select and fit"] = time.perf_counter() - t
    predictor.inputs = {"kind": inputs.kind, "column": inputs.column, "relax": relax if inputs.kind == "smiles" else None,
                        "id_column": id_column, "source": Path(path).name}
    predictor.training_pbc = pbc_kind([inputs.structures[i] for i in rows])
    out.parent.mkdir(parents=True, exist_ok=True)
    predictor.save(out)
    held = predictor.selection["held_out"]
    y_held = y[held["rows"]]
    files = {"model": str(out)}
    files.update(_plots(predictor, y_held, np.asarray(held["y_pred"]), out))
    skipped = [(inputs.ids[i], inputs.reasons[i]) for i in range(len(inputs)) if inputs.reasons[i]]
    if skipped:
        files["skipped"] = str(_write_csv(out.with_name(out.stem + ".skipped.csv"),
                                          {"id": [i for i, _ in skipped], "reason": [r for _, r in skipped]}))
    return FitReport(predictor, len(inputs), len(rows), skipped, held_out_scores(y_held, held["y_pred"], task),
                     len(y_held), files, seconds, inputs.notes)


def _plots(predictor, y_true, y_pred, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    sel = predictor.selection
    units = f" ({predictor.units})" if predictor.units else ""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if predictor.task == "classification":
        from sklearn.metrics import roc_auc_score, roc_curve

        fpr, tpr, _ = roc_curve(y_true, y_pred)
        ax.plot(fpr, tpr, lw=1.5, label=f"ROC-AUC {roc_auc_score(y_true, y_pred):.3f}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate")
        key = "roc"
    else:
        ax.scatter(y_true, y_pred, s=8, alpha=0.6)
        lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = float(np.mean(np.abs(y_true - y_pred)))
        ax.set(xlabel=f"{predictor.target_name}{units}", ylabel=f"predicted{units}")
        ax.text(0.04, 0.96, f"MAE {mae:.3g}, n={len(y_true)}", transform=ax.transAxes, va="top")
        key = "parity"
    ax.set_title(f"inner-CV held-out, depth {predictor.metadata()['depths_label']}", fontsize=9)
    fig.tight_layout()
    files[key] = str(out.with_name(f"{out.stem}.{key}.png"))
    fig.savefig(files[key], dpi=120)
    plt.close(fig)

    curve = sel["curve"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sign = -1.0 if sel["scoring"].startswith("neg_") else 1.0
    scores = [sign * c["score"] for c in curve]
    ax.errorbar(range(len(curve)), scores, yerr=[c["std"] for c in curve], marker="o", capsize=3)
    ax.set_xticks(range(len(curve)), [c["label"] for c in curve])
    name = sel["scoring"].removeprefix("neg_").replace("_", " ")
    ax.set(xlabel="depth", ylabel=f"inner-CV {name}{units if sign < 0 else ''}")
    ax.set_title("depth selection (training rows only)", fontsize=9)
    fig.tight_layout()
    files["selection"] = str(out.with_name(f"{out.stem}.selection.png"))
    fig.savefig(files["selection"], dpi=120)
    plt.close(fig)
    return files


def _write_csv(path: Path, columns: dict[str, list]) -> Path:
    import pandas as pd

    from .cache import atomic_write

    return atomic_write(path, pd.DataFrame(columns).to_csv(index=False).encode())


# -- predict ------------------------------------------------------------------------------
def predict_table(model, path, out, *, smiles: str | None = None, structures: str | None = None,
                  id_column: str | None = None, relax: str | None = None, device: str = "cpu",
                  batch_size: int = 32, cache_dir=None, trust: bool = False, progress: bool = True):
    """Predict every row of ``path`` with the saved predictor ``model``; write ``out`` (CSV).

    Columns: ``id``, the input (SMILES or path), the prediction (``<target>``; classification
    adds ``<target>_probability``), ``domain_distance`` and ``error`` (why a row has no
    prediction, else empty). Input columns and the molecule recipe default to those the model
    was trained with. Returns the table as a pandas DataFrame.
    """
    from .backbones import get_backbone
    from .heads import load_predictor

    predictor = load_predictor(model, trust=trust)
    trained = predictor.inputs or {}
    if not (smiles or structures) and Path(path).suffix.lower() in TABLE_SUFFIXES:
        if trained.get("kind") == "smiles":
            smiles = trained["column"]
        elif trained.get("kind") == "structures":
            structures = trained["column"]
    relax = relax or trained.get("relax") or "forcefield"
    if id_column is None:
        id_column = trained.get("id_column")
        if id_column and Path(path).suffix.lower() in TABLE_SUFFIXES:
            id_column = id_column if id_column in _columns(path) else None
    nips = [get_backbone(r["name"], model=r["model"], device=device) for r in predictor.backbones]
    for nip in nips:
        predictor.check_backbone(nip.info, multi=True)
    calculator = None
    if relax == "backbone" and smiles:
        from .calculator import EmbeddingCalculator

        calculator = EmbeddingCalculator(nips[0])
    inputs = read_inputs(path, smiles=smiles, structures=structures, id_column=id_column, relax=relax,
                         calculator=calculator, progress=progress)
    X = [embed_inputs(inputs, nip, batch_size=batch_size, cache_dir=cache_dir, progress=progress) for nip in nips]
    rows = np.flatnonzero(inputs.usable)
    name = predictor.target_name
    columns: dict[str, list] = {"id": inputs.ids}
    if inputs.column:
        columns[inputs.column] = inputs.sources
    values, probability, distance = (np.full(len(inputs), np.nan) for _ in range(3))
    embeddings = [x[rows] for x in X] if len(X) > 1 else X[0][rows]
    if len(rows):
        distance[rows] = predictor.domain_distance(embeddings, [bool(inputs.structures[i].pbc.all()) for i in rows])
        if predictor.task == "classification":
            probability[rows] = predictor.predict_proba_embeddings(embeddings)[:, 1]
            values[rows] = np.asarray(predictor.head.classes_)[(probability[rows] >= 0.5).astype(int)]
        else:
            values[rows] = predictor.predict_embeddings(embeddings)
    columns[name] = values.tolist()
    if predictor.task == "classification":
        columns[f"{name}_probability"] = probability.tolist()
    columns["domain_distance"] = distance.tolist()
    columns["error"] = [r or "" for r in inputs.reasons]
    _write_csv(Path(out), columns)
    import pandas as pd

    return pd.DataFrame(columns)


def _columns(path) -> list[str]:
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return list(pd.read_parquet(path).columns)
    try:
        return list(pd.read_csv(path, sep=TABLE_SUFFIXES[path.suffix.lower()], nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise TableError(f"{path} is empty") from None


# -- command line -------------------------------------------------------------------------
def add_data_commands(commands) -> None:
    """Register ``hacknip fit`` and ``hacknip predict`` on the ``hacknip`` sub-parsers."""
    fit = commands.add_parser(
        "fit", help="train a predictor on your own table of SMILES or structures",
        description="Build (SMILES) or read the structures of DATA, embed them with a frozen backbone, choose the "
                    "depth by inner cross-validation on these rows, fit the head and save it to MODEL "
                    "(a .hnp file usable by `hacknip predict`, Predictor.predict and EmbeddingCalculator). "
                    "Prints what was used, what was skipped and why, and an inner-CV estimate; writes parity "
                    "(or ROC) and selection-curve plots beside MODEL.")
    fit.add_argument("data", help="CSV/TSV/Parquet table, extxyz file or ase .db")
    fit.add_argument("--target", required=True, help="target column (table) or info / key-value key (extxyz, db)")
    fit.add_argument("--out", "-o", required=True, help="model file to write (.hnp)")
    fit.add_argument("--head", default="xgboost", help="ridge, xgboost (default), mlp or modnet")
    fit.add_argument("--task", choices=["regression", "classification"], default="regression",
                     help="classification: 0/1 labels (ROC-AUC is reported)")
    fit.add_argument("--transform", help="target transform for regression: log10 or neglog1m (-log10(1 - x))")
    fit.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                     help="Optuna trials of the MODNet hyperparameter search (needs --head modnet)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the inner splits and the head (default 0)")
    fit.add_argument("--units", default="", help="units of the target, for the report and the model file")
    _common_options(fit, "backbone registry name (default chgnet)")
    fit.set_defaults(func=_fit_command)

    predict = commands.add_parser(
        "predict", help="predict every row of a table or structure file with a saved predictor",
        description="One output row per input row: the prediction, the domain distance (how far the row's "
                    "embedding lies from the training rows; see README) and, where there is no prediction, why.")
    predict.add_argument("model", help="model file written by `hacknip fit` or Predictor.save")
    predict.add_argument("data", help="CSV/TSV/Parquet table, extxyz file or ase .db")
    predict.add_argument("--out", "-o", required=True, help="CSV file to write")
    predict.add_argument("--trust", action="store_true", help="allow a model whose head is pickled (custom estimator)")
    _common_options(predict, None)
    predict.set_defaults(func=_predict_command)


def _common_options(parser, backbone_help) -> None:
    parser.add_argument("--smiles", metavar="COL", help="column of SMILES (molecules are built in 3D)")
    parser.add_argument("--structures", metavar="COL",
                        help="column of structure file paths (CIF, POSCAR, extxyz), relative to the table")
    parser.add_argument("--id", dest="id_column", metavar="COL", help="column (or key) of unique row ids "
                        "(default: the 0-based row number)")
    parser.add_argument("--relax", choices=RELAX_RECIPES, default=None,
                        help="3D recipe for SMILES: forcefield (ETKDG + MMFF94/UFF, default for fit), etkdg, or "
                             "backbone (relaxed with the NIP, ~1 min per molecule on a CPU); predict defaults to "
                             "the model's")
    if backbone_help:
        parser.add_argument("--backbone", default="chgnet", help=backbone_help)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32, help="structures per forward pass (default 32)")
    parser.add_argument("--cache-dir", help="embedding cache root (default: $HACKNIP_CACHE_DIR/features)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _fit_command(args: argparse.Namespace) -> int:
    try:
        report = fit_table(args.data, args.out, target=args.target, smiles=args.smiles, structures=args.structures,
                           id_column=args.id_column, backbone=args.backbone, head=args.head, task=args.task,
                           transform=args.transform, tune_trials=args.tune, seed=args.seed,
                           relax=args.relax or "forcefield", units=args.units, device=args.device,
                           batch_size=args.batch_size, cache_dir=args.cache_dir, progress=not args.quiet)
    except (HackNIPError, OSError) as exc:
        print(f"hacknip fit: error: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    return 0


def _predict_command(args: argparse.Namespace) -> int:
    try:
        table = predict_table(args.model, args.data, args.out, smiles=args.smiles, structures=args.structures,
                              id_column=args.id_column, relax=args.relax, device=args.device,
                              batch_size=args.batch_size, cache_dir=args.cache_dir, trust=args.trust,
                              progress=not args.quiet)
    except (HackNIPError, OSError) as exc:
        print(f"hacknip predict: error: {exc}", file=sys.stderr)
        return 2
    failed = int((table["error"] != "").sum())
    print(f"wrote {len(table)} rows to {args.out}: {len(table) - failed} predicted, {failed} without a prediction "
          "(reason in column 'error')")
    return 0
