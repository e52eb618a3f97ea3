"""Fine-tune a backbone on a task's official folds and write a harness result file.

The counterpart of :func:`benchmarks.harness.run.run` for the fine-tuning baseline
(:class:`~benchmarks.harness.finetune.FineTuner`): same tasks, same splits, same metrics and the
same result format (model kind and head ``"finetune"``), so the leaderboard shows a fine-tuned
row beside the embedding rows. Per fold: early stopping uses a validation split carved from the
training rows only, the best checkpoint predicts the test rows, and the fold is written at once
(resumable), with its wall time, epochs and per-neuron update ratios.

A run may use a random fraction of each fold's training rows (the data-efficiency study): the
subset is drawn by :func:`training_subset` and the result goes to
``<results_dir>/<task>/efficiency/finetune__f<fraction>__s<seed>.json``, outside the leaderboard's
tables. ``test_limit`` scores a fixed random subset of each test fold (CPU smoke runs only; it is
recorded in the result and shown by the leaderboard). Whole-fold Matbench runs record every fold
in matbench's own objects as it finishes (:class:`~.matbench_record.MatbenchRecord`).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .matbench_record import MatbenchRecord, matbench_results_path, with_matbench_scores
from .results import ResultWriter, result_path
from .run import DEFAULT_RESULTS_DIR, DEFAULT_SEED, load_task, task_header

logger = logging.getLogger(__name__)

HEAD = "finetune"
#: Seed of the test-row subsample used when ``test_limit`` is set (same rows for every approach).
TEST_SUBSET_SEED = 12345
#: Fewest training rows a subset may have: 5-fold depth selection of the frozen approach and a
#: fine-tune (one row for early stopping) both need a handful.
MIN_SUBSET = 5
#: The recipe's hyper-parameters, i.e. the FineTuner defaults that a run records and compares against.
RECIPE_KEYS = ("lr_backbone", "lr_head", "weight_decay", "max_epochs", "patience", "batch_size", "val_fraction")


def paper_recipe() -> dict:
    """The fine-tuning recipe's hyper-parameters: the defaults of :class:`FineTuner`."""
    from .finetune import FineTuner

    defaults = inspect.signature(FineTuner.__init__).parameters
    return {k: defaults[k].default for k in RECIPE_KEYS}


def recipe_deviations(params: Mapping) -> dict:
    """``{name: {"used": v, "recipe": r}}`` for every hyper-parameter that differs from the recipe."""
    recipe = paper_recipe()
    return {k: {"used": params[k], "recipe": recipe[k]} for k in RECIPE_KEYS if params.get(k, recipe[k]) != recipe[k]}


def fraction_label(fraction: float | None) -> str:
    """``0.001`` -> ``"0.001"``, ``1.0`` -> ``"1"`` (file names and tables)."""
    return "1" if fraction is None else f"{fraction:g}"


def efficiency_path(results_dir, task: str, approach: str, fraction: float, seed: int) -> Path:
    """Result file of one data-efficiency run (kept out of the leaderboard's ``<task>/*.json``)."""
    return Path(results_dir) / task / "efficiency" / f"{approach}__f{fraction_label(fraction)}__s{seed}.json"


def training_subset(train: Sequence[int], fraction: float | None, seed: int | None) -> np.ndarray:
    """A random ``fraction`` of the training rows ``train`` (sorted row positions).

    Drawn only from ``train``: the first ``n`` rows of a permutation seeded by ``seed``, so for
    one seed the subsets are nested (0.1 % inside 1 % inside 10 %) and a curve over fractions
    changes one thing at a time. ``n = max(MIN_SUBSET, round(fraction * len(train)))``.
    ``fraction`` None or 1 returns every training row.
    """
    train = np.asarray(train, dtype=int)
    if fraction is None or fraction >= 1:
        return np.sort(train)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if seed is None:
        raise ValueError("a training fraction needs a subset seed")
    n = min(len(train), max(MIN_SUBSET, int(round(fraction * len(train)))))
    return np.sort(np.random.default_rng(seed).permutation(train)[:n])


