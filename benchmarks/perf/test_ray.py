"""Local Ray with 1 and 2 actors against the local engine, on the same crystals (not part of CI).

Both featurize the crystals of ``conftest.make_crystals`` (``--perf-n``, default 256; batch
``--perf-batch-size``) with CHGNet into a fresh cache, and are run in turn, twice each (local,
ray, local, ray), so that load from other processes hits them alike. Recorded per run:

* wall time, end to end: for Ray, starting a local 2-CPU Ray, two actors (each imports torch
  and CHGNet and loads the model), every shard, and the output file;
* CPU time: the local engine's process; for Ray, the driver plus both actor processes
  (start-up and model loading included; Ray's own daemons are not counted);
* Ray's start-up: until the first actor is ready (Ray started, the actor's imports and model),
  so that the ratio can also be given without it (the local engine's own model loading, about
  a second, stays in its wall time).

The figure to quote is the throughput ratio ray / local (local wall / Ray wall), with the CPU
time beside it. Run: ``pytest benchmarks/perf/test_ray.py --benchmark-only -s`` (the table is
printed at the end and kept in each benchmark's ``extra_info``). The local engine runs one
torch thread, as each actor does.
"""

from __future__ import annotations

import time

import pytest
import torch

from hacknip_ase import featurize
from hacknip_ase.distributed import RayEngine
from hacknip_ase.inputs import as_source

_RUNS: list[dict] = []


def _local(crystals, cache, batch_size: int) -> dict:
    torch.set_num_threads(1)
    wall, cpu = time.perf_counter(), time.process_time()
    result = featurize(crystals, "chgnet", batch_size=batch_size, cache_dir=cache, progress=False)
    return {"mode": "local", "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
            "n": len(result)}


def _ray(crystals, cache, batch_size: int, out, actors: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    engine = RayEngine("chgnet", batch_size=batch_size, cache_dir=cache, actors=actors,
                       shard_size=4 * batch_size)  # several shards per actor
    engine.run_to_file(as_source(crystals, None, None), out)
    driver = time.process_time() - cpu
    return {"mode": f"ray{actors}", "wall": time.perf_counter() - wall, "cpu": driver + engine.actor_cpu_seconds,
            "driver_cpu": driver, "startup": engine.startup_seconds, "n": len(crystals), "computed": engine.computed}


@pytest.mark.benchmark(group="ray vs local engine")
@pytest.mark.parametrize("mode", ["local", "ray1", "ray2"])
@pytest.mark.parametrize("round_", [1, 2])
def test_ray_vs_local(benchmark, crystals, perf_options, tmp_path, mode, round_):
    batch_size = perf_options["batch_size"]
    run = (lambda: _local(crystals, tmp_path / "cache", batch_size)) if mode == "local" else \
        (lambda: _ray(crystals, tmp_path / "cache", batch_size, tmp_path / "out.npz", int(mode[-1])))
    measured = benchmark.pedantic(run, rounds=1, iterations=1)
    measured["round"] = round_
    benchmark.extra_info.update(measured)
    _RUNS.append(measured)
    assert measured["n"] == len(crystals)


@pytest.fixture(scope="module", autouse=True)
def ratio_table(request):
    """Prints local / Ray wall and CPU per round and the throughput ratio, after the module's runs."""
    yield
    if not _RUNS:
        return
    lines = ["", "| round | local wall s (CPU s) | 1 actor wall s (start-up; CPU s) | 2 actors wall s (start-up; CPU s) | "
             "2 actors / 1 actor, after start-up | 2 actors / local, per core, after start-up |",
             "|---|---|---|---|---|---|"]
    for round_ in sorted({r["round"] for r in _RUNS}):
        pair = {r["mode"]: r for r in _RUNS if r["round"] == round_}
        if set(pair) == {"local", "ray1", "ray2"}:
            local, one, two = pair["local"], pair["ray1"], pair["ray2"]
            net1, net2 = one["wall"] - one["startup"], two["wall"] - two["startup"]
            lines.append(f"| {round_} | {local['wall']:.1f} ({local['cpu']:.1f}) | {one['wall']:.1f} ({one['startup']:.1f}; "
                         f"{one['cpu']:.1f}) | {two['wall']:.1f} ({two['startup']:.1f}; {two['cpu']:.1f}) | "
                         f"{net1 / net2:.2f} | {local['wall'] / net2 / 2:.2f} |")
    print("\n".join(lines))
