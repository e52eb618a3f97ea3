"""From structures to the arrays a Predictor reads: building its feature sources (NIP backbones
and descriptor sources) and embedding structures with them.

The backbones, the featurization engine and the descriptor sources are imported where they are
used, so that importing the heads does not import torch or the NIP packages.
"""

from __future__ import annotations

import numpy as np


def pbc_kind(structures) -> str | None:
    """"all", "none" or "mixed": whether the structures are fully periodic (None if there are none)."""
    from ..structures import as_atoms

    periodic = {bool(as_atoms(s).pbc.all()) for s in structures}
    if not periodic:
        return None
    return "mixed" if len(periodic) == 2 else ("all" if periodic == {True} else "none")


def build_sources(backbone, options) -> list:
    """Built feature sources, in order: NIP backbones (names, (name, options), Backbone) and
    descriptor sources (names, identity records or built sources; physics simulates with the
    first NIP in the list, or builds the one its record names)."""
    from ..backbones import Backbone, get_backbone
    from ..sources import NAMES, build_source, is_source

    items = list(backbone) if isinstance(backbone, (list, tuple)) else [backbone]
    built: list = [None] * len(items)
    for k, item in enumerate(items):  # NIPs first: a physics source simulates with one of them
        if isinstance(item, Backbone):
            built[k] = item
        elif isinstance(item, tuple):  # (name, options)
            built[k] = get_backbone(item[0], **item[1])
        elif isinstance(item, str) and item not in NAMES:
            built[k] = get_backbone(item, **(options or {}))
    nip = next((b for b in built if b is not None), None)
    for k, item in enumerate(items):
        if built[k] is not None:
            continue
        if is_source(item):
            built[k] = item
        elif isinstance(item, dict):  # a saved descriptor record
            built[k] = build_source(item["name"], backbone=nip, model=item.get("model"))
        else:
            built[k] = build_source(item, backbone=nip)
    return built


def embed(backbone, structures, batch_size: int = 32) -> np.ndarray:
    """(n, n_depths, dim) mean-pooled embeddings through the featurization engine and its cache
    (a descriptor source: its own (n, 1, dim) vectors, cached the same way)."""
    from ..featurize import featurize
    from ..sources import is_source

    structures = list(structures)
    if not structures:
        raise ValueError("no structures given")
    if is_source(backbone):
        return backbone.embed(structures)
    return featurize(structures, backbone, batch_size=batch_size, progress=False).embeddings
