"""Load test of the featurization engine: 5,000 generated structures, a SIGKILL halfway, resume.

The backbone is a deterministic numpy stand-in (tests/featurize_support.py), so the test
measures the engine, its cache and the writer, and the resumed output can be compared with an
uninterrupted run bit for bit. Peak RSS is measured in child processes, for 1,000 and 5,000
structures streamed from an extxyz file: memory is bounded by the batch, not the dataset (the
embeddings alone are 8 KB per structure, 41 MB for 5,000).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from ase.io import write

from hacknip_ase.featureset import FeatureSet

from .featurize_support import cache_entry_count, kill_after_entries, small_structures

REPO = Path(__file__).resolve().parents[1]
N = 5000

CHILD = """
import json, resource, sys, time
from hacknip_ase.featurize import featurize_to_file
from tests.featurize_support import descriptor_backbone

source, out, cache, slow = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
backbone = descriptor_backbone()
if slow:  # slow enough to be killed halfway
    fast = backbone._forward
    backbone._forward = lambda atoms, **kw: (time.sleep(slow), fast(atoms, **kw))[1]
start = time.process_time()
featurize_to_file(source, out, backbone, batch_size=64, cache_dir=False if cache == "-" else cache, progress=False)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu_s": time.process_time() - start}))
"""


def _child(*args, wait=True):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return process
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_five_thousand_structures_kill_resume_bit_for_bit_and_bounded_memory(tmp_path):
    # 2-atom cells, every third doubled to 4 atoms
    structures = [a.repeat((2, 1, 1)) if i % 3 == 0 else a for i, a in enumerate(small_structures(N, seed=42))]
    small, large = tmp_path / "small.extxyz", tmp_path / "large.extxyz"
    write(small, structures[:1000])
    write(large, structures)

    reference = _child(large, tmp_path / "reference.npz", "-", 0)
    cache = tmp_path / "cache"
    killed = _child(large, tmp_path / "resumed.npz", cache, 0.05, wait=False)
    kill_after_entries(killed, cache, N // 3, timeout=600)
    finished = cache_entry_count(cache)
    assert N // 3 <= finished < N
    assert not (tmp_path / "resumed.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no spill, no partial output

    resumed = _child(large, tmp_path / "resumed.npz", cache, 0)
    ref, out = FeatureSet.load(tmp_path / "reference.npz"), FeatureSet.load(tmp_path / "resumed.npz")
    assert out.ids == ref.ids and len(out) == N
    assert out.embeddings.tobytes() == ref.embeddings.tobytes()  # bit for bit
    assert cache_entry_count(cache) == N

    few = _child(small, tmp_path / "few.npz", "-", 0)
    growth = reference["peak_rss_mb"] - few["peak_rss_mb"]
    print(f"peak RSS: {few['peak_rss_mb']:.0f} MB (1,000), {reference['peak_rss_mb']:.0f} MB (5,000); "
          f"resumed run {resumed['peak_rss_mb']:.0f} MB, {finished} of {N} cached before the kill")
    # 4,000 more structures hold 33 MB of embeddings: memory bounded by the batch grows far less.
    assert growth < 15, (few, reference)
    assert np.isfinite(out.embeddings).all()