def test_subset(test: Sequence[int], limit: int | None) -> np.ndarray:
    """The first ``limit`` rows of a fixed permutation of the test fold (all rows when None)."""
    test = np.asarray(test, dtype=int)
    if limit is None or limit >= len(test):
        return test
    return np.sort(np.random.default_rng(TEST_SUBSET_SEED).permutation(test)[:limit])


def select_folds(splits, folds: Sequence[str | int] | None) -> list:
    """Splits named in ``folds`` ("fold_0" or 0); all when None."""
    if folds is None:
        return list(splits)
    wanted = {f"fold_{f}" if isinstance(f, int) or str(f).isdigit() else str(f) for f in folds}
    chosen = [s for s in splits if s.name in wanted]
    missing = wanted - {s.name for s in chosen}
    if missing:
        raise ValueError(f"unknown folds {sorted(missing)}; the task has {[s.name for s in splits]}")
    return chosen


def subset_header(*, train_fraction=None, subset_seed=None, test_limit=None) -> dict:
    """The ``subset`` entry of a result's ``task`` block when a run uses part of each split."""
    if train_fraction is None and test_limit is None:
        return {}
    return {"subset": {"train_fraction": train_fraction, "subset_seed": subset_seed, "min_subset": MIN_SUBSET,
                       "test_limit": test_limit, "test_subset_seed": TEST_SUBSET_SEED if test_limit else None,
                       "rule": training_subset.__doc__.split("\n\n")[1].strip()}}


