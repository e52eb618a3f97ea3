"""Result files: one JSON per run (task x model), written atomically after every fold.

Layout: ``<results_dir>/<task>/<backbone>__<head>.json`` (fine-tuning runs use the head name
``finetune``). Both the frozen-embedding harness (:mod:`.run`) and fine-tuning write through
:class:`ResultWriter`: open it with the run's identity, call :meth:`~ResultWriter.add_fold`
with each fold's test predictions and metrics, then :meth:`~ResultWriter.finish`. The file is
rewritten after each fold with ``status: "partial"``, so an interrupted run keeps its finished
folds and a re-run with the same identity resumes after them.

Schema (``schema: "hacknip-bench-result"``, ``schema_version: 1``)
-----------------------------------------------------------------
``task``       name, family, task_type, metrics (first = headline), split, n_rows, n_excluded,
               excluded (first 50 {id, stage, reason}), notes, target_names
``model``      kind ("frozen" | "finetune"), backbone (BackboneInfo.as_dict()), head, head_params,
               selection (how depths were chosen)
``identity``   sha256 of (task, model, seeds, limit): a resume only reuses folds of the same identity
``status``     "partial" | "complete"
``folds``      per fold: name, seed, n_train, n_valid, n_test, metrics, best_depths,
               selection_curve, seconds (per stage), ids, y_pred (P(class 1) for
               classification), notes; the true targets ``y_true`` go to the sidecar
               ``<name>.truth.json.gz`` (git-ignored: they are values of the datasets, which
               are never committed) and are merged back by :func:`read_result`
``summary``    per metric: mean, std (population, over folds), n_folds
``timing``     seconds per stage (load, featurize, folds, total; total is the sum over all
               sessions of this run, resumes included)
``seeds``, ``versions``, ``git`` (commit, dirty), ``hardware``, ``command``, ``created``, ``updated``
``matbench_results``  path of matbench's results.json.gz, relative to this file (Matbench only)
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hacknip_ase.files import atomic_write, json_default
from hacknip_ase.provenance import run_versions

SCHEMA = "hacknip-bench-result"
SCHEMA_VERSION = 1


def result_path(results_dir: str | os.PathLike, task: str, backbone: str, head: str) -> Path:
    return Path(results_dir) / task / f"{backbone}__{head}.json"


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write JSON atomically: readers never see half a file."""
    return atomic_write(path, (json.dumps(obj, indent=1, default=json_default) + "\n").encode())


def truth_path(path: str | os.PathLike) -> Path:
    """Sidecar holding the test folds' true targets (kept out of git: they are dataset values)."""
    path = Path(path)
    return path.with_name(path.stem + ".truth.json.gz")


def read_result(path: str | os.PathLike) -> dict:
    """A result record; folds get their ``y_true`` back when the truth sidecar is present."""
    record = json.loads(Path(path).read_text())
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a {SCHEMA} file")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {record.get('schema_version')} != {SCHEMA_VERSION}")
    sidecar = truth_path(path)
    if sidecar.is_file():
        truth = json.loads(gzip.decompress(sidecar.read_bytes()))
        for fold in record.get("folds", []):
            if fold["name"] in truth:
                fold.setdefault("y_true", truth[fold["name"]])
    return record


def write_result(path: str | os.PathLike, record: Mapping) -> Path:
    """Write a record: true targets to the sidecar (atomically), everything else to ``path``."""
    record = dict(record)
    folds = [dict(f) for f in record.get("folds", [])]
    truth = {f["name"]: f.pop("y_true") for f in folds if "y_true" in f}
    record["folds"] = folds
    if truth:
        atomic_write(truth_path(path), gzip.compress(json.dumps(truth).encode()))
    return write_json_atomic(path, record)


def iter_results(results_dir: str | os.PathLike) -> list[tuple[Path, dict]]:
    """Every readable result file under ``results_dir`` (sorted by path)."""
    found = []
    for path in sorted(Path(results_dir).glob("*/*.json")):
        try:
            found.append((path, read_result(path)))
        except (ValueError, json.JSONDecodeError):
            continue  # not ours (or a foreign JSON): the leaderboard lists only result files
    return found


def identity_hash(identity: Mapping) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=json_default).encode()).hexdigest()


def summarize(folds: Sequence[Mapping]) -> dict:
    """Mean and population std over folds of every metric that all folds report."""
    if not folds:
        return {}
    names = set(folds[0]["metrics"]).intersection(*(f["metrics"] for f in folds[1:]))
    out = {}
    for name in sorted(names):
        values = np.array([f["metrics"][name] for f in folds], dtype=float)
        out[name] = {"mean": float(values.mean()), "std": float(values.std()), "n_folds": len(values)}
    return out


