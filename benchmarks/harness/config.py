"""How harness runs are configured: small frozen dataclasses instead of long keyword lists.

:class:`RunConfig` is what every run shares (where it reads and writes, device, seed, resume,
progress); :class:`FrozenOptions` what a frozen-embedding run (:func:`~.run.run`) adds, and
:class:`FinetuneOptions` what a fine-tuning run (:func:`~.finetune_run.run_finetune`) adds. A
name means one thing everywhere: ``featurize_batch_size`` is structures per featurization
batch, ``train_batch_size`` structures per fine-tuning step (``hacknip-bench``'s ``--batch-size``
sets the one its command uses).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RESULTS_DIR = Path("leaderboard") / "results"
#: Seed of the inner selection splits, of every head and of fine-tuning.
DEFAULT_SEED = 0


@dataclass(frozen=True)
class RunConfig:
    """Where a run reads and writes and how it runs; shared by every harness run."""

    data_dir: str | os.PathLike | None = None  #: benchmark data folder (None: $HACKNIP_DATA_DIR, else the user cache)
    results_dir: str | os.PathLike = DEFAULT_RESULTS_DIR
    cache_dir: str | os.PathLike | None = None  #: embedding cache root (None: the user cache)
    device: str = "cpu"
    seed: int = DEFAULT_SEED  #: heads, depth selection, fine-tuning
    limit: int | None = None  #: rows of generated / MoleculeNet tasks (smoke runs)
    folds: Sequence[str | int] | None = None  #: only these splits ("fold_0"); None: every split
    resume: bool = True  #: keep finished folds of an existing result file with the same identity
    progress: bool = True
    command: str | None = None  #: the command line, recorded in the result file


@dataclass(frozen=True)
class FrozenOptions:
    """What a frozen-embedding run adds: depth selection scheme, featurization, molecule geometry."""

    inner_cv: int | None = None  #: inner folds of depth selection (None: by training size)
    holdout: float | None = None  #: select depth on one hold-out fraction instead
    featurize_batch_size: int = 32  #: structures per featurization batch
    relax: str = "backbone"  #: molecule geometry recipe (hacknip_ase.molecules.RECIPES; molecule tasks only)


@dataclass(frozen=True)
class FinetuneOptions:
    """What a fine-tuning run adds. ``max_epochs``, ``patience``, ``train_batch_size`` default to
    the recipe's (any other value is recorded as a deviation)."""

    max_epochs: int | None = None
    patience: int | None = None
    train_batch_size: int | None = None  #: structures per training step (the FineTuner's batch_size)
    train_fraction: float | None = None  #: train on this random fraction of each training fold
    subset_seed: int | None = None  #: seed of that fraction's subset
    test_limit: int | None = None  #: score a fixed random subset of each test fold (CPU smoke runs)
    jobs: int = 1  #: folds trained at once, one process each
    checkpoint_dir: str | os.PathLike | None = None  #: per-epoch checkpoints (None: $HACKNIP_CACHE_DIR/finetune)