class _EpochBar:
    """FineTuner callback: one tqdm bar over epochs with the validation MAE."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="epoch", leave=False, disable=not enabled)

    def __call__(self, tuner, record) -> None:
        if record["epoch"] > 0:
            self.bar.update(1)
        self.bar.set_postfix(val_mae=f"{record['val_mae']:.4g}")

    def close(self) -> None:
        self.bar.close()


def run_finetune(task_name: str, backbone: str = "chgnet", *, folds: Sequence[str | int] | None = None,
                 max_epochs: int | None = None, patience: int | None = None, batch_size: int | None = None,
                 train_fraction: float | None = None, subset_seed: int | None = None, test_limit: int | None = None,
                 limit: int | None = None, seed: int = DEFAULT_SEED, data_dir=None,
                 results_dir: str | os.PathLike = DEFAULT_RESULTS_DIR, path: str | os.PathLike | None = None,
                 device: str = "cpu", resume: bool = True, progress: bool = True, command: str | None = None,
                 jobs: int = 1, checkpoint_dir: str | os.PathLike | None = None, data=None, nip=None) -> dict:
    """Fine-tune ``backbone`` on the folds of ``task_name``; returns the result record.

    ``max_epochs``, ``patience``, ``batch_size`` default to the recipe's; any other value is
    recorded as a deviation. ``train_fraction`` / ``subset_seed`` train on a random subset of each
    training fold; ``test_limit`` scores a fixed random subset of each test fold; ``limit``
    shrinks generated tasks. ``data`` / ``nip`` let a driver pass an already loaded task and built
    backbone. The record is ``complete`` only when every split of the task is done.

    Every fold trains with one torch thread; ``jobs`` > 1 trains that many folds at once in
    separate processes (one per core is fastest: two threads in one process are slower than two
    processes of one thread). Each fold checkpoints every epoch under ``checkpoint_dir`` (default
    ``$HACKNIP_CACHE_DIR/finetune``), so a killed run resumes at its last finished epoch.
    """
    from tqdm.auto import tqdm

    from hacknip_ase.backbones import get_backbone
    from hacknip_ase.weights import cache_dir

    from ..tasks import CLASSIFICATION, get_task
    from .results import run_versions

    torch_threads(1)
    start = time.perf_counter()
    task = get_task(task_name)
    if task.task_type == CLASSIFICATION:
        raise ValueError(f"fine-tuning is implemented for regression tasks; {task.name} is a classification task")
    timing: dict[str, float] = {}
    t = time.perf_counter()
    nip = nip if nip is not None else get_backbone(backbone, device=device)
    timing["backbone"] = time.perf_counter() - t
    t = time.perf_counter()
    if data is None:
        data = load_task(task, nip, data_dir=data_dir, limit=limit, progress=progress)
    timing["load"] = time.perf_counter() - t
    if data.inputs and isinstance(data.inputs[0], Mapping):
        raise ValueError(f"{task.name} has mixture inputs; fine-tuning takes one structure per row")
    if data.features is not None:
        raise ValueError(f"{task.name} has extra per-row features, which the fine-tuning head does not take")

    recipe = paper_recipe()
    params = {**recipe, **{k: v for k, v in {"max_epochs": max_epochs, "patience": patience,
                                              "batch_size": batch_size}.items() if v is not None}}
    deviations = recipe_deviations(params)
    if test_limit is not None:
        deviations["test_limit"] = {"used": test_limit, "recipe": "whole test fold"}
    header = {
        "task": task_header(task, data, **subset_header(train_fraction=train_fraction, subset_seed=subset_seed,
                                                        test_limit=test_limit)),
        "model": {"kind": "finetune", "backbone": nip.info.as_dict(), "head": HEAD,
                  "head_params": {**params, "head": "dim -> 128 -> 128 -> 1 SiLU, Xavier-uniform, zero bias"},
                  "recipe": recipe, "deviations": deviations,
                  "selection": {"candidates": "last message-passing layer (not selected)",
                                "early_stopping": f"validation split of {params['val_fraction']:g} of the training "
                                                  "rows, best checkpoint restored"}},
        "seeds": {"finetune": seed, "subset": subset_seed,
                  "split": sorted({s.seed for s in task.splits(data)} - {None})},
        "limit": limit,
        "versions": run_versions(),
        "command": command,
        "threads": {"torch_per_process": 1, "processes": int(jobs)},
    }
    if path is None:
        path = (result_path(results_dir, task.name, backbone, HEAD) if train_fraction is None
                else efficiency_path(results_dir, task.name, HEAD, train_fraction, subset_seed))
    writer = ResultWriter(path, header, resume=resume)
    matbench = None
    if task.family == "matbench" and train_fraction is None and test_limit is None:  # whole folds only
        info = header["model"]["backbone"]
        matbench = MatbenchRecord({task.name: data}, params={"backbone": info["name"], "model": info["model"],
                                                              "head": HEAD})
        matbench.record_folds(task.name, writer.record["folds"])
    all_splits = list(task.splits(data))
    todo = [s for s in select_folds(all_splits, folds) if s.name not in writer.done]
    checkpoints = Path(checkpoint_dir) if checkpoint_dir is not None else cache_dir() / "finetune"
    job = FoldJob(task_name=task.name, backbone=backbone, device=device, seed=seed, params=params,
                  train_fraction=train_fraction, subset_seed=subset_seed, test_limit=test_limit, limit=limit,
                  data_dir=data_dir, checkpoint_stem=str(checkpoints / task.name / Path(path).stem), progress=progress)
    fold_seconds = 0.0
    bar = tqdm(total=len(todo), desc=f"{task.name} {backbone} finetune", unit="fold", disable=not progress)
    for name, fold in _run_folds(job, todo, data, nip, jobs):
        if matbench is not None:
            fold["metrics"] = with_matbench_scores(fold["metrics"], matbench.record(task.name, name, fold["ids"],
                                                                                   fold["y_pred"]))
        writer.add_fold(name, **fold)
        fold_seconds += fold["seconds"]["total"]
        Path(job.checkpoint(name)).unlink(missing_ok=True)  # the fold is in the result file now
        bar.update(1)
    bar.close()
    order = {s.name: k for k, s in enumerate(all_splits)}
    writer.record["folds"].sort(key=lambda f: order.get(f["name"], len(order)))
    timing["folds"] = fold_seconds
    timing["total"] = time.perf_counter() - start
    finished = writer.done >= {s.name for s in all_splits}
    extra = {}
    if finished and matbench is not None:
        extra["matbench_results"] = matbench.write(matbench_results_path(path)).name
    if finished:
        return writer.finish(timing, **extra)
    # only some folds ran (smoke / CPU-limited runs): keep status "partial" so no table shows
    # it as a full 5-fold result; the timing is still recorded.
    writer.record["timing"] = {**timing, "total": timing["total"] + writer.previous_seconds}
    writer.save()
    return writer.record


def torch_threads(n: int) -> None:
    """One torch (and BLAS) thread per process: on a few shared cores, more is slower."""
    import torch

    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))


@dataclass(frozen=True)
class FoldJob:
    """What a process needs to fine-tune one fold on its own (picklable for worker processes)."""

    task_name: str
    backbone: str
    device: str
    seed: int
    params: dict
    train_fraction: float | None
    subset_seed: int | None
    test_limit: int | None
    limit: int | None
    data_dir: str | None
    checkpoint_stem: str
    progress: bool

    def checkpoint(self, split_name: str) -> str:
        return f"{self.checkpoint_stem}__{split_name}.pt"


def _run_folds(job: FoldJob, splits, data, nip, jobs: int):
    """Yield ``(split name, add_fold keywords)`` as folds finish: here, or in ``jobs`` processes."""
    if jobs <= 1 or len(splits) <= 1:
        for split in splits:
            yield split.name, finetune_fold(job, data, nip, split)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no forked torch state
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=torch_threads,
                             initargs=(1,)) as pool:
        futures = [pool.submit(_fold_in_worker, job, split.name) for split in splits]
        for future in as_completed(futures):
            yield future.result()


def _fold_in_worker(job: FoldJob, split_name: str) -> tuple[str, dict]:
    from hacknip_ase.backbones import get_backbone

    from ..tasks import get_task

    task = get_task(job.task_name)
    nip = get_backbone(job.backbone, device=job.device)
    data = load_task(task, nip, data_dir=job.data_dir, limit=job.limit, progress=False)
    split = next(s for s in task.splits(data) if s.name == split_name)
    return split_name, finetune_fold(job, data, nip, split)


def finetune_fold(job: FoldJob, data, nip, split) -> dict:
    """Fine-tune on one split's training rows (validation carved from them), score its test rows."""
    from ..tasks import get_task
    from .finetune import FineTuner

    task = get_task(job.task_name)
    targets = np.asarray(data.targets, dtype=float)
    t_fold, cpu_fold = time.perf_counter(), time.process_time()
    train = training_subset(split.train, job.train_fraction, job.subset_seed)
    test = test_subset(split.test, job.test_limit)
    bar = _EpochBar(job.params["max_epochs"], f"{split.name} (n_train={len(train)})", job.progress)
    tuner = FineTuner(nip, device=job.device, seed=job.seed, callback=bar, checkpoint=job.checkpoint(split.name),
                      **{k: job.params[k] for k in RECIPE_KEYS})
    try:
        tuner.fit([data.inputs[i] for i in train], targets[train])  # validation carved from train
    finally:
        bar.close()
    t, cpu = time.perf_counter(), time.process_time()
    y_pred = tuner.predict([data.inputs[i] for i in test])
    predict_seconds, predict_cpu = time.perf_counter() - t, time.process_time() - cpu
    ratios = tuner.update_ratios()
    epochs = tuner.history_[1:]
    n_fit = len(train) - max(1, int(round(job.params["val_fraction"] * len(train))))
    seconds = {"fit": tuner.fit_time_, "setup": tuner.history_[0]["seconds"],
               "epoch_mean": float(np.mean([h["seconds"] for h in epochs])) if epochs else 0.0,
               "predict": predict_seconds, "total": time.perf_counter() - t_fold,
               "cpu_fit": tuner.fit_cpu_time_, "cpu_predict": predict_cpu,
               "cpu_epoch_mean": float(np.mean([h["cpu_seconds"] for h in epochs])) if epochs else 0.0,
               "cpu_total": time.process_time() - cpu_fold}
    # CPU-ms per training structure per epoch (an epoch's time covers its training steps, not the validation pass)
    seconds["cpu_ms_per_structure_epoch"] = 1000 * seconds["cpu_epoch_mean"] / max(1, n_fit)
    return dict(
        metrics=task.score_split(data, replace(split, train=train, test=test), y_pred), ids=[data.ids[i] for i in test],
        y_true=targets[test], y_pred=y_pred, seed=split.seed, n_train=len(train), n_valid=len(split.valid),
        best_depths=[nip.info.n_depths - 1], seconds=seconds,
        training={"n_epochs": tuner.n_epochs_, "best_epoch": tuner.best_epoch_,
                  "stopped_early": tuner.stopped_early_, "best_val_loss": tuner.best_val_loss_,
                  "resumed_from_epoch": tuner.resumed_from_,
                  "history": [_finite(h) for h in tuner.history_]},
        train_ids=[data.ids[i] for i in train] if job.train_fraction is not None else None,
        update_ratios={k: _ratio_record(v) for k, v in ratios.items()})


