"""Parts of a split that a run may use: training fractions, test subsets, named folds.

Shared by fine-tuning (:mod:`.finetune_run`) and the data-efficiency study (:mod:`.efficiency`),
so both approaches of a study train on the same random subset of a fold's training rows and are
scored on the same test rows. Efficiency runs write to
``<results_dir>/<task>/efficiency/<approach>__f<fraction>__s<seed>.json`` (:func:`efficiency_path`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Seed of the test-row subsample used when ``test_limit`` is set (same rows for every approach).
TEST_SUBSET_SEED = 12345
#: Fewest training rows a subset may have: 5-fold depth selection of the frozen approach and a
#: fine-tune (one row for early stopping) both need a handful.
MIN_SUBSET = 5


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
