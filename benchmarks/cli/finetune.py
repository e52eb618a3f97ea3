"""``hacknip-bench finetune`` and ``efficiency``: the fine-tuning baseline's commands.

``finetune`` fine-tunes a backbone on a task's folds (:func:`~benchmarks.harness.finetune_run.run_finetune`);
``efficiency`` runs the data-efficiency study (:func:`~benchmarks.harness.efficiency.run_study`) and
draws its figures (:func:`~benchmarks.report.efficiency.make_figures`). ``--batch-size`` here is
the training batch (``--train-batch-size``); in ``run``/``suite``/``featurize`` it is the
featurization batch (``--featurize-batch-size``).
"""

from __future__ import annotations

from ..harness.config import DEFAULT_RESULTS_DIR, DEFAULT_SEED


def add_commands(commands) -> None:
    """Register ``finetune`` and ``efficiency`` on ``hacknip-bench``'s subparsers."""
    one = commands.add_parser("finetune", help="fine-tune a backbone on a task's folds (the baseline); "
                                               "writes <task>/<backbone>__finetune.json")
    one.add_argument("--task", required=True)
    one.add_argument("--backbone", default="chgnet")
    one.add_argument("--folds", type=_fold_list, default=None, help="comma list, e.g. 0,1 (default: all)")
    one.add_argument("--max-epochs", type=int, default=None, help="default: the recipe's (recorded if changed)")
    one.add_argument("--patience", type=int, default=None)
    train_batch_argument(one)
    one.add_argument("--fraction", type=float, default=None,
                     help="train on this random fraction of each training fold (writes under <task>/efficiency/)")
    one.add_argument("--subset-seed", type=int, default=0)
    one.add_argument("--test-limit", type=int, default=None, help="score a fixed random subset of each test fold")
    one.add_argument("--limit", type=int, default=None, help="rows of generated tasks (smoke runs)")
    one.add_argument("--seed", type=int, default=DEFAULT_SEED)
    one.add_argument("--jobs", type=int, default=1, help="folds trained at once, one process each (one torch "
                                                         "thread per process; at most one per core)")
    _common(one)
    one.set_defaults(run=_finetune_command)

    eff = commands.add_parser("efficiency", help="data-efficiency study: frozen embeddings vs fine-tuning on "
                                                 "random training fractions, plus its figures")
    eff.add_argument("--task", required=True)
    eff.add_argument("--backbone", default="chgnet")
    eff.add_argument("--approach", action="append", choices=["frozen", "finetune"],
                     help="repeatable (default: both)")
    eff.add_argument("--fractions", type=_float_list, default=None, help="e.g. 0.001,0.01,0.1,1")
    eff.add_argument("--finetune-fractions", type=_float_list, default=None,
                     help="fractions for fine-tuning only (default: --fractions)")
    eff.add_argument("--subset-seeds", type=_int_list, default=None, help="e.g. 0,1,2,3,4")
    eff.add_argument("--folds", type=_fold_list, default=None, help="comma list (default: 0)")
    eff.add_argument("--head", default="xgboost", choices=["ridge", "xgboost", "mlp"])
    eff.add_argument("--max-epochs", type=int, default=None)
    eff.add_argument("--patience", type=int, default=None)
    train_batch_argument(eff)
    eff.add_argument("--test-limit", type=int, default=None)
    eff.add_argument("--limit", type=int, default=None)
    eff.add_argument("--cache-dir", default=None, help="embedding cache root (default: the user cache)")
    eff.add_argument("--figures-dir", default="leaderboard/figures")
    eff.add_argument("--figures-only", action="store_true", help="redraw the figures from existing results")
    _common(eff)
    eff.set_defaults(run=_efficiency_command)


def train_batch_argument(p) -> None:
    p.add_argument("--train-batch-size", "--batch-size", dest="train_batch_size", type=int, default=None, metavar="N",
                   help="structures per training step (default: the recipe's; --batch-size: the same option)")


def _common(p) -> None:
    p.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR))
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-resume", action="store_true", help="redo finished folds")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _fold_list(text: str) -> list[str]:
    return [f"fold_{f}" if f.strip().isdigit() else f.strip() for f in text.split(",") if f.strip()]


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _finetune_command(args) -> int:
    from ..harness.config import FinetuneOptions
    from ..harness.finetune_run import run_finetune
    from ..report.rows import format_row
    from .common import run_config

    options = FinetuneOptions(max_epochs=args.max_epochs, patience=args.patience, train_batch_size=args.train_batch_size,
                              train_fraction=args.fraction,
                              subset_seed=args.subset_seed if args.fraction is not None else None,
                              test_limit=args.test_limit, jobs=args.jobs)
    record = run_finetune(args.task, args.backbone, run_config(args, seed=args.seed, limit=args.limit, folds=args.folds),
                          options=options)
    print(format_row(record))
    for fold in record["folds"]:
        t, sec = fold["training"], fold["seconds"]
        print(f"{fold['name']}: n_train {fold['n_train']}, epochs {t['n_epochs']} (best {t['best_epoch']}), "
              f"fit {sec['fit']:.0f} s wall / {sec.get('cpu_fit', float('nan')):.0f} s CPU, "
              f"{sec.get('cpu_ms_per_structure_epoch', float('nan')):.1f} CPU-ms per structure-epoch")
    if record["model"]["deviations"]:
        print(f"deviations from the recipe: {record['model']['deviations']}")
    return 0


def _efficiency_command(args) -> int:
    from ..harness.config import FinetuneOptions
    from ..harness.efficiency import StudyPlan, run_study
    from ..report.efficiency import format_report, make_figures
    from .common import run_config

    if not args.figures_only:
        study = StudyPlan(approaches=args.approach, fractions=args.fractions, finetune_fractions=args.finetune_fractions,
                          subset_seeds=args.subset_seeds, head=args.head)
        finetune = FinetuneOptions(max_epochs=args.max_epochs, patience=args.patience,
                                   train_batch_size=args.train_batch_size, test_limit=args.test_limit)
        run_study(args.task, args.backbone, run_config(args, limit=args.limit, folds=args.folds), study=study,
                  finetune=finetune)
    report = make_figures(args.task, args.backbone, results_dir=args.results_dir, figures_dir=args.figures_dir)
    print(format_report(report))
    return 0