class ResultWriter:
    """Accumulates folds of one run and keeps its JSON file up to date (and resumable).

    Parameters
    ----------
    path
        The result file (see :func:`result_path`).
    header
        ``task``, ``model``, ``seeds`` and anything else that describes the run. ``task``,
        ``model``, ``seeds``, ``limit`` and the embeddings' cache identity (``featurization``)
        form the identity that decides whether folds of an existing file may be reused.
    resume
        Reuse finished folds of an existing file with the same identity (default True).
    """

    def __init__(self, path: str | os.PathLike, header: Mapping, *, resume: bool = True) -> None:
        self.path = Path(path)
        identity = {k: header.get(k) for k in ("task", "model", "seeds", "limit")}
        embeddings = (header.get("featurization") or {}).get("cache_identity")
        if embeddings is not None:  # the same row on other embeddings (weights, options, release) is another run
            identity["embeddings"] = embeddings
        self.identity = identity_hash(identity)
        self.record = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, **header, "identity": self.identity,
            "status": "partial", "folds": [], "summary": {}, "timing": {},
            "versions": header.get("versions") or run_versions(), "git": git_info(), "hardware": hardware(),
            "created": _now(),
        }
        self.previous_seconds = 0.0
        if resume and self.path.is_file():
            try:
                old = read_result(self.path)
            except (ValueError, json.JSONDecodeError):
                old = None
            if old is not None and old.get("identity") == self.identity:
                self.record["folds"] = old["folds"]
                self.record["created"] = old.get("created", self.record["created"])
                self.previous_seconds = float(old.get("timing", {}).get("total", 0.0))
                self.record["resumed_from"] = {"folds": [f["name"] for f in old["folds"]],
                                               "seconds": self.previous_seconds}

    @property
    def done(self) -> set[str]:
        """Names of folds already finished (skipped on resume)."""
        return {f["name"] for f in self.record["folds"]}

    def fold(self, name: str) -> dict | None:
        return next((f for f in self.record["folds"] if f["name"] == name), None)

    def add_fold(self, name: str, *, metrics: Mapping[str, float], ids: Sequence[str], y_true, y_pred,
                 seed: int | None = None, n_train: int | None = None, n_valid: int = 0,
                 best_depths=None, selection_curve=None, seconds: Mapping[str, float] | None = None,
                 **extra) -> dict:
        """Record one finished fold and rewrite the file (status stays "partial")."""
        entry = {
            "name": name, "seed": seed, "n_train": n_train, "n_valid": n_valid, "n_test": len(ids),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "best_depths": best_depths, "selection_curve": selection_curve or [],
            "seconds": dict(seconds or {}), "ids": [str(i) for i in ids],
            "y_true": np.asarray(y_true, dtype=float).tolist(), "y_pred": np.asarray(y_pred, dtype=float).tolist(),
            **extra,
        }
        self.record["folds"] = [f for f in self.record["folds"] if f["name"] != name] + [entry]
        self.record["summary"] = summarize(self.record["folds"])
        self.save()
        return entry

    def finish(self, timing: Mapping[str, float], **extra) -> dict:
        """Mark the run complete with its per-stage wall times; returns the record."""
        timing = dict(timing)
        timing["total"] = float(timing.get("total", 0.0)) + self.previous_seconds
        self.record.update(extra)
        self.record.update(status="complete", timing=timing, summary=summarize(self.record["folds"]))
        self.save()
        return self.record

    def save(self) -> Path:
        self.record["updated"] = _now()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return write_result(self.path, self.record)


# -- featurization timings -------------------------------------------------------------------
FEATURIZATION_FILE = "featurization.json"


def record_featurization(results_dir: str | os.PathLike, task: str, backbone: str, *, n: int, seconds: float,
                         computed: int | None = None, skipped: int = 0, source: str = "hacknip-bench featurize") -> Path:
    """Add one cold-cache featurization timing to ``<results_dir>/featurization.json``.

    Runs usually find their embeddings in the cache (a second head on the same task costs no
    featurization), so their own ``timing.featurize`` is near zero; this file keeps what the
    featurization itself cost, per task and backbone.
    """
    path = Path(results_dir) / FEATURIZATION_FILE
    table = json.loads(path.read_text()) if path.is_file() else {
        "description": "cold-cache featurization wall time per task/backbone (runs read embeddings from the cache); "
                       "hardware is recorded when the entry is written", "entries": {}}
    table["entries"][f"{task}/{backbone}"] = {
        "task": task, "backbone": backbone, "n_structures": int(n), "computed": computed, "skipped": int(skipped),
        "seconds": float(seconds), "structures_per_second": float(n / seconds) if seconds else None,
        "hardware": hardware(), "git": git_info(), "source": source, "created": _now()}
    return write_json_atomic(path, table)


def read_featurization(results_dir: str | os.PathLike) -> dict:
    path = Path(results_dir) / FEATURIZATION_FILE
    return json.loads(path.read_text())["entries"] if path.is_file() else {}


# -- provenance ------------------------------------------------------------------------------
def git_info(root: str | os.PathLike | None = None) -> dict:
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        # Result files and figures under leaderboard/ are outputs, not code: a run that rewrites
        # them (resuming, or a study writing several files) does not make its own code dirty.
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)leaderboard"], cwd=root, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def hardware() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor() or None,
            "system": f"{platform.system()} {platform.release()}", "cpu_count": os.cpu_count(),
            "node": platform.node()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]  # a shared machine slows timings
    except OSError:
        pass
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # torch is optional for reading provenance
        info["cuda"] = None
    return info


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

