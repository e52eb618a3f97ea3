"""A Matbench submission folder for one of our rows, in matbench's own layout.

``results.json.gz`` holds every task of the row in one ``MatbenchBenchmark`` (the test
predictions of the finished result files, recorded fold by fold through matbench's own
``task.record``), ``info.json`` the fields matbench's submission guide asks for (authors,
algorithm, algorithm_long, bibtex_refs, notes, requirements), and ``run.sh`` the commands that
produced it. :func:`write_submission` loads the file back with ``MatbenchBenchmark.from_file``
and returns matbench's own MAE per task next to ours, so the folder is checked when it is made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .results import read_result, result_path
from .config import DEFAULT_RESULTS_DIR

BIBTEX = ("@article{kim2025hacknip, title={Hacking neural interatomic potentials: frozen layer-wise embeddings as "
          "universal descriptors}, author={Kim, Park and Li}, year={2025}, note={MIT}}",
          "@article{dunn2020benchmarking, title={Benchmarking materials property prediction methods: the Matbench "
          "test set and Automatminer reference algorithm}, author={Dunn, Alexander and Wang, Qi and Ganose, Alex "
          "and Dopp, Daniel and Jain, Anubhav}, journal={npj Computational Materials}, volume={6}, pages={138}, "
          "year={2020}}")


def write_submission(out: str | os.PathLike, tasks: list[str], backbone: str, head: str, *,
                     results_dir: str | os.PathLike = DEFAULT_RESULTS_DIR, data_dir=None,
                     algorithm: str | None = None, algorithm_long: str = "", notes: str = "",
                     commands: list[str] | None = None) -> dict:
    """Write the submission of row ``<backbone>__<head>`` over ``tasks``; returns
    ``{task: {"ours": MAE, "matbench": MAE}}`` (matbench's score of the written file)."""
    import logging

    from matbench.bench import MatbenchBenchmark

    from ..tasks import get_task
    from .matbench_record import MatbenchRecord
    from hacknip_ase.provenance import run_versions

    out = Path(out)
    records, data = {}, {}
    for name in tasks:
        record = read_result(result_path(results_dir, name, backbone, head))
        if record["status"] != "complete":
            raise ValueError(f"{name}: {backbone}__{head} has {len(record['folds'])} of 5 folds; finish it first")
        if record.get("git", {}).get("dirty"):
            raise ValueError(f"{name}: {backbone}__{head} was run from a dirty tree; re-run it from committed code")
        data[name] = get_task(name).load(data_dir)
        records[name] = record
    matbench = MatbenchRecord(data, params={"backbone": backbone, "head": head})
    for name, record in records.items():
        matbench.record_folds(name, record["folds"])
    matbench.write(out / "results.json.gz")
    model = next(iter(records.values()))["model"]
    versions = run_versions()
    info = {
        "authors": "hacknip-ase",
        "algorithm": algorithm or f"hacknip-ase {backbone} {head}",
        "algorithm_long": algorithm_long,
        "bibtex_refs": list(BIBTEX),
        "notes": notes,
        "requirements": {"python": [f"{k}=={v}" for k, v in sorted(versions.items()) if v]},
        "hacknip_ase": {"model": model, "commits": sorted({r.get("git", {}).get("commit", "?") for r in records.values()}),
                        "result_files": {n: str(result_path("", n, backbone, head)) for n in tasks}},
    }
    (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    script = ["#!/usr/bin/env bash", "# The commands that produced this submission (from the repository root).",
              "set -euo pipefail", *(commands or [])]
    (out / "run.sh").write_text("\n".join(script) + "\n")
    logging.getLogger("matbench").setLevel(logging.ERROR)
    loaded = MatbenchBenchmark.from_file(str(out / "results.json.gz"))
    return {name: {"ours": records[name]["summary"]["mae"]["mean"],
                   "matbench": float(loaded.tasks_map[name].scores["mae"]["mean"])} for name in tasks}
