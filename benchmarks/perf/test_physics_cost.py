"""Cost of the NIP-simulated physics descriptors: CPU-s per structure, per quantity and backbone.

On a seeded handful of matbench_log_kvrh structures (from ``$HACKNIP_DATA_DIR``; generated
crystals when the data is absent), one torch thread, no cache: each quantity of
:mod:`hacknip_ase.physics` alone (``energy``, ``eos``, ``elastic``, ``phonon``; ``formation``
once the elemental references are cached, and the references' own one-off cost per element),
measured with ``time.process_time`` (CPU time of this process, so load from other processes
changes it less than wall time). The projection to the full log_kvrh set (10,987 structures)
scales the per-structure cost by the set's mean atom count over the sample's.

Run: ``pytest benchmarks/perf/test_physics_cost.py --benchmark-only -s -p no:cacheprovider``
(``HACKNIP_PHYSICS_N=8`` structures by default; ``HACKNIP_PHYSICS_TABLE=path.json`` also
writes the table; ``HACKNIP_PHYSICS_SYMMETRY_TABLE=path.json`` the phonon-symmetry one).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from benchmarks.harness.results import git_info
from benchmarks.perf.conftest import task_sample
from hacknip_ase import get_backbone
from hacknip_ase.physics import PHYSICS_COLUMNS, ElementalReferences, PhysicsSettings, compute_physics

N = int(os.environ.get("HACKNIP_PHYSICS_N", "8"))
QUANTITIES = ("energy", "eos", "elastic", "phonon", "formation")
FULL_SET = 10987
_TABLE: dict = {}
_SYMMETRY_TABLE: dict = {}


@pytest.mark.parametrize("name", ["chgnet", "sevennet"])
def test_cpu_seconds_per_structure(benchmark, name):
    torch.set_num_threads(1)
    structures, source, whole = task_sample("matbench_log_kvrh", N)
    full_mean_atoms = float(np.mean([len(a) for a in whole]))
    backbone = get_backbone(name)
    references = ElementalReferences(backbone, None)  # in memory: the first pass pays the one-off cost
    start = time.process_time()
    for z in sorted({int(z) for a in structures for z in a.numbers}):
        references.energy(z)
    n_elements = len(references.records)
    per_element = (time.process_time() - start) / n_elements
    cpu = {}

    def measure():
        for quantity in QUANTITIES:
            begin = time.process_time()
            compute_physics(structures, backbone, PhysicsSettings(quantities=(quantity,)), references)
            cpu[quantity] = (time.process_time() - begin) / len(structures)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    scale = full_mean_atoms / np.mean([len(a) for a in structures])
    row = {"source": source, "n_structures": len(structures), "mean_atoms": float(np.mean([len(a) for a in structures])),
           "cpu_s_per_structure": cpu, "reference_cpu_s_per_element": per_element,
           "all_quantities_cpu_s_per_structure": sum(cpu.values()),
           # rough: the costs grow with atoms (phonons with their square; this is a lower bound for them)
           "projected_log_kvrh_cpu_hours": {q: c * scale * FULL_SET / 3600 for q, c in cpu.items()},
           "threads": torch.get_num_threads(), "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "git": git_info()}
    _TABLE[name] = row
    benchmark.extra_info.update(row)
    if os.environ.get("HACKNIP_PHYSICS_TABLE"):
        with open(os.environ["HACKNIP_PHYSICS_TABLE"], "w") as handle:
            json.dump(_TABLE, handle, indent=1)
    print(f"\n{name} on {len(structures)} {source} ({row['mean_atoms']:.1f} atoms): CPU-s per structure "
          + ", ".join(f"{q} {c:.3f}" for q, c in cpu.items()) + f"; references {per_element:.2f} CPU-s per element")


@pytest.mark.parametrize("name", ["chgnet", "sevennet"])
def test_phonon_symmetry_saving(benchmark, name):
    """Gamma phonons with and without the symmetry-reduced displacements, side by side on the same
    matbench_phonons structures: the CPU-time ratio, the displaced copies, and how far the Gamma
    maximum moves (``HACKNIP_PHYSICS_PHONON_N`` structures, default 6)."""
    torch.set_num_threads(1)
    n = int(os.environ.get("HACKNIP_PHYSICS_PHONON_N", "6"))
    structures, source, _ = task_sample("matbench_phonons", n)
    backbone = get_backbone(name)
    cpu, copies, gamma = {0.0: 0.0, 1e-5: 0.0}, {0.0: 0, 1e-5: 0}, {0.0: [], 1e-5: []}

    def measure():
        for structure in structures:  # interleaved, so that load drifts alike for both
            for symprec in (0.0, 1e-5):
                begin = time.process_time()
                result = compute_physics([structure], backbone, PhysicsSettings(quantities=("phonon",),
                                                                                phonon_symprec=symprec))[0]
                cpu[symprec] += time.process_time() - begin
                copies[symprec] += result.details["phonon_supercell"].get("displaced_copies", 0)
                gamma[symprec].append(result.values[PHYSICS_COLUMNS.index("gamma_max_frequency")])

    benchmark.pedantic(measure, rounds=1, iterations=1)
    shift = np.abs(np.array(gamma[1e-5]) - np.array(gamma[0.0]))
    row = {"source": source, "n_structures": len(structures), "mean_atoms": float(np.mean([len(a) for a in structures])),
           "cpu_s_per_structure": {"all displacements": cpu[0.0] / len(structures),
                                   "symmetry-reduced": cpu[1e-5] / len(structures)},
           "cpu_ratio": cpu[0.0] / cpu[1e-5], "displaced_copies": {"all": copies[0.0], "symmetry-reduced": copies[1e-5]},
           "gamma_max_abs_shift_cm1": {"max": float(np.nanmax(shift)), "mean": float(np.nanmean(shift))},
           "threads": torch.get_num_threads(), "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "git": git_info()}
    benchmark.extra_info.update(row)
    _SYMMETRY_TABLE[name] = row
    if os.environ.get("HACKNIP_PHYSICS_SYMMETRY_TABLE"):
        with open(os.environ["HACKNIP_PHYSICS_SYMMETRY_TABLE"], "w") as handle:
            json.dump(_SYMMETRY_TABLE, handle, indent=1)
    print(f"\n{name} phonons on {len(structures)} {source}: {row['cpu_s_per_structure']} CPU-s per structure, "
          f"ratio {row['cpu_ratio']:.2f}, copies {row['displaced_copies']}, Gamma max shift {row['gamma_max_abs_shift_cm1']}")
