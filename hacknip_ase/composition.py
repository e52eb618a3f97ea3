"""Composition descriptors: a second feature source beside the NIP embeddings.

The features are matminer's featurizers as MODNet uses them: ``ElementProperty`` with the
Magpie preset (132 statistics of elemental properties), ``Stoichiometry`` (p-norms of the
fractions, 6) and ``ValenceOrbital`` (average and fractional s/p/d/f valence electrons, 8):
146 columns, :data:`COLUMNS`. They depend on the chemical formula only, so a doped variant and
its host, or two polymorphs, get the same vector; that is why they complement the structure
embeddings rather than replace them.

A :class:`CompositionSource` plays the part of a backbone for :class:`~hacknip_ase.heads.Predictor`:
it has an identity record (``name`` "composition", ``n_depths`` 1, ``dim`` 146) and
:meth:`~CompositionSource.embed` gives (n, 1, 146) arrays, so depth selection treats it as one
more candidate source ("chgnet:3+composition:0"). Vectors are cached per structure in the
feature cache (content-keyed, atomic; :class:`~hacknip_ase.cache.FeatureCache`), under an
identity that holds the featurizer settings and the matminer version. An element matminer has
no data for gives NaN columns, which the heads read as missing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable
from functools import cache

import numpy as np

from .provenance import package_versions

NAME = "composition"
MODEL = "magpie+stoichiometry+valence_orbital"
#: Bump when the columns or how they are computed change.
FORMAT = 1


@cache
def _featurizers():
    """The three featurizers, built once per process (matminer loads its element tables here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matminer's import-time deprecation chatter
        from matminer.featurizers.composition import ElementProperty, Stoichiometry, ValenceOrbital

    return [ElementProperty.from_preset("magpie"), Stoichiometry(), ValenceOrbital()]


def columns() -> list[str]:
    """The 146 column names, in order (matminer's own labels)."""
    return [label for featurizer in _featurizers() for label in featurizer.feature_labels()]


def identity() -> dict:
    """Everything that changes the numbers: featurizers, their settings, matminer's version."""
    versions = package_versions(["matminer", "pymatgen-core"])
    return {"name": NAME, "model": MODEL, "format": FORMAT, "matminer": versions["matminer"],
            "pymatgen-core": versions["pymatgen-core"]}


class CompositionSource:
    """Composition descriptors behind the small part of the backbone interface a Predictor uses.

    Parameters
    ----------
    cache_dir : path or False, optional
        Feature cache root, as for :func:`~hacknip_ase.featurize.featurize` (default:
        ``cache_dir()/features``); ``False`` computes without caching.
    """

    name = NAME

    def __init__(self, cache_dir=None) -> None:
        self.cache_dir = cache_dir
        ident = identity()
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
        n = len(columns())
        # "weights_sha256" is the featurizer identity, so a predictor trained with another
        # matminer version (other numbers) is refused like one trained on other NIP weights
        self.info = {"name": NAME, "model": MODEL, "weights_sha256": digest, "n_depths": 1, "dim": n,
                     "kind": "descriptors"}
        self._identity = ident

    def _vector(self, atoms) -> np.ndarray:
        from pymatgen.core import Composition

        if len(atoms) == 0:
            raise ValueError("an empty structure has no composition")
        composition = Composition(atoms.get_chemical_formula(mode="metal"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = [v for featurizer in _featurizers() for v in featurizer.featurize(composition)]
        return np.asarray(values, dtype=np.float64)

    def embed(self, structures: Iterable, *, progress: bool = False) -> np.ndarray:
        """(n, 1, 146) float32 composition vectors of ``structures`` (ase Atoms or pymatgen)."""
        from tqdm.auto import tqdm

        from .cache import FeatureCache
        from .structures import as_atoms

        structures = list(structures)
        cache = None
        if self.cache_dir is not False:
            cache = FeatureCache(self._identity, (1, self.info["dim"]), root=self.cache_dir)
        out = np.empty((len(structures), 1, self.info["dim"]), dtype=np.float32)
        for i, structure in enumerate(tqdm(structures, desc="composition", unit="structure", disable=not progress)):
            atoms = as_atoms(structure)
            key = cache.key(atoms) if cache is not None else None
            value = cache.get(key) if cache is not None else None
            if value is None:
                value = self._vector(atoms).astype(np.float32).reshape(1, -1)
                if cache is not None:
                    cache.put(key, value)
            out[i] = value
        return out

    def __repr__(self) -> str:
        return f"CompositionSource({MODEL}, {self.info['dim']} columns)"

