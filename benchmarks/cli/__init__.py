"""``hacknip-bench``: benchmark command line.

``tasks`` lists the tasks and their data; ``run`` runs one task x backbone x head; ``suite`` runs
a suite file; ``leaderboard`` renders leaderboard/README.md and its figures from the result
files; ``quickstart`` runs the whole pipeline on a small generated task and prints its row;
``finetune`` and ``efficiency`` (:mod:`.finetune`) run the fine-tuning baseline and the
data-efficiency study.
"""

from __future__ import annotations

import json
import time

from hacknip_ase.choices import HEAD_NAMES, RELAX_RECIPES

from ..data import DATA_ENV, resolve_data_dir
from ..harness.recipe import CANDIDATES, DESCRIPTORS, PRESETS
from .common import command_line, run_config


def _tasks(args) -> int:
    from tabulate import tabulate

    from ..tasks import all_tasks

    root = resolve_data_dir(args.data_dir)
    rows = []
    for task in all_tasks():
        present = task.is_present(root)
        size = "-"
        if present:
            try:
                size = task.count(root)
            except Exception as exc:  # the table must still list the task; the reason is shown
                size, present = f"error: {type(exc).__name__}: {exc}"[:60], False
        rows.append([task.name, task.family, task.task_type, size,
                     task.literature_size if task.literature_size is not None else "?",
                     ", ".join(task.metrics), task.split_description,
                     "yes" if present else f"missing ({task.files[0].path})"])
    print(f"data folder: {root}")
    print(tabulate(rows, headers=["task", "family", "type", "n", "n (literature)", "metrics", "split", "data"]))
    return 0


def _head_params(pairs) -> dict:
    """``["n_estimators=50", "hidden_layer_sizes=[64]"]`` -> dict (values parsed as JSON when they can be)."""
    params = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _frozen_options(args, **fields):
    from ..harness.config import FrozenOptions

    return FrozenOptions(inner_cv=args.inner_cv, holdout=args.holdout,
                         featurize_batch_size=args.featurize_batch_size, **fields)


def _run(args) -> int:
    from ..harness.recipe import recipe_for
    from ..harness.run import run
    from ..report.rows import format_row

    recipe = recipe_for(args.head, descriptors=tuple(args.features or ()), candidates=args.candidates,
                        transform=args.transform, tune_trials=args.tune, tune_cpu_budget=args.tune_cpu)
    record = run(args.task, args.backbone, args.head, run_config(args, seed=args.seed, limit=args.limit, folds=args.fold),
                 recipe=recipe, head_params=_head_params(args.head_param) or None,
                 options=_frozen_options(args, **({"relax": args.relax} if args.relax else {})))
    print(format_row(record))
    return 0


def _suite(args) -> int:
    from ..harness.suite import read_suite, run_suite

    suite = read_suite(args.file)
    summaries = run_suite(suite, run_config(args, seed=args.seed), _frozen_options(args), relax=args.relax,
                          tasks=args.task, backbones=args.backbone, heads=args.head, keep_going=not args.fail_fast)
    failed = 0
    for s in summaries:
        spec = s["run"]
        extra = {k: v for k, v in s.items() if k not in ("run", "status")}
        print(f"{spec.task:24s} {spec.backbone:9s} {spec.head:8s} {s['status']:9s} {extra}")
        failed += s["status"] == "failed"
    return 1 if failed else 0


def _featurize(args) -> int:
    """Featurize whole tasks into the cache and record the cold featurization time."""
    from hacknip_ase.backbones import get_backbone

    from ..harness.results import record_featurization
    from ..harness.run import embed, load_task
    from ..tasks import get_task

    for backbone in args.backbone:
        nip = get_backbone(backbone, device=args.device)
        for name in args.task:
            task = get_task(name)
            data = load_task(task, nip, data_dir=args.data_dir, relax=args.relax or "backbone",
                             progress=not args.quiet)
            start = time.perf_counter()
            X, present, meta = embed(data, nip, cache_dir=args.cache_dir,
                                     featurize_batch_size=args.featurize_batch_size, progress=not args.quiet)
            seconds = time.perf_counter() - start
            n = len(data.molecules) if data.molecules else len(data)
            record_featurization(args.results_dir, name, backbone, n=n, seconds=seconds, skipped=len(meta["skipped"]))
            print(f"{name:24s} {backbone:9s} {n} structures in {seconds:.0f} s ({len(meta['skipped'])} skipped)")
    return 0


