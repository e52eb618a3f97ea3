"""MoleculeNet BACE, BBBP and ClinTox through DeepChem's loaders and splitters.

SMILES are read by DeepChem's MoleculeNet loader (no featurization) and turned into relaxed 3D
molecules by :mod:`hacknip_ase.molecules`. BACE and BBBP use five seeded *random scaffold*
splits 80/10/10 (:func:`random_scaffold_split`, the balanced scaffold split of chemprop that
GEM and MolCLR report): DeepChem's ScaffoldSplitter is deterministic, so its five "seeds" would
share one test set. ClinTox uses DeepChem's random split, seeds 0-4. The depth and head are
chosen on each split's validation part (``Task.select_on_valid``). Splits are computed on every
RDKit-parsable molecule (the same for every backbone); molecules whose 3D build or relaxation
fails with a backbone are then removed from each split and listed in ``TaskData.excluded``.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from hacknip_ase.errors import InvalidStructureError

from ..data import DataFile, locate
from .base import CLASSIFICATION, Excluded, Split, Task, TaskData
from hacknip_ase.molecules import RelaxSettings, build_molecules, parse_smiles

#: Seeds of the five splits (each also seeds its head: ``seeded_replicates``).
SEEDS = (0, 1, 2, 3, 4)
FRACTIONS = {"frac_train": 0.8, "frac_valid": 0.1, "frac_test": 0.1}
_BUCKET = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/"


def scaffold_sets(smiles: Sequence[str]) -> list[list[int]]:
    """Positions grouped by Bemis-Murcko scaffold (no chirality, as DeepChem's ScaffoldSplitter),
    in order of first appearance; acyclic molecules share the empty scaffold."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    sets: dict[str, list[int]] = {}
    for i, smi in enumerate(smiles):
        scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(smi), includeChirality=False)
        sets.setdefault(scaffold, []).append(i)
    return list(sets.values())


def random_scaffold_split(smiles: Sequence[str], seed: int, frac_train: float = 0.8, frac_valid: float = 0.1,
                          frac_test: float = 0.1) -> tuple[list[int], list[int], list[int]]:
    """Train, valid, test positions; every scaffold set lies whole in one part.

    chemprop's balanced scaffold split: sets larger than half the valid or the test size come
    first, so they fill train, then the other sets; each group in an order shuffled with
    ``seed``. Sets go to train while it has room, then to valid, then to test.
    """
    n = len(smiles)
    sizes = (frac_train * n, frac_valid * n, frac_test * n)
    sets = scaffold_sets(smiles)
    big = [s for s in sets if len(s) > sizes[1] / 2 or len(s) > sizes[2] / 2]
    small = [s for s in sets if not (len(s) > sizes[1] / 2 or len(s) > sizes[2] / 2)]
    rng = random.Random(seed)
    rng.shuffle(big)
    rng.shuffle(small)
    train, valid, test = [], [], []
    for members in big + small:
        if len(train) + len(members) <= sizes[0]:
            train += members
        elif len(valid) + len(members) <= sizes[1]:
            valid += members
        else:
            test += members
    return sorted(train), sorted(valid), sorted(test)


