"""Fine-tune a backbone on a task's official folds and write a harness result file.

The counterpart of :func:`benchmarks.harness.run.run` for the fine-tuning baseline
(:class:`~benchmarks.harness.finetune.FineTuner`): same tasks, same splits, same metrics and the
same result format (model kind and head ``"finetune"``), so the leaderboard shows a fine-tuned
row beside the embedding rows. Per fold: early stopping uses a validation split carved from the
training rows only, the best checkpoint predicts the test rows, and the fold is written at once
(resumable), with its wall time, epochs and per-neuron update ratios.

A run may use a random fraction of each fold's training rows (the data-efficiency study): the
subset is drawn by :func:`~.subsets.training_subset` and the result goes to
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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .config import FinetuneOptions, RunConfig
from .matbench_record import MatbenchRecord, matbench_results_path, with_matbench_scores
from .results import ResultWriter, result_path
from .run import load_task, task_header
from .subsets import efficiency_path, select_folds, subset_header, test_subset, training_subset

logger = logging.getLogger(__name__)

HEAD = "finetune"
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


class _EpochBar:
    """FineTuner callback: one tqdm bar over epochs with the validation MAE."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="epoch", leave=False, disable=not enabled)

    def __call__(self, tuner, record) -> None:
        if tuner.resumed_from_ and self.bar.n < tuner.resumed_from_:  # continue (and rate) from the checkpoint
            self.bar.initial = self.bar.n = tuner.resumed_from_
        if record["epoch"] > 0:
            self.bar.update(1)
        self.bar.set_postfix(val_mae=f"{record['val_mae']:.4g}")

    def close(self) -> None:
        self.bar.close()


def run_finetune(task_name: str, backbone: str = "chgnet", config: RunConfig = RunConfig(), *,
                 options: FinetuneOptions = FinetuneOptions(), path: str | os.PathLike | None = None,
                 data=None, nip=None) -> dict:
    """Fine-tune ``backbone`` on the folds of ``task_name``; returns the result record.

    ``options.max_epochs``, ``patience``, ``train_batch_size`` default to the recipe's; any other
    value is recorded as a deviation. ``options.train_fraction`` / ``subset_seed`` train on a
    random subset of each training fold; ``test_limit`` scores a fixed random subset of each test
    fold; ``config.limit`` shrinks generated tasks. ``path`` overrides the result file; ``data`` /
    ``nip`` let a driver pass an already loaded task and built backbone. The record is
    ``complete`` only when every split of the task is done.

    Every fold trains with one torch thread; ``options.jobs`` > 1 trains that many folds at once in
    separate processes (one per core is fastest: two threads in one process are slower than two
    processes of one thread). Each fold checkpoints every epoch under ``options.checkpoint_dir``
    (default ``$HACKNIP_CACHE_DIR/finetune``), so a killed run resumes at its last finished epoch.
    """
    from tqdm.auto import tqdm

    from hacknip_ase.backbones import get_backbone
    from hacknip_ase.files import cache_dir

    from ..tasks import CLASSIFICATION, get_task
    from hacknip_ase.provenance import run_versions

    c, o = config, options
    seed, progress = c.seed, c.progress
    train_fraction, subset_seed, test_limit = o.train_fraction, o.subset_seed, o.test_limit
    torch_threads(1)
    start = time.perf_counter()
    task = get_task(task_name)
    if task.task_type == CLASSIFICATION:
        raise ValueError(f"fine-tuning is implemented for regression tasks; {task.name} is a classification task")
    timing: dict[str, float] = {}
    t = time.perf_counter()
    nip = nip if nip is not None else get_backbone(backbone, device=c.device)
    timing["backbone"] = time.perf_counter() - t
    t = time.perf_counter()
    if data is None:
        data = load_task(task, nip, data_dir=c.data_dir, limit=c.limit, progress=progress)
    timing["load"] = time.perf_counter() - t
    if data.inputs and isinstance(data.inputs[0], Mapping):
        raise ValueError(f"{task.name} has mixture inputs; fine-tuning takes one structure per row")
    if data.features is not None:
        raise ValueError(f"{task.name} has extra per-row features, which the fine-tuning head does not take")

    recipe = paper_recipe()
    params = {**recipe, **{k: v for k, v in {"max_epochs": o.max_epochs, "patience": o.patience,
                                              "batch_size": o.train_batch_size}.items() if v is not None}}
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
        "limit": c.limit,
        "versions": run_versions(),
        "command": c.command,
        "threads": {"torch_per_process": 1, "processes": int(o.jobs)},
    }
    if path is None:
        path = (result_path(c.results_dir, task.name, backbone, HEAD) if train_fraction is None
                else efficiency_path(c.results_dir, task.name, HEAD, train_fraction, subset_seed))
    writer = ResultWriter(path, header, resume=c.resume)
    matbench = None
    if task.family == "matbench" and train_fraction is None and test_limit is None:  # whole folds only
        info = header["model"]["backbone"]
        matbench = MatbenchRecord({task.name: data}, params={"backbone": info["name"], "model": info["model"],
                                                              "head": HEAD})
        matbench.record_folds(task.name, writer.record["folds"])
    all_splits = list(task.splits(data))
    todo = [s for s in select_folds(all_splits, c.folds) if s.name not in writer.done]
    checkpoints = Path(o.checkpoint_dir) if o.checkpoint_dir is not None else cache_dir() / "finetune"
    job = FoldJob(task_name=task.name, backbone=backbone, device=c.device, seed=seed, params=params,
                  train_fraction=train_fraction, subset_seed=subset_seed, test_limit=test_limit, limit=c.limit,
                  data_dir=c.data_dir, checkpoint_stem=str(checkpoints / task.name / Path(path).stem),
                  progress=progress)
    fold_seconds = 0.0
    bar = tqdm(total=len(todo), desc=f"{task.name} {backbone} finetune", unit="fold", disable=not progress)
    for name, fold in _run_folds(job, todo, data, nip, o.jobs):
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