def _leaderboard(args) -> int:
    from ..report.leaderboard import render

    out = render(args.results_dir, args.out, data_dir=args.data_dir, suite=args.suite,
                 figures=not args.no_figures)
    print(f"wrote {out}")
    return 0


def _quickstart(args) -> int:
    """The whole pipeline on the generated EMT alloy task; prints its leaderboard row."""
    import tempfile

    from ..harness.config import RunConfig
    from ..harness.run import run
    from ..report.rows import format_row

    start = time.perf_counter()
    results = args.results_dir or tempfile.mkdtemp(prefix="hacknip-quickstart-")
    print(f"quickstart: {args.n} generated EMT alloy cells -> {args.backbone} embeddings (all depths) -> "
          f"depth chosen by inner CV on each training fold -> {args.head} head, 5 folds", flush=True)
    config = RunConfig(limit=args.n, results_dir=results, cache_dir=args.cache_dir, device=args.device,
                       progress=not args.quiet, resume=False, command="hacknip-bench quickstart")
    record = run("synthetic_emt_alloys", args.backbone, args.head, config,
                 head_params={"n_estimators": 200} if args.head == "xgboost" else None)
    print(format_row(record))
    print(f"result file: {results}/synthetic_emt_alloys/{args.backbone}__{args.head}.json "
          f"({time.perf_counter() - start:.0f} s in all)")
    return 0


def _export_heads(args) -> int:
    from hacknip_ase.pretrained import describe

    from ..harness.export import export_heads

    export_heads(args.out, args.backbone, tasks=args.task, results_dir=args.results_dir, data_dir=args.data_dir,
                 cache_dir=args.cache_dir, progress=not args.quiet)
    print(describe(args.backbone, args.out))
    return 0


def _submission(args) -> int:
    from ..harness.recipe import PRESETS
    from ..harness.submission import write_submission
    from ..tasks.matbench import OFFLINE_TASKS

    tasks = args.task or list(OFFLINE_TASKS)
    preset = args.head in PRESETS
    commands = [f"hacknip-bench run --task {t} --backbone {args.backbone} --head {args.head}" for t in tasks]
    commands.append(command_line())
    scores = write_submission(
        args.out, tasks, args.backbone, args.head, results_dir=args.results_dir, data_dir=args.data_dir,
        algorithm=f"hacknip-{args.head} ({args.backbone})" if preset else None,
        algorithm_long=_algorithm_long(args.backbone, args.head),
        commands=commands)
    for task, pair in scores.items():
        print(f"{task:24s} ours {pair['ours']:.6g}  matbench {pair['matbench']:.6g}")
    print(f"wrote {args.out}")
    return 0


def _algorithm_long(backbone: str, head: str) -> str:
    from ..harness.recipe import recipe_for

    recipe = recipe_for(head)
    extra = f" plus {', '.join(recipe.descriptors)} descriptors (matminer)" if recipe.descriptors else ""
    return (f"Frozen {backbone} neural interatomic potential: the per-atom features after every message-passing "
            f"layer, mean-pooled per depth{extra}, and a shallow {recipe.head} head. Per outer fold, every choice "
            f"is made by inner cross-validation on the training fold only: feature family ({recipe.candidates}), "
            f"target transform ({recipe.transform or 'none'}), and {recipe.tune_trials} Optuna trials of the "
            f"head's hyperparameters (at most {recipe.tune_cpu_budget} CPU-s). Code: hacknip-ase "
            f"(`hacknip-bench run --head {head}`).")


