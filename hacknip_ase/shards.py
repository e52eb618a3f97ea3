"""The work folder of a distributed featurization run: its plan and one record per finished shard.

Work folder (``OUT.shards/``, or a temporary folder when no output file is asked for):

``plan.json``
    What the shards are of: format marker, input description and fingerprint (path, size and
    modification time of the file(s), or a digest of in-memory structures), number of entries,
    shard and batch size, ``on_error`` and the cache identity. A re-run with another input or
    options refuses the folder (:class:`~hacknip_ase.errors.WorkFolderError`) rather than mix
    shards of two runs.
``shard-NNNNNN.npz``
    One finished shard in the portable features format; its metadata holds ``shard`` (index,
    start, stop), ``skipped`` and ``computed``. A record that does not load or does not cover
    its shard is deleted and the shard recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from .cache import structure_digest
from .errors import FeatureFileError, StructureTypeError, WorkFolderError
from .featureset import FORMAT, FORMAT_VERSION, FeatureSet
from .files import atomic_write
from .readers import Shard
from .structures import as_atoms

WORK_FORMAT = "hacknip-shards"
WORK_FORMAT_VERSION = 1

log = logging.getLogger(__name__)


class WorkFolder:
    """``OUT.shards/`` (or a temporary folder): the plan and the finished shards of one run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.shape: tuple[int, int] | None = None  #: (n_depths, dim) every record must have, once known

    def check_plan(self, plan: dict, *, write: bool) -> None:
        """Refuse a work folder of another run; ``write``: record ``plan`` in a new folder.

        Without ``write`` the backbone's cache identity is not known yet and is not compared.
        """
        work = self.path
        path = work / "plan.json"
        plan = json.loads(json.dumps(plan, default=str))
        try:
            recorded = json.loads(path.read_text())
        except FileNotFoundError:
            if write:
                work.mkdir(parents=True, exist_ok=True)
                atomic_write(path, (json.dumps(plan, indent=1, sort_keys=True) + "\n").encode())
            return
        except ValueError as exc:
            raise WorkFolderError(f"{path} is damaged ({exc}); remove the folder {work} to start over") from exc
        keys = set(plan) | (set(recorded) if write else set())
        changed = sorted(k for k in keys if plan.get(k) != recorded.get(k))
        if changed:
            raise WorkFolderError(f"the work folder {work} holds shards of another run ({', '.join(changed)} "
                                  "changed); remove it to start over, or give another output file")

    def shard_path(self, shard: Shard) -> Path:
        return self.path / f"shard-{shard.index:06d}.npz"

    def finished(self, shard: Shard) -> bool:
        """Whether ``shard`` has a whole record; a damaged one is deleted (the shard is recomputed)."""
        path = self.shard_path(shard)
        if not path.exists():
            return False
        try:
            self.record(shard)
        except FeatureFileError as exc:
            log.warning("%s: deleted, the shard is recomputed", exc)
            path.unlink(missing_ok=True)
            return False
        return True

    def record(self, shard: Shard) -> FeatureSet:
        path = self.shard_path(shard)
        record = FeatureSet.load(path)
        info = record.metadata.get("shard", {})
        if info != {"index": shard.index, "start": shard.start, "stop": shard.stop} or \
                len(record) + len(record.metadata.get("skipped", [])) != len(shard) or \
                record.embeddings.shape[1:] != self.shape:
            raise FeatureFileError(f"{path} does not hold shard {shard.index} (entries {shard.start}-{shard.stop})")
        return record

    def write_record(self, result: dict) -> None:
        shard = result["shard"]
        metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "shard": {"index": shard.index, "start": shard.start, "stop": shard.stop},
                    "skipped": result["skipped"], "computed": result["computed"]}
        FeatureSet(result["ids"], result["embeddings"], metadata).save(self.shard_path(shard))


def fingerprint(reader, items, ids) -> str:
    """What identifies the input cheaply: file sizes and times, or in memory the structures' content."""
    digest = hashlib.sha256()
    if reader is not None:
        path = Path(reader.path).resolve()
        files = getattr(reader, "files", None) or [path]
        digest.update(f"{reader.format}\0{path}\0".encode())
        for file in files:
            stat = Path(file).stat()
            digest.update(f"{Path(file).name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        if ids is not None:
            digest.update(json.dumps(ids).encode())
        return digest.hexdigest()
    for sid, item in items:
        digest.update(f"{sid}\0".encode())
        try:
            digest.update(structure_digest(as_atoms(item)).encode())
        except StructureTypeError:  # not a structure: featurizing it will say so, or skip it
            digest.update(repr(type(item)).encode())
    return digest.hexdigest()


def sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
