"""Featurization throughput, structures/s, side by side for each backbone (not part of CI).

Modes, all on the same generated crystals (see conftest.make_crystals):

* ``engine``: :func:`hacknip_ase.featurize` (batched all-depth pass, writing a fresh cache);
* ``cached``: the same call again, served from the cache;
* ``reference``: HackNIP's protocol, one truncated forward pass per structure per depth;
* ``energy``: the NIP's own plain energy evaluation, one structure at a time;
* ``batched``: one plain batched energy forward pass (the NIP's own graphs and collation, no
  hooks, no checks, no cache): the floor the engine is compared with.

The modes run interleaved, batch by batch, so that load from other processes hits them alike.
Run: ``pytest benchmarks/perf --benchmark-only`` (options in conftest.py).
"""

from __future__ import annotations

import time

import pytest
import torch

from hacknip_ase import featurize, get_backbone

from .conftest import record

BACKBONES = ["chgnet", "orb", "sevennet", "mace"]
MODES = ["engine", "cached", "reference", "energy", "batched"]
_BUILT: dict = {}


def build(name: str, tmp_path_factory, elements):
    """CHGNet and SevenNet with their shipped weights; ORB-v2 and MACE as random-weight architectures."""
    if name not in _BUILT:
        if name == "orb":
            from tests.backbones.build_orb import save_random_orb_v2

            path = save_random_orb_v2(tmp_path_factory.mktemp("orb") / "orb-v2-random.ckpt")
            _BUILT[name] = get_backbone("orb", model="orb-v2", weights=path)
        elif name == "mace":
            from tests.backbones.build_mace import make_model, save

            # MACE-MP-0 "small" hyperparameters (128x0e, max_ell 3, correlation 3, 2 layers)
            model = make_model(hidden_irreps="128x0e", max_ell=3, elements=elements)
            path = save(model, tmp_path_factory.mktemp("mace") / "mace-small-random.pt")
            _BUILT[name] = get_backbone("mace", model="small", weights=path)
        else:
            _BUILT[name] = get_backbone(name)
    return _BUILT[name]


def plain_batched(name: str, backbone, atoms_list) -> None:
    """The NIP's energy for a batch through its own graph building and collation, no hooks."""
    with torch.no_grad():
        if name == "chgnet":
            backbone.model([g.to(backbone.device) for g in backbone.graphs(atoms_list)], task="e")
        elif name == "orb":
            backbone.model.predict(backbone._batch(atoms_list))
        elif name == "mace":
            backbone.model(backbone.batch(atoms_list), compute_force=False, training=False)
        elif name == "sevennet":
            from hacknip_ase.backbones._hooks import StopForward

            def stop(*_):  # energy is done; the force module would need autograd
                raise StopForward

            data = backbone.batch(atoms_list)
            backbone.model.set_is_batch_data(True)
            handle = backbone.model.force_output.register_forward_pre_hook(stop)
            try:
                backbone.model(data)
            except StopForward:
                pass
            finally:
                handle.remove()


def plain_energy(name: str, backbone, atoms) -> None:
    """One structure's energy the way the NIP's users get it (CHGNet: ``predict_structure``)."""
    if name == "chgnet":
        from pymatgen.io.ase import AseAtomsAdaptor

        backbone.model.predict_structure(AseAtomsAdaptor.get_structure(atoms), task="e")
    else:
        plain_batched(name, backbone, [atoms])


def reference(backbone, atoms) -> None:
    for depth in range(backbone.info.n_depths):
        backbone.truncated_features(atoms, depth).mean(axis=0)


@pytest.mark.parametrize("name", BACKBONES)
def test_throughput(name, benchmark, crystals, elements, perf_options, tmp_path_factory):
    """All modes for one backbone, interleaved batch by batch so that load from other processes
    on a shared machine hits every mode alike (the ratios are what this measures)."""
    backbone = build(name, tmp_path_factory, elements)
    batch_size, every = perf_options["batch_size"], perf_options["slow_every"]
    cache_dir = tmp_path_factory.mktemp(f"cache-{name}")
    seconds = dict.fromkeys(MODES, 0.0)
    counts = dict.fromkeys(MODES, 0)

    def timed(mode, work, n):
        start = time.perf_counter()
        work()
        seconds[mode] += time.perf_counter() - start
        counts[mode] += n

    def run():
        for start in range(0, len(crystals), batch_size):
            batch = crystals[start:start + batch_size]
            slow = [atoms for i, atoms in enumerate(batch, start) if i % every == 0]
            pair = [("engine", lambda: featurize(batch, backbone, batch_size=batch_size, cache_dir=cache_dir,
                                                 progress=False)),
                    ("batched", lambda: plain_batched(name, backbone, batch))]
            for mode, work in pair[:: 1 if start // batch_size % 2 == 0 else -1]:  # alternate who goes first
                timed(mode, work, len(batch))
            timed("reference", lambda: [reference(backbone, atoms) for atoms in slow], len(slow))
            timed("energy", lambda: [plain_energy(name, backbone, atoms) for atoms in slow], len(slow))
        timed("cached", lambda: featurize(crystals, backbone, batch_size=batch_size, cache_dir=cache_dir,
                                          progress=False), len(crystals))

    # warm-up (first-call allocations, lazy imports), not timed
    featurize(crystals[:2], backbone, cache=False, progress=False)
    plain_batched(name, backbone, crystals[:2])
    reference(backbone, crystals[0])
    plain_energy(name, backbone, crystals[0])

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    record(name, "depths", backbone.info.n_depths, 1.0)
    for mode in MODES:
        record(name, mode, counts[mode], seconds[mode])
    benchmark.extra_info.update(backbone=name, depths=backbone.info.n_depths, structures=counts,
                                rates={mode: counts[mode] / seconds[mode] for mode in MODES})
