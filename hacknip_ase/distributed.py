"""Featurization on a Ray cluster: the same cache, resume and output as one machine.

``featurize(..., engine="ray")`` and ``hacknip featurize INPUT --engine ray`` go through
:class:`RayEngine`. The flow:

1. **Shards.** The input is cut into shards of ``shard_size`` consecutive entries
   (:meth:`hacknip_ase.readers.StructureSource.shards`: one pass over the input, recording file
   positions where a format can only be read sequentially). Structures in memory are cut the
   same way and shipped with their shard.
2. **Actor pool.** ``actors`` Ray actors (:class:`ray.util.ActorPool`), each holding one
   :class:`~hacknip_ase.engine.Engine`: the backbone is built once per actor, on its first
   cache miss, and kept. An actor reads its shard itself (the readers' ``shard_entries``) and
   runs it through ``Engine.run``, the code of the local path (look-ahead window, batches,
   content-keyed cache, ``on_error``), so a shard's batches and cache entries are those of a
   local run. Each actor gets one CPU and runs one torch thread; ``gpus_per_actor`` asks Ray for
   GPUs and runs the model on ``cuda``.
3. **Records.** Each finished shard comes back to the driver, which writes it atomically as a
   small features file (the portable format of :mod:`hacknip_ase.featureset`) in a work folder
   beside the output, ``OUT.shards/`` (layout below). A re-run skips every shard with a record,
   so a killed job loses at most the shards in flight (whose finished batches are in the cache).
4. **Output.** Records are concatenated in shard order into one features file: the same ids,
   order, embeddings and skipped list as :func:`hacknip_ase.featurize.featurize` on one
   machine, bit for bit from an empty cache when ``shard_size`` is a multiple of
   ``batch_size`` (required: a shard then starts a batch, so the batches are the local ones; a
   float32 batched forward pass changes at the 1e-6 level with its batch mates). The work folder
   is removed once the output is in place.

The work folder's layout is described in :mod:`hacknip_ase.shards`.

On a cluster the input and the cache folder must be at the same path on every node (a shared
file system), as for any reader of files on Ray; the output and the work folder are written by
the driver only.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .backbones import DEFAULT_BACKBONE
from .cache import default_cache_root
from .engine import Engine, cache_settings
from .errors import HackNIPError, InvalidOptionError, MissingDependencyError
from .featureset import FeatureSet, FeatureWriter
from .inputs import describe, unwrap
from .readers import Shard
from .shards import WORK_FORMAT, WORK_FORMAT_VERSION, WorkFolder, fingerprint, sha256_json

#: Structures per shard: the unit of scheduling and of resume (a multiple of the default batch).
DEFAULT_SHARD_SIZE = 1024
#: An actor that dies (out of memory, a lost node) is restarted and its shard retried this often.
MAX_RESTARTS = 2

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SHARD_SIZE", "RayEngine", "import_ray"]


def import_ray():
    """The ``ray`` module, or :class:`MissingDependencyError` naming the install."""
    try:
        import ray
        import ray.util
    except ImportError as exc:
        raise MissingDependencyError("engine='ray' needs Ray: pip install hacknip-ase[ray]") from exc
    return ray


def _cpu_clock() -> dict:
    """This actor's id and the CPU seconds its process has used so far (start-up and model included)."""
    import ray

    return {"actor": ray.get_runtime_context().get_actor_id(), "cpu": time.process_time()}


class _ShardWorker:
    """One Ray actor: a loaded :class:`~hacknip_ase.engine.Engine` that featurizes whole shards."""

    def __init__(self, source, backbone: str, threads: int, engine_options: dict) -> None:
        import torch

        # Ray gives the actor one CPU; more torch threads would only contend with other actors.
        torch.set_num_threads(threads)
        self.source = source
        self.error = None
        try:
            self.engine = Engine(backbone, **engine_options)
        except HackNIPError as exc:
            # Raised here, Ray would report a dead actor and lose the typed error (a bad
            # --model, a missing weights file, no GPU): the first call raises it instead.
            self.error = exc

    def describe(self) -> dict:
        """The backbone identity and the metadata a local run of this engine would write."""
        if self.error is not None:
            raise self.error
        engine = self.engine
        return {"identity": engine.identity, "shape": engine.shape, "metadata": engine.metadata(),
                "cache_identity": None if engine.cache is None else engine.cache.identity_sha256, **_cpu_clock()}

    def featurize(self, shard: Shard, items: list | None = None, ids: list | None = None) -> dict:
        """Embeddings of one shard, in input order: the entries read here, or ``items`` sent along."""
        if self.error is not None:
            raise self.error
        entries = items if items is not None else self.source.shard_entries(shard)
        if ids is not None:
            entries = ((name, item) for name, (_, item) in zip(ids, entries, strict=True))
        engine = self.engine
        computed, skipped = engine.computed, len(engine.skipped)
        out_ids, chunks = [], []
        try:
            for chunk_ids, chunk in engine.run(entries):
                out_ids.extend(chunk_ids)
                chunks.append(chunk)
        except HackNIPError as exc:  # on_error="raise": the driver decides which failure to raise
            return {"shard": shard, "error": exc, **_cpu_clock()}
        embeddings = np.concatenate(chunks) if chunks else np.zeros((0, *engine.shape), np.float32)
        return {"shard": shard, "ids": out_ids, "embeddings": embeddings, "skipped": engine.skipped[skipped:],
                "computed": engine.computed - computed, "loaded": engine.loaded, **_cpu_clock()}


