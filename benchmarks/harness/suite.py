"""Suite files: many task x backbone x head runs in one TOML file (``benchmarks/suites/``).

``[[run]]`` tables give ``tasks``, ``backbones`` and ``heads`` lists (their product is run, in
order); an optional ``head_params`` table maps a head name to its parameters, an optional
``relax`` names the molecule geometry recipe (``hacknip_ase.molecules.RECIPES``). A head may be a
preset (``"auto"``), and ``features`` (descriptor sources), ``candidates``, ``transform``,
``tune_trials`` and ``tune_cpu_budget`` set the recipe of every head of the block
(:class:`~.recipe.Recipe`). ``[not_run]`` maps
a task (or "task:head", for one head) to the reason it has no row yet, which the leaderboard prints.
"""

from __future__ import annotations

import logging
import os
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import FrozenOptions, RunConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    task: str
    backbone: str
    head: str
    head_params: dict = field(default_factory=dict)
    relax: str | None = None  #: molecule geometry recipe; None: run()'s default
    recipe: dict = field(default_factory=dict)  #: Recipe options (features -> descriptors, ...)

    def make_recipe(self):
        from .recipe import recipe_for

        return recipe_for(self.head, **self.recipe)


@dataclass
class Suite:
    runs: list[RunSpec]
    not_run: dict[str, str]


def read_suite(path: str | os.PathLike) -> Suite:
    spec = tomllib.loads(Path(path).read_text())
    runs, seen = [], set()
    for block in spec.get("run", []):
        params = block.get("head_params", {})
        recipe = {key: block[key] for key in ("candidates", "transform", "tune_trials", "tune_cpu_budget")
                  if key in block}
        if "features" in block:
            recipe["descriptors"] = tuple(block["features"])
        for task in block["tasks"]:
            for backbone in block["backbones"]:
                for head in block["heads"]:
                    run = RunSpec(task, backbone, head, dict(params.get(head, {})), block.get("relax"), recipe)
                    label = run.make_recipe().label()  # a bad option fails when the file is read, not hours later
                    if (task, backbone, label) not in seen:  # listed twice: run once
                        seen.add((task, backbone, label))
                        runs.append(run)
    return Suite(runs, {str(k): str(v) for k, v in spec.get("not_run", {}).items()})


def run_suite(suite: Suite, config: RunConfig = RunConfig(), options: FrozenOptions = FrozenOptions(), *,
              relax: str | None = None, tasks=None, backbones=None, heads=None, keep_going: bool = True) -> list[dict]:
    """Run every selected spec (skipping tasks whose data is missing); returns one summary per run.

    ``relax`` (the command line's ``--relax``) wins over a block's ``relax``; without either a run
    uses ``options.relax``."""
    from ..tasks import get_task
    from .run import run

    summaries = []
    for spec in suite.runs:
        if (tasks and spec.task not in tasks) or (backbones and spec.backbone not in backbones) \
                or (heads and spec.head not in heads):
            continue
        task = get_task(spec.task)
        if not task.is_present(config.data_dir):
            summaries.append({"run": spec, "status": "skipped", "reason": "data not available"})
            continue
        start = time.perf_counter()
        try:
            chosen = relax or spec.relax
            record = run(spec.task, spec.backbone, spec.head, config, recipe=spec.make_recipe(),
                         head_params=spec.head_params or None,
                         options=replace(options, relax=chosen) if chosen else options)
        except Exception as exc:  # one failing run must not stop a long suite; the reason is reported
            if not keep_going:
                raise
            logger.exception("run %s failed", spec)
            summaries.append({"run": spec, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        headline = record["task"]["metrics"][0]
        summaries.append({"run": spec, "status": record["status"], "seconds": time.perf_counter() - start,
                          headline: record["summary"].get(headline, {}).get("mean")})
    return summaries
