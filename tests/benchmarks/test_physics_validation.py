"""The physics validation's shards: N processes fill the cache, the whole-set run reports their cost."""

import json

import numpy as np
import pytest

from benchmarks import physics_validation as pv


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
    path.write_text(json.dumps({"settings": settings, "subset": {"rows": rows},
                                "cost": {"cpu_seconds": cpu, "computed": computed}}))


def test_shard_costs_add_up_only_matching_shards(tmp_path):
    settings = {"phonon_min_length": 6.0, "quantities": ("phonon",)}  # a tuple, as asdict(PhysicsSettings) gives
    rows = np.arange(10)
    _write_shard(tmp_path, 0, 2, [0, 2, 4, 6, 8], settings, 50.0, 5)
    _write_shard(tmp_path, 1, 2, [1, 3, 5, 7, 9], settings, 70.0, 5)
    _write_shard(tmp_path, 0, 3, [0, 3, 6, 9], {**settings, "phonon_min_length": 0.0}, 9.0, 4)  # other settings
    costs = pv._shard_costs(tmp_path, "matbench_phonons", "chgnet", settings, rows)
    assert costs == {"files": ["matbench_phonons__chgnet.0of2.json", "matbench_phonons__chgnet.1of2.json"],
                     "cpu_seconds": 120.0, "computed": 10}
    assert pv._shard_costs(tmp_path, "matbench_phonons", "chgnet", settings, np.arange(4)) is None  # other rows
    assert pv._shard_costs(tmp_path, "matbench_log_kvrh", "chgnet", settings, rows) is None