class RayEngine:
    """Featurize a dataset with a pool of Ray actors; same output and cache as :class:`~hacknip_ase.engine.Engine`.

    Parameters
    ----------
    backbone : str
        Registry name; each actor builds its own backbone (a built one is not shipped).
    batch_size, device, cache, cache_dir, on_error, **backbone_options
        As for :func:`hacknip_ase.featurize.featurize`. ``cache_dir=None`` is resolved here, on the
        driver, so every actor writes the same cache (on a cluster: a shared path).
    address : str, optional
        Ray cluster to join (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); None starts a
        local Ray with ``actors`` CPUs (default: the machine's cores), stopped at the end. An
        already connected Ray session (``ray.init`` by the caller) is used as it is.
    actors : int, optional
        Size of the actor pool; default: the cluster's CPUs (``gpus_per_actor=0``) or GPUs
        divided by ``gpus_per_actor``, and never more than the shards to run.
    gpus_per_actor : float
        GPUs Ray reserves for each actor (a fraction shares a GPU); with GPUs, ``device="cpu"``
        becomes ``"cuda"`` (Ray makes the reserved GPU the actor's only visible one).
    shard_size : int
        Structures per shard, a multiple of ``batch_size`` (default 1024).

    Attributes
    ----------
    computed : int
        Structures of the last run that went through a model (the rest came from the cache).
    skipped : list of dict
        ``{id, error}`` of the structures left out (``on_error="skip"``), in input order.
    written : int
        Structures in the output file of :meth:`run_to_file`.
    shards_done, shards_run : int
        Shards found finished in the work folder, and shards run.
    n_actors : int
        Size of the actor pool used.
    loaded : bool
        Whether any actor built the model (a fully cached run builds none).
    elapsed, startup_seconds : float
        Wall seconds of the run (Ray's start included), and until the first actor was ready
        (Ray started or joined, the actor's imports and, when the backbone's identity is not in
        the cache yet, its model built).
    actor_cpu_seconds : float
        CPU seconds of the actor processes up to their last shard, start-up and model loading
        included (the driver's own CPU time is not in it).
    """

    def __init__(self, backbone=DEFAULT_BACKBONE, *, batch_size: int = 32, device: str = "cpu", cache: bool = True,
                 cache_dir=None, on_error: str = "raise", address: str | None = None, actors: int | None = None,
                 gpus_per_actor: float = 0, shard_size: int | None = None, **backbone_options) -> None:
        if not isinstance(backbone, str):
            raise InvalidOptionError("engine='ray' takes a backbone registry name (each actor builds its own), "
                                     f"not a built {type(backbone).__name__}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidOptionError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if on_error not in ("raise", "skip"):
            raise InvalidOptionError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        shard_size = DEFAULT_SHARD_SIZE if shard_size is None else shard_size
        if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1 \
                or shard_size % batch_size:
            raise InvalidOptionError(f"shard_size must be a positive multiple of batch_size ({batch_size}), so that "
                                     f"batches are those of a local run; got {shard_size!r}")
        if actors is not None and (not isinstance(actors, int) or isinstance(actors, bool) or actors < 1):
            raise InvalidOptionError(f"actors must be an integer >= 1, got {actors!r}")
        if not isinstance(gpus_per_actor, int | float) or isinstance(gpus_per_actor, bool) or gpus_per_actor < 0:
            raise InvalidOptionError(f"gpus_per_actor must be a number >= 0, got {gpus_per_actor!r}")
        self.ray = import_ray()
        self.backbone = backbone
        self.batch_size, self.on_error, self.shard_size = batch_size, on_error, shard_size
        self.address, self.actors, self.gpus_per_actor = address, actors, float(gpus_per_actor)
        self.device = "cuda" if self.gpus_per_actor > 0 and str(device) == "cpu" else str(device)
        self.cache, cache_dir = cache_settings(cache, cache_dir)
        self.cache_dir = str(Path(cache_dir if cache_dir is not None else default_cache_root()).resolve()) \
            if self.cache else None
        self.backbone_options = backbone_options
        self.computed, self.skipped = 0, []
        self.shards_done = self.shards_run = self.n_actors = 0
        self.loaded, self.elapsed, self.startup_seconds = False, 0.0, 0.0
        self.written = 0
        self._actor_cpu: dict[str, float] = {}
        self.shape: tuple[int, int] | None = None

    @property
    def actor_cpu_seconds(self) -> float:
        return float(sum(self._actor_cpu.values()))

    # -- public entry points ---------------------------------------------------------------

    def run_to_file(self, source, out, *, progress: bool = False) -> Path:
        """Featurize ``source`` into the features file ``out``, resuming from ``OUT.shards/``."""
        path = Path(out)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")  # FeatureWriter's (np.savez's) convention
        work = WorkFolder(path.with_name(path.name + ".shards"))
        metadata, plan = self._execute(source, work, progress)
        self.skipped = []
        with FeatureWriter(path, self.shape) as writer:
            for shard in plan:  # each record is read once, in input order
                record = work.record(shard)
                writer.write(record.ids, record.embeddings)
                self.skipped.extend(record.metadata["skipped"])
            writer.metadata = {**metadata, "skipped": self.skipped}
        self.written = len(writer.ids)
        shutil.rmtree(work.path)  # everything it held is now in the output (and the cache)
        self.elapsed = time.perf_counter() - self._started
        return writer.path

    def run(self, source, *, progress: bool = False) -> FeatureSet:
        """Featurize ``source`` into memory (shard records go to a temporary folder)."""
        with tempfile.TemporaryDirectory(prefix="hacknip-shards-") as folder:
            work = WorkFolder(Path(folder) / "work")
            metadata, plan = self._execute(source, work, progress)
            records = [work.record(shard) for shard in plan]
        embeddings = (np.concatenate([r.embeddings for r in records]) if records
                      else np.zeros((0, *self.shape), np.float32))
        self.skipped = [entry for r in records for entry in r.metadata["skipped"]]
        self.elapsed = time.perf_counter() - self._started
        return FeatureSet(ids=[sid for r in records for sid in r.ids], embeddings=embeddings,
                          metadata={**metadata, "skipped": self.skipped})

    # -- the run -----------------------------------------------------------------------------

    def _execute(self, source, work: WorkFolder, progress: bool) -> tuple[dict, list[Shard]]:
        from tqdm.auto import tqdm

        self._started = time.perf_counter()
        reader, ids, items = unwrap(source)
        if reader is not None:
            plan = reader.shards(self.shard_size)
            if ids is not None and len(ids) != sum(len(s) for s in plan):
                raise InvalidOptionError(f"got {len(ids)} ids for {sum(len(s) for s in plan)} structures")
        else:
            plan = [Shard(i, begin, min(begin + self.shard_size, len(items)))
                    for i, begin in enumerate(range(0, len(items), self.shard_size))]
        total = plan[-1].stop if plan else 0
        run_plan = {"format": WORK_FORMAT, "format_version": WORK_FORMAT_VERSION, "source": describe(source),
                    "fingerprint": fingerprint(reader, items, ids), "entries": total, "shard_size": self.shard_size,
                    "batch_size": self.batch_size, "on_error": self.on_error}
        work.check_plan(run_plan, write=False)  # another run's folder is refused before Ray starts
        ray = self.ray
        started = self._connect()
        pool_actors: list = []
        try:
            worker = ray.remote(_ShardWorker)
            resources = {"num_cpus": 1, "num_gpus": self.gpus_per_actor, "max_restarts": MAX_RESTARTS,
                         "max_task_retries": MAX_RESTARTS}
            options = {"batch_size": self.batch_size, "device": self.device, "cache": self.cache,
                       "cache_dir": self.cache_dir,
                       "on_error": self.on_error, **self.backbone_options}
            # All actors start at once (each imports torch and the NIP, seconds); the source goes
            # once to each actor, not with every shard.
            wanted = min(self._pool_size(), max(len(plan), 1))
            pool_actors.extend(worker.options(**resources).remote(reader, self.backbone, 1, options)
                               for _ in range(wanted))
            described = self._get(pool_actors[0].describe.remote())
            self.startup_seconds = time.perf_counter() - self._started
            self._actor_cpu[described["actor"]] = described["cpu"]
            self.shape = work.shape = tuple(described["shape"])
            run_plan["cache_identity"] = described["cache_identity"] or sha256_json(described["identity"])
            work.check_plan(run_plan, write=True)
            pending = [shard for shard in plan if not work.finished(shard)]
            self.shards_done, self.shards_run = len(plan) - len(pending), 0
            for actor in pool_actors[max(len(pending), 1):]:  # more actors than shards left to run
                ray.kill(actor)
            del pool_actors[max(len(pending), 1):]
            self.n_actors = len(pool_actors)
            pool = ray.util.ActorPool(pool_actors)
            bar = tqdm(total=total, initial=total - sum(len(s) for s in pending), unit="struct",
                       desc=f"featurize {described['identity']['name']} {described['identity']['model']} "
                            f"(ray, {self.n_actors} actors)", disable=not progress, dynamic_ncols=True)
            queue, failures = list(reversed(pending)), []
            submit = lambda shard: pool.submit(lambda actor, job: actor.featurize.remote(*job), (  # noqa: E731
                shard, None if items is None else items[shard.start:shard.stop],
                None if ids is None else ids[shard.start:shard.stop]))
            with bar:
                while queue and pool.has_free():
                    submit(queue.pop())
                while pool.has_next():
                    result = self._get(pool.get_next_unordered)
                    self._actor_cpu[result["actor"]] = max(result["cpu"], self._actor_cpu.get(result["actor"], 0.0))
                    if "error" in result:
                        # Stop handing out shards and let the ones in flight finish (their records
                        # are kept): every shard before the failed one is then done or failed, so
                        # the error raised is the first in input order, as in a local run.
                        failures.append((result["shard"].index, result["error"]))
                        queue.clear()
                        continue
                    work.write_record(result)
                    self.shards_run += 1
                    self.computed += result["computed"]
                    self.loaded |= result["loaded"]
                    bar.update(len(result["shard"]))
                    if queue:
                        submit(queue.pop())
            if failures:
                raise min(failures, key=lambda failure: failure[0])[1]
        finally:
            for actor in pool_actors:
                ray.kill(actor)
            if started:
                ray.shutdown()
        metadata = {
            **described["metadata"],
            "source": describe(source),
            "skipped": [],  # filled while the records are assembled
            "engine": {"name": "ray", "ray": ray.__version__, "actors": self.n_actors, "shard_size": self.shard_size,
                       "gpus_per_actor": self.gpus_per_actor},
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        return metadata, plan

    def _connect(self) -> bool:
        """Join or start Ray; True when this run started it (and so stops it)."""
        ray = self.ray
        if ray.is_initialized():
            if self.address is not None:
                raise InvalidOptionError(f"Ray is already connected in this process; address={self.address!r} "
                                         "cannot be applied (leave it out to use that connection)")
            return False
        settings = {"include_dashboard": False, "logging_level": logging.WARNING}
        if self.address is None:
            # A local Ray: one CPU per actor. Ray prestarts a worker per CPU, so ask for no more
            # CPUs than actors when their number is given.
            ray.init(num_cpus=self.actors or os.cpu_count() or 1, **settings)
        else:
            ray.init(address=self.address, **settings)
        return True

    def _pool_size(self) -> int:
        resources = self.ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if self.gpus_per_actor > 0:
            fit = int(gpus / self.gpus_per_actor + 1e-9)
            kind = f"{gpus:g} GPU(s) for {self.gpus_per_actor:g} per actor"
        else:
            fit, kind = cpus, f"{cpus} CPU(s) for one per actor"
        fit = min(fit, cpus)  # every actor also takes one CPU
        if self.actors is None:
            if fit < 1:
                raise InvalidOptionError(f"the Ray cluster has room for no actor ({kind}, {cpus} CPU(s))")
            return fit
        if self.actors > fit:
            # Ray would keep the extra actors pending, and their shards would wait forever.
            raise InvalidOptionError(f"{self.actors} actors asked for, but the Ray cluster has room for {fit} "
                                     f"({kind})")
        return self.actors

    def _get(self, what):
        """``ray.get`` of a reference (or a call that gets one); a typed hacknip error from an actor as itself."""
        try:
            return what() if callable(what) else self.ray.get(what)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, HackNIPError):
                raise exc.cause from None
            raise
