"""``hacknip fit`` and ``hacknip predict`` on tables: a saved Predictor from the rows of a file,
and one output row per input row of another."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import TableError
from .inputs import TABLE_SUFFIXES, embed_inputs, read_inputs, table_columns
from .report import FitReport, held_out_scores, plot_fit


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
    from ..backbones import get_backbone
    from ..heads import Predictor
    from ..heads.estimators import HEADS
    from ..heads.feature_sources import pbc_kind
    from ..heads.transforms import TRANSFORMS, canonical

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
        from ..calculator import EmbeddingCalculator

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
    files.update(plot_fit(predictor, y_held, np.asarray(held["y_pred"]), out))
    skipped = [(inputs.ids[i], inputs.reasons[i]) for i in range(len(inputs)) if inputs.reasons[i]]
    if skipped:
        files["skipped"] = str(_write_csv(out.with_name(out.stem + ".skipped.csv"),
                                          {"id": [i for i, _ in skipped], "reason": [r for _, r in skipped]}))
    return FitReport(predictor, len(inputs), len(rows), skipped, held_out_scores(y_held, held["y_pred"], task),
                     len(y_held), files, seconds, inputs.notes)


def _write_csv(path: Path, columns: dict[str, list]) -> Path:
    import pandas as pd

    from ..files import atomic_write

    return atomic_write(path, pd.DataFrame(columns).to_csv(index=False).encode())


def predict_table(model, path, out, *, smiles: str | None = None, structures: str | None = None,
                  id_column: str | None = None, relax: str | None = None, device: str = "cpu",
                  batch_size: int = 32, cache_dir=None, trust: bool = False, progress: bool = True):
    """Predict every row of ``path`` with the saved predictor ``model``; write ``out`` (CSV).

    Columns: ``id``, the input (SMILES or path), the prediction (``<target>``; classification
    adds ``<target>_probability``), ``domain_distance`` and ``error`` (why a row has no
    prediction, else empty). Input columns and the molecule recipe default to those the model
    was trained with. Returns the table as a pandas DataFrame.
    """
    from ..backbones import get_backbone
    from ..heads import load_predictor

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
            id_column = id_column if id_column in table_columns(path) else None
    nips = [get_backbone(r["name"], model=r["model"], device=device) for r in predictor.backbones]
    for nip in nips:
        predictor.check_backbone(nip.info, multi=True)
    calculator = None
    if relax == "backbone" and smiles:
        from ..calculator import EmbeddingCalculator

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
