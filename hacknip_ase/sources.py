"""Descriptor sources: feature sources beside the NIP embeddings, computed from each structure.

A source plays the part of a backbone for :class:`~hacknip_ase.heads.Predictor`: an identity
record (``name``, ``model``, ``weights_sha256`` = sha256 of what changes its numbers,
``n_depths`` 1, ``dim``, ``kind`` "descriptors") and ``embed(structures) -> (n, 1, dim)``, so
depth selection treats it as one more candidate ("chgnet:3+composition:0").

- ``composition``: matminer composition descriptors (:mod:`hacknip_ase.composition`);
- ``physics``, ``physics-moduli``, ``physics-phonons``: the frozen NIP as a simulator of the
  structure (:mod:`hacknip_ase.physics`), each a set of quantities, :data:`PHYSICS_SOURCES`:
  energy per atom and the formation-energy estimate (~0.02 CPU-s per structure with CHGNet,
  one thread); the EOS and elastic moduli (~1 CPU-s); the Gamma phonons of a >= 6 A supercell
  (8-30 CPU-s). They need the backbone; a record's ``model`` names it ("chgnet 0.3.0").
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .composition import NAME as COMPOSITION, CompositionSource

PHYSICS = "physics"
#: physics feature sources: name -> the quantities it simulates (hacknip_ase.physics.QUANTITIES).
#: The benchmarks' physics validation computes the same sets, so one run fills both caches.
PHYSICS_SOURCES = {
    PHYSICS: ("energy", "formation"),
    "physics-moduli": ("eos", "elastic"),
    "physics-phonons": ("phonon",),
}
#: the NIP that simulates when none is given (a physics-only baseline)
DEFAULT_SIMULATOR = "chgnet"
#: descriptor source names, as the command lines and suite files offer them
NAMES = (COMPOSITION, *PHYSICS_SOURCES)


class PhysicsSource:
    """NIP-simulated physics descriptors of a built backbone, as a feature source.

    Parameters
    ----------
    backbone : Backbone
        The frozen NIP that simulates each structure (the same one that gives the embeddings).
    cache_dir : path, None or False
        Root of the physics cache (see :func:`hacknip_ase.physics.physics_features`).
    name : str
        Which quantities: a key of :data:`PHYSICS_SOURCES` (default "physics", the cheap ones).
    """

    def __init__(self, backbone, cache_dir=None, name: str = PHYSICS) -> None:
        from .physics import PHYSICS_COLUMNS, PhysicsSettings, physics_identity

        if name not in PHYSICS_SOURCES:
            raise ValueError(f"unknown physics source {name!r}; valid: {', '.join(PHYSICS_SOURCES)}")
        self.name = name
        self.backbone = backbone
        self.cache_dir = cache_dir
        self.settings = PhysicsSettings(quantities=PHYSICS_SOURCES[name])
        identity = physics_identity(backbone, self.settings)
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        self.info = {"name": name, "model": f"{backbone.name} {backbone.info.model}", "weights_sha256": digest,
                     "n_depths": 1, "dim": len(PHYSICS_COLUMNS), "kind": "descriptors"}

    def embed(self, structures, *, progress: bool = False) -> np.ndarray:
        """(n, 1, n_columns) float32 descriptors; NaN where a quantity could not be computed."""
        from .physics import physics_features

        values, _, _ = physics_features(list(structures), self.backbone, settings=self.settings,
                                        cache_dir=self.cache_dir, progress=progress)
        return np.asarray(values, dtype=np.float32).reshape(len(values), 1, -1)

    def __repr__(self) -> str:
        return f"PhysicsSource({self.name}, {self.info['model']}, {self.info['dim']} columns)"


def build_source(name: str, *, backbone=None, model: str | None = None, cache_dir=None):
    """The descriptor source ``name``; a physics source simulates with ``backbone`` (a built
    Backbone), or with the backbone ``model`` names ("chgnet 0.3.0", as a saved record has it)."""
    if name == COMPOSITION:
        return CompositionSource(cache_dir=cache_dir)
    if name in PHYSICS_SOURCES:
        if backbone is None:
            from .backbones import get_backbone

            nip, _, variant = (model or DEFAULT_SIMULATOR).partition(" ")
            backbone = get_backbone(nip, model=variant) if variant else get_backbone(nip)
        return PhysicsSource(backbone, cache_dir=cache_dir, name=name)
    raise ValueError(f"unknown descriptor source {name!r}; valid: {', '.join(NAMES)}")


def is_source(item) -> bool:
    return isinstance(item, (CompositionSource, PhysicsSource))
