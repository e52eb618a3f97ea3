"""Command-line start-up and cached re-runs, side by side (wall time of whole processes).

* ``help``: ``hacknip --help`` and ``hacknip-bench --help`` (no torch, no NIP package imported);
* ``featurize cold``: ``hacknip featurize`` of 100 CIF files into an empty cache (imports torch
  and CHGNet, builds the model, parses and computes every structure);
* ``featurize warm``: the same command again, every structure cached (no model, no parse).

Run: ``pytest benchmarks/perf/test_startup.py --benchmark-only``; the ratio cold / warm is the
figure to quote (both measured in one run). Each process runs one torch thread.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ase.io import write

from tests.featurize_support import small_structures

N_FILES = 100
_BIN = Path(sys.executable).parent
_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_COUNTER = itertools.count()


def _script(name: str) -> str:
    return str(_BIN / name) if (_BIN / name).exists() else shutil.which(name)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, env=_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cif_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifs")
    for i, atoms in enumerate(small_structures(N_FILES, seed=2)):
        write(folder / f"s{i:03d}.cif", atoms)
    return folder


@pytest.mark.benchmark(group="cli start-up")
@pytest.mark.parametrize("command", ["hacknip", "hacknip-bench"])
def test_help(benchmark, command):
    benchmark.pedantic(_run, args=(_script(command), "--help"), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="cli featurize, 100 CIFs")
def test_featurize_cold(benchmark, cif_folder, tmp_path):
    def fresh_cache():
        cache = tmp_path / f"cache{next(_COUNTER)}"
        return (_script("hacknip"), "featurize", str(cif_folder), "-o", str(tmp_path / "cold.npz"), "-q",
                "--cache-dir", str(cache)), {}

    benchmark.pedantic(_run, setup=fresh_cache, rounds=3)


@pytest.mark.benchmark(group="cli featurize, 100 CIFs")
def test_featurize_warm(benchmark, cif_folder, tmp_path):
    argv = (_script("hacknip"), "featurize", str(cif_folder), "-o", str(tmp_path / "warm.npz"), "-q",
            "--cache-dir", str(tmp_path / "cache"))
    _run(*argv)  # fills the cache
    benchmark.pedantic(_run, args=argv, rounds=5)
