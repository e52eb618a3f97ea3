"""engine="ray": a local 2-CPU Ray gives the local engine's output and cache bit for bit, and resumes by shard.

CHGNet with its shipped weights. Every Ray run here starts its actors afresh (each imports torch
and CHGNet), so the module keeps to a few runs; the kill test drives ``hacknip featurize`` in a
child process with a Ray of its own.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from ase.build import bulk
from ase.io import write

from benchmarks.tasks.synthetic import emt_alloys
from hacknip_ase import errors, featurize
from hacknip_ase.featureset import FeatureSet

from .featurize_support import small_structures

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray of 2 CPUs for the in-process tests (featurize joins a connected Ray)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def cache_files(root) -> dict[str, bytes]:
    """Every cache entry (structure embeddings) by its path under the cache root."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(Path(root).glob("*/*/*.emb"))}


def alloy_table(path, n: int = 64) -> Path:
    """``n`` generated EMT alloy cells as a Parquet table of pymatgen dicts (the documented table format)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pymatgen.io.ase import AseAtomsAdaptor

    structures, _ = emt_alloys(n, seed=11)
    texts = [json.dumps(AseAtomsAdaptor.get_structure(atoms).as_dict()) for atoms in structures]
    pq.write_table(pa.table({"id": [f"alloy-{i:03d}" for i in range(n)], "structure": texts}), path,
                   row_group_size=10)  # row groups that do not line up with the shards
    return Path(path)


def test_ray_equals_local_bit_for_bit_with_the_same_cache_entries(tmp_path):
    table = alloy_table(tmp_path / "alloys.parquet")
    local = featurize(table, "chgnet", batch_size=8, cache_dir=tmp_path / "local", progress=False)
    out = tmp_path / "ray.npz"
    distributed = featurize(table, "chgnet", batch_size=8, cache_dir=tmp_path / "ray", progress=False,
                            engine="ray", actors=2, shard_size=16, out=out)
    assert distributed.ids == local.ids == [f"alloy-{i:03d}" for i in range(64)]
    assert distributed.embeddings.dtype == np.float32
    assert np.array_equal(distributed.embeddings, local.embeddings)  # bit for bit, not within a tolerance
    assert cache_files(tmp_path / "ray") == cache_files(tmp_path / "local") and len(cache_files(tmp_path / "ray")) == 64
    for key in ("backbone", "options", "cache_identity", "source", "skipped", "format"):
        assert distributed.metadata[key] == local.metadata[key], key
    assert distributed.metadata["engine"]["name"] == "ray" and distributed.metadata["engine"]["actors"] == 2
    assert FeatureSet.load(out).ids == local.ids
    assert not out.with_name("ray.npz.shards").exists()  # the work folder goes once the output is in place

    # A re-run is served by the cache the first run wrote: no actor builds the model.
    from hacknip_ase.distributed import RayEngine
    from hacknip_ase.readers import read_structures

    engine = RayEngine("chgnet", batch_size=8, cache_dir=tmp_path / "ray", actors=2, shard_size=16)
    again = engine.run(read_structures(table))
    assert engine.computed == 0 and not engine.loaded and engine.shards_run == 4
    assert np.array_equal(again.embeddings, local.embeddings) and again.ids == local.ids


def structures_with_bad_ones():
    structures = small_structures(10, seed=4)
    overlapping = bulk("Si", "diamond", a=5.43)
    overlapping.positions[1] = overlapping.positions[0] + 0.1
    return [*structures[:3], overlapping, *structures[3:9], "not a structure", structures[9]]


def test_on_error_skip_as_locally(tmp_path):
    items = structures_with_bad_ones()
    local = featurize(items, "chgnet", batch_size=2, cache_dir=tmp_path / "local", progress=False, on_error="skip")
    distributed = featurize(items, "chgnet", batch_size=2, cache_dir=tmp_path / "ray", progress=False,
                            on_error="skip", engine="ray", actors=2, shard_size=4)
    assert distributed.ids == local.ids and len(local.ids) == 10
    assert np.array_equal(distributed.embeddings, local.embeddings)
    assert distributed.metadata["skipped"] == local.metadata["skipped"]
    assert [s["id"] for s in local.metadata["skipped"]] == ["3", "10"]


def test_a_failed_run_resumes_its_finished_shards_and_refuses_another_runs_folder(tmp_path):
    from hacknip_ase.distributed import RayEngine
    from hacknip_ase.readers import read_structures

    structures = small_structures(24, seed=6)
    for bad in (13, 22):  # in shards 3 and 5 of 6
        structures[bad].positions[1] = structures[bad].positions[0] + 0.1
    write(tmp_path / "set.extxyz", structures, format="extxyz")
    out = tmp_path / "out.npz"
    options = {"batch_size": 4, "cache_dir": tmp_path / "cache", "actors": 2, "shard_size": 4}
    engine = RayEngine("chgnet", **options)
    # The typed error, not Ray's wrapper; the first bad structure in input order, as locally.
    with pytest.raises(errors.OverlappingAtomsError, match="'set-13'"):
        engine.run_to_file(read_structures(tmp_path / "set.extxyz"), out)
    work = tmp_path / "out.npz.shards"
    finished = sorted(work.glob("shard-*.npz"))
    assert finished and not out.exists()  # shard 3 is handed out only after a first one finished
    assert not (work / "shard-000005.npz").exists()
    stamps = {path.name: path.stat().st_mtime_ns for path in finished}

    again = RayEngine("chgnet", **options)
    with pytest.raises(errors.OverlappingAtomsError, match="'set-13'"):
        again.run_to_file(read_structures(tmp_path / "set.extxyz"), out)
    assert again.shards_done >= len(finished)
    assert {path.name: path.stat().st_mtime_ns for path in finished} == stamps  # skipped, not rewritten

    with pytest.raises(errors.WorkFolderError, match="on_error"):
        RayEngine("chgnet", **options, on_error="skip").run_to_file(read_structures(tmp_path / "set.extxyz"), out)
    structures[-1] = small_structures(1, seed=9)[0]
    write(tmp_path / "set.extxyz", structures, format="extxyz")
    with pytest.raises(errors.WorkFolderError, match="fingerprint"):
        RayEngine("chgnet", **options).run_to_file(read_structures(tmp_path / "set.extxyz"), out)


def test_options_are_checked_before_ray_starts():
    with pytest.raises(errors.InvalidOptionError, match="multiple of batch_size"):
        featurize([bulk("Si")], "chgnet", engine="ray", batch_size=8, shard_size=12)
    with pytest.raises(errors.InvalidOptionError, match="only apply with engine='ray'"):
        featurize([bulk("Si")], "chgnet", actors=2)
    with pytest.raises(errors.InvalidOptionError, match="registry name"):
        from .featurize_support import chgnet

        featurize([bulk("Si")], chgnet(), engine="ray")
    with pytest.raises(errors.InvalidOptionError, match="room for 2"):
        featurize([bulk("Si")], "chgnet", engine="ray", actors=3, cache=False)


def test_a_bad_backbone_option_is_the_typed_error_not_a_dead_actor():
    with pytest.raises(errors.UnknownModelError, match="9.9"):
        featurize([bulk("Si")], "chgnet", model="9.9", engine="ray", actors=1, cache=False, progress=False)


def test_without_ray_engine_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(errors.MissingDependencyError, match=re.escape("pip install hacknip-ase[ray]")):
        featurize([bulk("Si")], "chgnet", engine="ray")


def _shard_records(work: Path) -> int:
    return len(list(work.glob("shard-*.npz")))


def test_killed_cli_run_resumes_without_recomputing_finished_shards(tmp_path, capsys):
    """SIGKILL ``hacknip featurize --engine ray`` after two of its 8 shards, run it again: same output as local."""
    structures = [atoms.repeat((2, 1, 1)) for atoms in emt_alloys(32, seed=12)[0]]  # 16 atoms: shards take a while
    write(tmp_path / "set.extxyz", structures, format="extxyz")
    out, work = tmp_path / "out.npz", tmp_path / "out.npz.shards"
    argv = [sys.executable, "-m", "hacknip_ase.cli", "featurize", str(tmp_path / "set.extxyz"), "-o", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--batch-size", "4", "--engine", "ray", "--actors", "2",
            "--shard-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # A session of its own: the kill then reaches Ray's helper processes the child started too.
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while _shard_records(work) < 2:
            assert child.poll() is None, child.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the child finished too few shards"
            time.sleep(0.02)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    finished = _shard_records(work)
    assert 2 <= finished < 8 and not out.exists()

    # The re-run, in this process: it joins the module's Ray instead of starting one (seconds saved).
    from hacknip_ase.cli import main

    assert main(argv[3:]) == 0
    stderr = capsys.readouterr().err
    # Shards finished before the kill are not run again; at most the ones in flight were lost.
    summary = re.search(r"(\d+) computed, (\d+) reused, 0 skipped; (\d+) shards run on 2 Ray actors, "
                        r"(\d+) found finished", stderr)
    assert summary, stderr[-3000:]
    computed, reused, run, found = map(int, summary.groups())
    assert found == finished and run == 8 - finished and computed + reused == 32
    assert computed <= 32 - 4 * finished  # the in-flight shards' finished batches came from the cache

    result = FeatureSet.load(out)
    local = featurize(tmp_path / "set.extxyz", "chgnet", batch_size=4, cache_dir=tmp_path / "local", progress=False)
    assert result.ids == local.ids == [f"set-{i}" for i in range(32)]
    assert np.array_equal(result.embeddings, local.embeddings)
    assert cache_files(tmp_path / "cache") == cache_files(tmp_path / "local")
