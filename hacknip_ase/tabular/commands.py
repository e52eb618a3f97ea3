"""The ``hacknip fit`` and ``hacknip predict`` sub-commands."""

from __future__ import annotations

import argparse
import sys

from ..choices import RELAX_RECIPES
from ..errors import HackNIPError
from .fit_predict import fit_table, predict_table


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
