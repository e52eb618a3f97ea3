"""Property heads shipped with the package: trained on public benchmark data, ready offline.

``EmbeddingCalculator(heads="matbench")`` attaches every shipped head of the calculator's
backbone; a list of names attaches some. Each head is a safe predictor file
(:mod:`hacknip_ase.heads.predictor_file`, no pickle) in ``heads/`` beside this module, listed in
``heads/index.json`` with its provenance: dataset and version, rows, head, cross-validated
error on the benchmark's own folds (the leaderboard's figure), units, transform and the
backbone's weights sha256. The files are rebuilt by ``hacknip-bench export-heads``.

Every head adds ``<name>_domain_distance``: the normalized nearest-neighbour distance of a
structure's embedding to the training set (about 0.3-2 inside it); values above
:data:`TRUST_THRESHOLD` mean the structure is unlike the training data: don't trust the value.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import InvalidOptionError

#: Domain distance above which a shipped head's prediction should not be trusted.
TRUST_THRESHOLD = 3.0
#: Name of the group of every shipped head.
ALL = "matbench"


def heads_dir() -> Path:
    return Path(str(resources.files(__name__).joinpath("heads")))


def index(directory=None) -> list[dict]:
    """Every shipped head's record (``name``, ``backbone``, ``file``, ``units``, ``cv_mae`` ...)."""
    path = Path(directory or heads_dir()) / "index.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text())["heads"]


def available_heads(backbone: str | None = None, directory=None) -> list[dict]:
    """Shipped heads (of one backbone, or all) with their cross-validated error."""
    return [h for h in index(directory) if backbone is None or h["backbone"] == backbone]


def pretrained_heads(backbone: str, names: str | list[str] = ALL) -> dict[str, Path]:
    """``{property name: predictor file}`` of the shipped heads ``names`` ("matbench": all) for ``backbone``."""
    heads = {h["name"]: heads_dir() / h["file"] for h in available_heads(backbone)}
    if names == ALL:
        if not heads:
            raise InvalidOptionError(f"no pretrained heads ship for backbone {backbone!r}; available: "
                                     f"{sorted({h['backbone'] for h in index()}) or 'none'}")
        return heads
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in heads]
    if unknown:
        raise InvalidOptionError(f"no pretrained head(s) {', '.join(unknown)} for backbone {backbone!r}; "
                                 f"available: {', '.join(sorted(heads)) or 'none'}")
    return {n: heads[n] for n in names}


def describe(backbone: str | None = None, directory=None) -> str:
    """A table of the shipped heads: property, units, dataset, rows, head, CV error, file size."""
    from tabulate import tabulate

    rows = [[h["name"], h["units"], h["backbone"], h["dataset"], h["n_train"], h["head"], h["depths"],
             f"{h['cv_mae']:.4g} {h['cv_units']}", f"{h['size_bytes'] / 1e6:.2f} MB"] for h in available_heads(backbone, directory)]
    return tabulate(rows, headers=["property", "units", "backbone", "dataset", "rows", "head", "depth",
                                   "CV MAE (benchmark folds)", "file"], tablefmt="github")
