"""Fixtures of the throughput benchmark: 256 generated crystals, the backbones, the result table.

Options (``pytest benchmarks/perf --benchmark-only ...``):
  --perf-n N               crystals in the set (default 256)
  --perf-slow-every K      run the slow per-structure protocols (reference, plain energy) on every
                           K-th crystal only (default 1: all); rates stay per structure
  --perf-batch-size B      engine / batched-forward batch size (default 32)
  --perf-table PATH        also write the measured rates and table as JSON (after every test)
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii

_RESULTS: dict[str, dict[str, float]] = {}
_TABLE_PATH: list[str] = []

CATIONS = ["Li", "Na", "K", "Rb", "Mg", "Ca", "Sr", "Ba", "Zn", "Cd", "Al", "Ga", "In", "Ti", "Zr",
           "Fe", "Co", "Ni", "Cu", "Mn", "Cr", "V", "Sn", "Pb", "Y", "La"]
ANIONS = ["O", "S", "Se", "Te", "F", "Cl", "Br", "I", "N", "P", "As"]
METALS = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Fe", "Co", "Cr", "Mo", "W", "V", "Nb", "Ta", "Ti",
          "Zr", "Mg", "Zn", "Li", "Na", "K", "Ca", "Sn"]


def pytest_addoption(parser):
    group = parser.getgroup("hacknip perf")
    group.addoption("--perf-n", type=int, default=256)
    group.addoption("--perf-slow-every", type=int, default=1)
    group.addoption("--perf-batch-size", type=int, default=32)
    group.addoption("--perf-table", default=None)


def _prototype(kind: str, rng) -> tuple[Atoms, float]:
    """A unit cell and the nearest-neighbour distance its elements want (sum of covalent radii)."""
    pick = lambda pool: pool[rng.integers(len(pool))]  # noqa: E731
    if kind in ("rocksalt", "zincblende", "wurtzite", "cesiumchloride", "fluorite"):
        a, b = pick(CATIONS), pick(ANIONS)
        formula = a + b + ("2" if kind == "fluorite" else "")
        atoms = bulk(formula, kind, a=5.0, c=8.0) if kind == "wurtzite" else bulk(formula, kind, a=5.0)
        want = covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]]
    elif kind == "perovskite":
        a, b, x = pick(["Sr", "Ba", "Ca", "K", "La", "Pb"]), pick(["Ti", "Zr", "Nb", "Fe", "Mn", "Sn"]), pick(["O", "F"])
        atoms = Atoms([a, b, x, x, x], scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5],
                                                        [0, 0.5, 0.5]], cell=[4.0] * 3, pbc=True)
        want = covalent_radii[atomic_numbers[b]] + covalent_radii[atomic_numbers[x]]
    else:  # fcc / bcc / hcp alloys with random substitution
        host = pick(METALS)
        atoms = bulk(host, kind, a=3.6, c=5.8) if kind == "hcp" else bulk(host, kind, a=3.6, cubic=True)
        want = 2 * covalent_radii[atomic_numbers[host]]
    return atoms, want


def make_crystals(n: int = 256, seed: int = 2024) -> list[Atoms]:
    """``n`` varied, physically sensible crystals of 8..60 atoms (deterministic)."""
    rng = np.random.default_rng(seed)
    kinds = ["rocksalt", "zincblende", "wurtzite", "cesiumchloride", "fluorite", "perovskite", "fcc", "bcc", "hcp"]
    crystals = []
    while len(crystals) < n:
        atoms, want = _prototype(kinds[len(crystals) % len(kinds)], rng)
        target = int(rng.integers(8, 61))
        repeats = [(i, j, k) for i in range(1, 5) for j in range(1, 5) for k in range(1, 5)
                   if 8 <= len(atoms) * i * j * k <= 60]
        best = min(repeats, key=lambda r: (abs(len(atoms) * np.prod(r) - target), rng.random()))
        atoms = atoms.repeat(best)
        if kinds[len(crystals) % len(kinds)] in ("fcc", "bcc", "hcp"):  # alloy: substitute 0-40 %
            sites = rng.random(len(atoms)) < rng.uniform(0, 0.4)
            atoms.numbers[sites] = atomic_numbers[METALS[rng.integers(len(METALS))]]
        # Scale so the nearest neighbours sit at their covalent distance (+-5 %), then strain/rattle.
        from ase.neighborlist import neighbor_list

        nearest = neighbor_list("d", atoms, 6.0).min()
        atoms.set_cell(atoms.cell * want * rng.uniform(0.95, 1.05) / nearest, scale_atoms=True)
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        crystals.append(atoms)
    return crystals


def task_sample(task_name: str, n: int) -> tuple[list, str, list]:
    """``n`` seeded random structures of a benchmark task when its data is present (else as many
    generated crystals), the set's description, and the whole source's structures (for its mean size)."""
    from benchmarks.data import resolve_data_dir
    from benchmarks.tasks import get_task

    task = get_task(task_name)
    root = resolve_data_dir(os.environ.get("HACKNIP_DATA_DIR"))
    if task.is_present(root):
        data = task.load(root)
        order = np.random.default_rng(0).permutation(len(data))[:n]
        return [data.inputs[i] for i in order], task_name, list(data.inputs)
    crystals = make_crystals(n, seed=0)
    return crystals, f"generated crystals (no {task_name.removeprefix('matbench_')} data)", crystals


@pytest.fixture(scope="session")
def perf_options(request) -> dict:
    return {key: request.config.getoption(f"--perf-{key.replace('_', '-')}")
            for key in ("n", "slow_every", "batch_size", "table")}


@pytest.fixture(scope="session")
def crystals(perf_options) -> list[Atoms]:
    return make_crystals(perf_options["n"])


@pytest.fixture(scope="session")
def elements(crystals) -> list[int]:
    return sorted({int(z) for atoms in crystals for z in atoms.numbers})


def pytest_configure(config):
    if config.getoption("--perf-table", None):
        _TABLE_PATH[:] = [config.getoption("--perf-table")]


def record(backbone: str, mode: str, n: int, seconds: float) -> None:
    _RESULTS.setdefault(backbone, {})[mode] = n / seconds
    if _TABLE_PATH:  # after every measurement: a long run that is stopped keeps what it measured
        with open(_TABLE_PATH[0], "w") as handle:
            json.dump({"measured": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                       "rates": _RESULTS, "table": format_table(_RESULTS)}, handle, indent=2)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _RESULTS:
        return
    table = format_table(_RESULTS)
    terminalreporter.write_sep("=", "hacknip featurization throughput (structures/s)")
    terminalreporter.write_line(table)


MODES = [("engine", "engine"), ("cached", "engine, cached re-run"), ("reference", "reference (truncated per depth)"),
         ("energy", "plain energy, per structure"), ("batched", "plain batched forward")]


def format_table(results: dict) -> str:
    header = "| backbone | depths | " + " | ".join(label for _, label in MODES) + \
             " | engine / reference | engine cost / plain batched |"
    lines = [header, "|" + "---|" * (len(MODES) + 4)]
    for name, rates in results.items():
        cells = [f"{rates[key]:.2f}" if key in rates else "-" for key, _ in MODES]
        speedup = f"{rates['engine'] / rates['reference']:.1f}x" if {"engine", "reference"} <= set(rates) else "-"
        cost = f"{rates['batched'] / rates['engine']:.2f}" if {"engine", "batched"} <= set(rates) else "-"
        lines.append(f"| {name} | {int(rates.get('depths', 0))} | " + " | ".join(cells) + f" | {speedup} | {cost} |")
    return "\n".join(lines)