def _finite(record: dict) -> dict:
    """NaN (epoch 0 has no training loss) -> None: result files stay standard JSON."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in record.items()}


def _ratio_record(values: np.ndarray) -> dict:
    """Summary and the values themselves (float32 precision: for the distribution figure)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {"n": 0, "values": []}
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"n": int(values.size), "mean": float(values.mean()), "quantiles_5_25_50_75_95": q.tolist(),
            "values": [float(v) for v in values.astype(np.float32)]}


# -- command line ----------------------------------------------------------------------------
def add_commands(commands) -> None:
    """Register ``finetune`` and ``efficiency`` on ``hacknip-bench``'s subparsers."""
    one = commands.add_parser("finetune", help="fine-tune a backbone on a task's folds (the baseline); "
                                               "writes <task>/<backbone>__finetune.json")
    one.add_argument("--task", required=True)
    one.add_argument("--backbone", default="chgnet")
    one.add_argument("--folds", type=_fold_list, default=None, help="comma list, e.g. 0,1 (default: all)")
    one.add_argument("--max-epochs", type=int, default=None, help="default: the recipe's (recorded if changed)")
    one.add_argument("--patience", type=int, default=None)
    one.add_argument("--batch-size", type=int, default=None)
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
    eff.add_argument("--batch-size", type=int, default=None)
    eff.add_argument("--test-limit", type=int, default=None)
    eff.add_argument("--limit", type=int, default=None)
    eff.add_argument("--cache-dir", default=None, help="embedding cache root (default: the user cache)")
    eff.add_argument("--figures-dir", default="leaderboard/figures")
    eff.add_argument("--figures-only", action="store_true", help="redraw the figures from existing results")
    _common(eff)
    eff.set_defaults(run=_efficiency_command)


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


