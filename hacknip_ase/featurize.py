"""``featurize``: all-depth mean-pooled embeddings for whole datasets, batched and cached.

The pieces: :mod:`hacknip_ase.inputs` turns what the caller gives into ``(id, structure)``
pairs, :mod:`hacknip_ase.engine` runs them through the backbone and the content-keyed cache
(a re-run, or a run that was killed halfway, only computes what is missing; a fully cached run
never loads the model), and :mod:`hacknip_ase.featureset` is the portable output file. Inputs and
outputs are streamed: memory grows with the batch, not with the dataset.

``featurize(..., engine="ray")`` runs the same :class:`Engine` on a pool of Ray actors, shard by
shard, with the same output and cache entries (:mod:`hacknip_ase.distributed`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .backbones import DEFAULT_BACKBONE
from .engine import DEFAULT_BATCH_SIZE, Engine, cache_identity
from .errors import InvalidOptionError
from .featureset import FeatureSet, FeatureWriter
from .inputs import as_source

__all__ = ["DEFAULT_BATCH_SIZE", "Engine", "FeatureSet", "FeatureWriter", "cache_identity", "featurize",
           "featurize_to_file", "write_features"]


def featurize(
    structures,
    backbone=DEFAULT_BACKBONE,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    ids: Iterable[str] | None = None,
    format: str | None = None,
    on_error: str = "raise",
    out: str | os.PathLike | None = None,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    shard_size: int | None = None,
    **backbone_options,
) -> FeatureSet:
    """Mean-pooled all-depth embeddings of many structures, shape (n, n_depths, dim).

    Parameters
    ----------
    structures
        ase Atoms / pymatgen Structures (a list or any iterable, also of ``(id, structure)``
        pairs), or a path: a folder of CIFs, an extxyz file, an ase ``.db`` or a Matbench
        ``.json.gz`` (see :mod:`hacknip_ase.readers`; ``format`` overrides the guess).
    backbone
        Registry name or a built :class:`~hacknip_ase.backbones.Backbone`; ``device`` and
        ``backbone_options`` (``model=``, ``weights=``, ``expand_supercell=``) build it.
    batch_size
        Structures per forward pass. Memory grows with it, not with the dataset.
    cache, cache_dir
        Whether to read and write the embedding cache (default True), and its root (default
        ``cache_dir()/features``; ``cache_dir=False`` also turns the cache off).
    ids
        Ids for the structures (default: the reader's ids, else "0", "1", ...).
    on_error
        "raise" (default) or "skip": leave out structures the backbone rejects and list them
        in ``metadata["skipped"]``.
    out
        Also stream the result to this ``.npz`` file (the portable format).
    engine
        "local" (default): this process; "ray": a pool of Ray actors, each with its own loaded
        backbone (needs ``pip install hacknip-ase[ray]``; see :mod:`hacknip_ase.distributed`).
        The output and the cache entries are those of a local run; with ``out``, finished
        shards are recorded beside it and a re-run resumes from them.
    address, actors, gpus_per_actor, shard_size
        Ray only (see :class:`hacknip_ase.distributed.RayEngine`): the cluster to join (None:
        start a local Ray), the number of actors (default: one per CPU, or per
        ``gpus_per_actor`` GPUs), GPUs per actor (default 0) and structures per shard (a
        multiple of ``batch_size``, default 1024).

    Returns
    -------
    FeatureSet
        ``embeddings`` (n, n_depths, dim) float32, ``ids`` and ``metadata``.
    """
    ray_options = {"address": address, "actors": actors, "gpus_per_actor": gpus_per_actor, "shard_size": shard_size}
    if engine == "ray":
        from .distributed import RayEngine

        ray_engine = RayEngine(backbone, batch_size=batch_size, device=device, cache=cache, cache_dir=cache_dir,
                               on_error=on_error, **{k: v for k, v in ray_options.items() if v is not None},
                               **backbone_options)
        source = as_source(structures, ids, format)
        if out is not None:
            return FeatureSet.load(ray_engine.run_to_file(source, out, progress=progress))
        return ray_engine.run(source, progress=progress)
    if engine != "local":
        raise InvalidOptionError(f"engine must be 'local' or 'ray', got {engine!r}")
    given = sorted(k for k, v in ray_options.items() if v is not None)
    if given:
        raise InvalidOptionError(f"{', '.join(given)} only apply with engine='ray'")
    if out is not None:
        run = featurize_to_file(structures, out, backbone, batch_size=batch_size, device=device, cache=cache,
                                cache_dir=cache_dir, progress=progress, ids=ids, format=format,
                                on_error=on_error, **backbone_options)
        return FeatureSet.load(run)
    engine = Engine(backbone, batch_size=batch_size, device=device, cache=cache, cache_dir=cache_dir,
                    on_error=on_error, **backbone_options)
    source = as_source(structures, ids, format)
    out_ids, chunks = [], []
    for chunk_ids, chunk in engine.run(source, progress=progress):
        out_ids.extend(chunk_ids)
        chunks.append(chunk)
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, *engine.shape), dtype=np.float32)
    return FeatureSet(ids=out_ids, embeddings=embeddings, metadata=engine.metadata(source))


def featurize_to_file(structures, out, backbone=DEFAULT_BACKBONE, *,
                      batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu", cache: bool = True,
                      cache_dir=None, progress: bool = True, ids=None, format: str | None = None,
                      on_error: str = "raise", **backbone_options) -> Path:
    """Like :func:`featurize`, streaming to ``out`` (portable ``.npz``) without holding the result."""
    engine = Engine(backbone, batch_size=batch_size, device=device, cache=cache, cache_dir=cache_dir,
                    on_error=on_error, **backbone_options)
    return write_features(engine, as_source(structures, ids, format), out, progress=progress).path


def write_features(engine: Engine, source, out, *, progress: bool = True) -> FeatureWriter:
    """Stream ``engine.run(source)`` into the features file ``out``; the (closed) writer: ``path``, ``ids``."""
    with FeatureWriter(out, engine.shape) as writer:
        for chunk_ids, chunk in engine.run(source, progress=progress):
            writer.write(chunk_ids, chunk)
        writer.metadata = engine.metadata(source)
    return writer