def _analyze(args) -> int:
    from ..report.analysis import analyze_depth

    summary = analyze_depth(args.results_dir, args.out, data_dir=args.data_dir, backbones=args.backbone,
                            umap_max=args.umap_max, jsd_structures=args.jsd_structures, bins=args.bins,
                            cache_dir=args.cache_dir, progress=not args.quiet)
    for backbone, entry in summary["backbones"].items():
        print(f"{backbone}: best depth per task {entry['best_depth']}")
    print(f"wrote {args.out}/README.md in {summary['seconds']['wall']:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    from hacknip_ase.cli import OneLineParser, run_command

    parser = OneLineParser(prog="hacknip-bench", description=__doc__)
    parser.add_argument("--data-dir", default=None,
                        help=f"benchmark data folder (default: ${DATA_ENV}, else the user cache)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    listing = commands.add_parser("tasks", help="list every task with its size, metrics, split and data")
    listing.set_defaults(run=_tasks)

    def run_arguments(p):
        p.add_argument("--results-dir", default="leaderboard/results", help="where result files go")
        p.add_argument("--cache-dir", default=None, help="embedding cache root (default: the user cache)")
        p.add_argument("--seed", type=int, default=0, help="seed of the heads and of depth selection")
        p.add_argument("--inner-cv", type=int, default=None, help="inner folds for depth selection (default: by size)")
        p.add_argument("--holdout", type=float, default=None, help="select depth on one hold-out fraction instead")
        p.add_argument("--device", default="cpu")
        featurize_batch_argument(p)
        p.add_argument("--no-resume", action="store_true", help="redo finished folds of an existing result file")
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
        relax_argument(p)

    def featurize_batch_argument(p):
        p.add_argument("--featurize-batch-size", "--batch-size", dest="featurize_batch_size", type=int, default=32,
                       metavar="N", help="structures per featurization batch (--batch-size: the same option)")

    def relax_argument(p):
        p.add_argument("--relax", choices=RELAX_RECIPES, default=None,
                       help="molecule geometries: relaxed with the backbone (default), an RDKit force field, "
                            "or ETKDG only")

    one = commands.add_parser("run", help="one task x backbone x head: featurize, select depth, fit, score")
    one.add_argument("--task", required=True)
    one.add_argument("--backbone", default="chgnet")
    one.add_argument("--head", default="xgboost", choices=HEAD_NAMES + tuple(PRESETS),
                     help="the head, or a preset pipeline ('auto': hacknip-auto, every choice by inner CV)")
    one.add_argument("--head-param", action="append", metavar="KEY=VALUE", help="head parameter (JSON value)")
    one.add_argument("--features", action="append", choices=DESCRIPTORS,
                     help="add a descriptor source, or another NIP's embeddings (multi-NIP), beside the embeddings (repeatable)")
    one.add_argument("--candidates", choices=CANDIDATES, default=None,
                     help="feature families depth selection scores (default: single depths)")
    one.add_argument("--transform", default=None,
                     help="target transform: log10, log1p, ln, neglog1m, or 'auto' (chosen by inner CV)")
    one.add_argument("--tune", type=int, default=None, metavar="TRIALS",
                     help="Optuna trials of the head's hyperparameters on the inner splits (xgboost, modnet)")
    one.add_argument("--tune-cpu", type=float, default=None, metavar="SECONDS",
                     help="CPU-second budget of the search per training part")
    one.add_argument("--limit", type=int, help="rows of generated / MoleculeNet tasks (smoke runs)")
    one.add_argument("--fold", action="append", help="run only this split (repeatable; smoke runs)")
    run_arguments(one)
    one.set_defaults(run=_run)

    many = commands.add_parser("suite", help="every run of a suite file (TOML), resuming finished folds")
    many.add_argument("file", nargs="?", default="benchmarks/suites/offline.toml")
    many.add_argument("--task", action="append", help="only this task (repeatable)")
    many.add_argument("--backbone", action="append", help="only this backbone (repeatable)")
    many.add_argument("--head", action="append", help="only this head (repeatable)")
    many.add_argument("--fail-fast", action="store_true", help="stop at the first failing run")
    run_arguments(many)
    many.set_defaults(run=_suite)

    feat = commands.add_parser("featurize", help="featurize whole tasks into the cache; record the cold time")
    feat.add_argument("--task", action="append", required=True)
    feat.add_argument("--backbone", action="append", required=True)
    feat.add_argument("--results-dir", default="leaderboard/results")
    feat.add_argument("--cache-dir", default=None)
    feat.add_argument("--device", default="cpu")
    featurize_batch_argument(feat)
    feat.add_argument("--quiet", "-q", action="store_true")
    relax_argument(feat)
    feat.set_defaults(run=_featurize)

    board = commands.add_parser("leaderboard", help="render leaderboard/README.md and figures from result files")
    board.add_argument("--results-dir", default="leaderboard/results")
    board.add_argument("--out", default="leaderboard/README.md")
    board.add_argument("--suite", default="benchmarks/suites/offline.toml", help="suite file with not-run reasons")
    board.add_argument("--no-figures", action="store_true")
    board.set_defaults(run=_leaderboard)

    analyze = commands.add_parser("analyze", help="analyses across result files; 'depth': the paper's depth "
                                                  "analysis (nMAE heatmap, UMAP, JSD, collapse)")
    analyze.add_argument("what", choices=["depth"])
    analyze.add_argument("--results-dir", default="leaderboard/results")
    analyze.add_argument("--out", default="leaderboard/analysis", help="folder of README.md and figures/")
    analyze.add_argument("--backbone", action="append", help="only this backbone (repeatable)")
    analyze.add_argument("--umap-max", type=int, default=2000, help="structures per Matbench task in the UMAPs")
    analyze.add_argument("--jsd-structures", type=int, default=150, help="structures per task for the JSD")
    analyze.add_argument("--bins", type=int, default=50, help="histogram bins of the JSD estimator")
    analyze.add_argument("--cache-dir", default=None)
    analyze.add_argument("--quiet", "-q", action="store_true")
    analyze.set_defaults(run=_analyze)

    export = commands.add_parser("export-heads", help="rebuild the shipped property heads (hacknip_ase/pretrained) "
                                                      "from the benchmark data and leaderboard")
    export.add_argument("--backbone", default="chgnet")
    export.add_argument("--task", action="append", help="only this task (repeatable)")
    export.add_argument("--results-dir", default="leaderboard/results")
    export.add_argument("--out", default="hacknip_ase/pretrained/heads")
    export.add_argument("--cache-dir", default=None)
    export.add_argument("--quiet", "-q", action="store_true")
    export.set_defaults(run=_export_heads)

    sub = commands.add_parser("submission", help="a Matbench submission folder (results.json.gz, info.json, run.sh) "
                                                 "for one row, checked by matbench's own scoring")
    sub.add_argument("--backbone", default="chgnet")
    sub.add_argument("--head", default="auto", help="the row's head or preset (file stem after '__')")
    sub.add_argument("--task", action="append", help="only this task (repeatable; default: the six offline tasks)")
    sub.add_argument("--results-dir", default="leaderboard/results")
    sub.add_argument("--out", default="leaderboard/submission_hacknip_auto")
    sub.set_defaults(run=_submission)

    quick = commands.add_parser("quickstart", help="the whole pipeline on a generated EMT alloy task (offline, minutes)")
    quick.add_argument("--backbone", default="chgnet")
    quick.add_argument("--head", default="xgboost", choices=HEAD_NAMES)
    quick.add_argument("--n", type=int, default=200, help="generated cells (default 200)")
    quick.add_argument("--results-dir", default=None, help="default: a new temporary folder")
    quick.add_argument("--cache-dir", default=None)
    quick.add_argument("--device", default="cpu")
    quick.add_argument("--quiet", "-q", action="store_true")
    quick.set_defaults(run=_quickstart)

    # `finetune` and `efficiency`: the fine-tuning baseline and the data-efficiency study
    from .finetune import add_commands as add_finetune_commands

    add_finetune_commands(commands)
    args = parser.parse_args(argv)
    return run_command(f"hacknip-bench {args.command}", args.run, args)