def _command_line() -> str:
    import shlex
    import sys

    return "hacknip-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _finetune_command(args) -> int:
    from ..leaderboard import format_row

    record = run_finetune(args.task, args.backbone, folds=args.folds, max_epochs=args.max_epochs,
                          patience=args.patience, batch_size=args.batch_size, train_fraction=args.fraction,
                          subset_seed=args.subset_seed if args.fraction is not None else None,
                          test_limit=args.test_limit, limit=args.limit, seed=args.seed, data_dir=args.data_dir,
                          results_dir=args.results_dir, device=args.device, resume=not args.no_resume,
                          progress=not args.quiet, command=_command_line(), jobs=args.jobs)
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
    from . import efficiency

    options = {"results_dir": args.results_dir, "figures_dir": args.figures_dir}
    if not args.figures_only:
        efficiency.run_study(args.task, args.backbone, approaches=args.approach, fractions=args.fractions,
                             finetune_fractions=args.finetune_fractions, subset_seeds=args.subset_seeds,
                             folds=args.folds, head=args.head, max_epochs=args.max_epochs, patience=args.patience,
                             batch_size=args.batch_size, test_limit=args.test_limit, limit=args.limit, data_dir=args.data_dir,
                             cache_dir=args.cache_dir, device=args.device, resume=not args.no_resume,
                             progress=not args.quiet, command=_command_line(), **options)
    report = efficiency.make_figures(args.task, args.backbone, **options)
    print(efficiency.format_report(report))
    return 0