class MoleculeNetTask(Task):
    family = "moleculenet"
    seeded_replicates = True
    select_on_valid = True
    task_type = CLASSIFICATION
    metrics = ("roc_auc", "accuracy")

    def __init__(self, name: str, filename: str, smiles_column: str, targets: tuple[str, ...],
                 loader: str, splitter: str, literature_size: int, size_note: str) -> None:
        self.name, self.filename, self.smiles_column = name, filename, smiles_column
        self.target_names, self.loader, self.splitter = targets, loader, splitter
        self.literature_size, self.size_note = literature_size, size_note
        scheme = ("random scaffold split 80/10/10 (balanced scaffold sets, chemprop/GEM)" if splitter == "scaffold"
                  else "DeepChem random split 80/10/10")
        self.split_description = (f"{scheme}, seeds {SEEDS[0]}-{SEEDS[-1]}; depth chosen on each split's valid part; "
                                  f"± over the {len(SEEDS)} splits")

    @property
    def files(self) -> list[DataFile]:
        # DeepChem publishes no checksums for its dataset bucket.
        return [DataFile(f"moleculenet/{self.filename}", url=_BUCKET + self.filename)]

    def _parsable(self, smiles) -> tuple[list[int], list[Excluded]]:
        keep, bad = [], []
        for i, smi in enumerate(smiles):
            try:
                parse_smiles(smi)
                keep.append(i)
            except InvalidStructureError as exc:
                bad.append(Excluded(f"{self.name}-{i}", "parse", str(exc)))
        return keep, bad

    def count(self, data_dir=None) -> int:
        import pandas as pd  # same column DeepChem reads; avoids importing DeepChem (~30 s)

        smiles = pd.read_csv(locate(self.files[0], data_dir))[self.smiles_column].astype(str)
        return len(self._parsable(smiles)[0])

    def read(self, data_dir=None, limit: int | None = None) -> tuple[list[str], np.ndarray]:
        """SMILES and labels as DeepChem's loader gives them (file order)."""
        import deepchem as dc

        path = locate(self.files[0], data_dir)
        with tempfile.TemporaryDirectory() as tmp:
            _, (dataset,), _ = getattr(dc.molnet, self.loader)(
                featurizer=dc.feat.DummyFeaturizer(), splitter=None, transformers=[],
                data_dir=str(Path(path).parent), save_dir=tmp, reload=False)
            smiles, labels = [str(s) for s in dataset.X], np.asarray(dataset.y, dtype=float)
        if limit is not None:
            smiles, labels = smiles[:limit], labels[:limit]
        return smiles, labels

    def load(self, data_dir=None, *, calculator=None, settings: RelaxSettings = RelaxSettings(),
             cache=None, limit: int | None = None, progress: bool = False) -> TaskData:
        """Relaxed molecules and labels. ``limit`` keeps the first rows (smoke runs only)."""
        smiles, labels = self.read(data_dir, limit)
        keep, excluded = self._parsable(smiles)
        ids = [f"{self.name}-{i}" for i in range(len(smiles))]
        built = build_molecules({ids[i]: smiles[i] for i in keep}, calculator, settings=settings,
                                cache=cache, progress=progress)
        excluded += built.failures
        rows = [i for i in keep if ids[i] in built.atoms]
        targets = labels[rows] if labels.shape[1] > 1 else labels[rows, 0]
        notes = built.notes(settings)
        return TaskData(ids=[ids[i] for i in rows], inputs=[built.atoms[ids[i]] for i in rows],
                        targets=targets, target_names=self.target_names, excluded=excluded, notes=notes,
                        meta={"split_ids": [ids[i] for i in keep], "split_smiles": [smiles[i] for i in keep],
                              "settings": settings, "build_seconds": built.seconds})

    def splits(self, data: TaskData) -> Iterator[Split]:
        split_ids, split_smiles = data.meta["split_ids"], data.meta["split_smiles"]
        position = {id_: i for i, id_ in enumerate(data.ids)}

        def rows(part):  # drop molecules that failed to build with this backbone
            return np.array([position[split_ids[j]] for j in part if split_ids[j] in position], dtype=int)

        for seed in SEEDS:
            if self.splitter == "scaffold":
                train, valid, test = random_scaffold_split(split_smiles, seed, **FRACTIONS)
            else:
                import deepchem as dc

                # DeepChem splitters work on a Dataset whose ids are SMILES; X carries our positions.
                dataset = dc.data.NumpyDataset(X=np.arange(len(split_ids)),
                                               ids=np.array(split_smiles, dtype=object))
                train, valid, test = dc.splits.RandomSplitter().split(dataset, seed=seed, **FRACTIONS)
            yield Split(f"seed_{seed}", rows(train), rows(test), valid=rows(valid), seed=seed)


#: task name -> factory (the registry builds only the task asked for)
FACTORIES = {
    "bace": partial(MoleculeNetTask, "bace", "bace.csv", "mol", ("Class",), "load_bace_classification", "scaffold",
                    1513, ""),  # sizes: Wu et al., MoleculeNet, Chem. Sci. 9, 513 (2018)
    "bbbp": partial(MoleculeNetTask, "bbbp", "BBBP.csv", "smiles", ("p_np",), "load_bbbp", "scaffold", 2053,
                    "DeepChem's file has 2050 rows; 11 SMILES RDKit cannot parse"),
    "clintox": partial(MoleculeNetTask, "clintox", "clintox.csv.gz", "smiles", ("FDA_APPROVED", "CT_TOX"),
                       "load_clintox", "random", 1491,
                       "DeepChem's file has 1484 rows; SMILES RDKit rejects (valence) or with '*' excluded"),
}
