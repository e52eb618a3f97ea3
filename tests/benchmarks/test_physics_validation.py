"""The physics validation's shards: N processes fill the cache, the whole-set run reports their cost."""

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from benchmarks import physics_validation as pv
from hacknip_ase.physics import PhysicsSettings

IDENTITY = {"name": "chgnet", "model": "0.3.0"}


def test_parse_shard_takes_k_of_n_and_rejects_the_rest():
    assert pv.parse_shard(None) is None
    assert pv.parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "-1/2", "a/b", "3"):
        with pytest.raises(ValueError, match="K/N"):
            pv.parse_shard(bad)


def test_cli_rejects_a_bad_shard_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pv.main(["run", "--task", "matbench_phonons", "--shard", "2/2"])
    assert exit_info.value.code == 2
    assert "K/N" in capsys.readouterr().err


def _write_shard(out_dir, k, n, rows, settings, cpu, computed):
    path = pv.shard_path(out_dir, "matbench_phonons", "chgnet", (k, n))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": asdict(settings), "backbone_identity": IDENTITY, "subset": {"rows": rows},
                                "cost": {"cpu_seconds": cpu, "computed": computed}}))


def test_shard_costs_add_up_only_matching_shards(tmp_path):
    settings = PhysicsSettings(quantities=("phonon",))
    rows = np.arange(10)
    _write_shard(tmp_path, 0, 2, [0, 2, 4, 6, 8], settings, 50.0, 5)
    _write_shard(tmp_path, 1, 2, [1, 3, 5, 7, 9], settings, 70.0, 5)
    _write_shard(tmp_path, 0, 3, [0, 3, 6, 9], replace(settings, phonon_min_length=0.0), 9.0, 4)  # other settings
    costs = pv._shard_costs(tmp_path, "matbench_phonons", "chgnet", settings, IDENTITY, rows)
    assert costs == {"files": ["matbench_phonons__chgnet.0of2.json", "matbench_phonons__chgnet.1of2.json"],
                     "cpu_seconds": 120.0, "computed": 10}
    assert pv._shard_costs(tmp_path, "matbench_phonons", "chgnet", settings, IDENTITY, np.arange(4)) is None
    assert pv._shard_costs(tmp_path, "matbench_log_kvrh", "chgnet", settings, IDENTITY, rows) is None
    assert pv._shard_costs(tmp_path, "matbench_phonons", "chgnet", settings, {**IDENTITY, "model": "x"}, rows) is None


def _write_digest_shard(out_dir, task, k, n, digests, values, settings, identity, reasons=None, cpu=10.0):
    path = pv.shard_path(out_dir, task, "chgnet", (k, n))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": settings, "backbone_identity": identity, "digests": digests,
                                "values": values, "digest_reasons": reasons or {},
                                "cost": {"cpu_seconds": cpu, "computed": len(digests)},
                                "references": {}}))


def test_log_kvrh_and_log_gvrh_keep_each_others_columns():
    kept = pv.stored_columns(pv.TASKS["matbench_log_kvrh"][0])
    assert kept == pv.stored_columns(pv.TASKS["matbench_log_gvrh"][0])
    assert {"bulk_modulus_vrh", "eos_bulk_modulus", "shear_modulus_vrh"} <= set(kept)
    assert pv.stored_columns(pv.TASKS["matbench_phonons"][0]) == ["gamma_max_frequency"]


def test_committed_shards_assemble_by_digest_across_tasks(tmp_path):
    """A fresh machine (empty cache) builds the table from committed shards, including another task's."""
    settings, identity = PhysicsSettings(quantities=("eos", "elastic")), IDENTITY
    columns = ["bulk_modulus_vrh", "shear_modulus_vrh"]
    _write_digest_shard(tmp_path, "matbench_log_kvrh", 0, 2, ["a", "c"],
                        {"bulk_modulus_vrh": [100.0, None], "shear_modulus_vrh": [50.0, None]}, asdict(settings), identity,
                        reasons={"c": {"bulk_modulus_vrh": "elastic tensor not positive definite",
                                       "eos_bulk_modulus": "other column"}}, cpu=7.0)
    _write_digest_shard(tmp_path, "matbench_log_kvrh", 1, 2, ["b"],
                        {"bulk_modulus_vrh": [200.0], "shear_modulus_vrh": [80.0]}, asdict(settings), identity, cpu=5.0)
    _write_digest_shard(tmp_path, "matbench_log_kvrh", 0, 3, ["a", "b", "c"],  # other settings: never used
                        {"bulk_modulus_vrh": [1.0] * 3, "shear_modulus_vrh": [1.0] * 3},
                        asdict(replace(settings, elastic_strain=0.02)), identity)
    got = pv._from_shards(tmp_path, "chgnet", settings, identity, ["b", "a", "c"], columns)  # another task's order
    np.testing.assert_array_equal(got["values"], [[200.0, 80.0], [100.0, 50.0], [np.nan, np.nan]])
    assert got["reasons"] == [{}, {}, {"bulk_modulus_vrh": "elastic tensor not positive definite"}]
    assert got["cost"] == {"cpu_seconds": 12.0, "computed": 3}
    assert sorted(got["files"]) == ["matbench_log_kvrh__chgnet.0of2.json", "matbench_log_kvrh__chgnet.1of2.json"]
    assert pv._from_shards(tmp_path, "chgnet", settings, identity, ["a", "z"], columns) is None  # a row missing
    assert pv._from_shards(tmp_path, "chgnet", settings, {"name": "chgnet", "model": "other"}, ["a"], columns) is None
    assert pv._from_shards(tmp_path, "chgnet", settings, identity, ["a"], ["gamma_max_frequency"]) is None


def test_shards_written_before_a_setting_existed_serve_only_the_quantities_it_does_not_touch(tmp_path):
    """phonon_symprec came after the moduli shards: they still assemble; phonon shards without it do not."""
    moduli = PhysicsSettings(quantities=("eos", "elastic"))
    old_moduli = asdict(moduli)
    del old_moduli["phonon_symprec"]
    old_moduli.update(max_batch_atoms=7, phonon_min_length=1.0)  # neither changes a modulus
    old_identity = {**IDENTITY, "settings": {"recorded": "by an older version"}}
    _write_digest_shard(tmp_path, "matbench_log_kvrh", 0, 1, ["a"], {"bulk_modulus_vrh": [100.0]}, old_moduli,
                        old_identity)
    new_identity = {**IDENTITY, "settings": moduli.identity()}
    got = pv._from_shards(tmp_path, "chgnet", moduli, new_identity, ["a"], ["bulk_modulus_vrh"])
    np.testing.assert_array_equal(got["values"], [[100.0]])
    assert "phonon_symprec" not in moduli.identity() and "phonon_symprec" in PhysicsSettings().identity()
    assert not moduli.matches({**old_moduli, "relax": True})  # relax changes every quantity

    phonon = PhysicsSettings(quantities=("phonon",))
    old_phonon = asdict(phonon)
    del old_phonon["phonon_symprec"]  # computed with every displacement: not this method's numbers
    _write_digest_shard(tmp_path, "matbench_phonons", 0, 1, ["b"], {"gamma_max_frequency": [300.0]}, old_phonon,
                        IDENTITY)
    assert pv._from_shards(tmp_path, "chgnet", phonon, IDENTITY, ["b"], ["gamma_max_frequency"]) is None
    assert phonon.matches(asdict(phonon)) and not phonon.matches(old_phonon)
