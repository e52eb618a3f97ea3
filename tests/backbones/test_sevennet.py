"""SevenNet-specific checks: scoped trust of e3nn's import, safe checkpoint loading."""

import os
import shutil

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from hacknip_ase import errors
from hacknip_ase.backbones import get_backbone

from .build_sevennet import build

EXPLOITED = []


def _exploit():
    EXPLOITED.append(True)
    return {}


class _Payload:
    """Pickles to a call of ``_exploit``: only a full (unsafe) unpickling would run it."""

    def __reduce__(self):
        return (_exploit, ())


@pytest.fixture(scope="module")
def sevennet(tmp_path_factory):
    return build(tmp_path_factory.mktemp("sevennet"))


def test_sevennet_leaves_no_global_unsafe_load_switch(sevennet):
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    assert sevennet.info.n_depths == 6 and sevennet.info.dim == 128 and sevennet.info.cutoff == 5.0


def test_sevennet_user_checkpoint_path_gives_same_model(sevennet, tmp_path):
    import sevenn._const

    path = tmp_path / "mine.pth"
    shutil.copy(sevenn._const.SEVENNET_0_11Jul2024, path)
    mine = get_backbone("sevennet", weights=path)
    assert mine.info.weights_sha256 == sevennet.info.weights_sha256 and mine.info.model == "mine.pth"
    structures = [bulk("Si"), molecule("H2O")]
    np.testing.assert_array_equal(mine.embed(structures), sevennet.embed(structures))


def test_sevennet_refuses_checkpoint_that_needs_full_unpickling(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "config": _Payload()}, path)
    with pytest.raises(errors.CorruptWeightsError, match="weights_only=True"):
        get_backbone("sevennet", weights=path)
    assert not EXPLOITED


@pytest.mark.parametrize("options, error", [
    ({"weights": "/nonexistent/sevennet.pth"}, errors.WeightsNotFoundError),
    ({"model": "7net-99"}, errors.UnknownModelError),
])
def test_sevennet_bad_weights_options(options, error):
    with pytest.raises(error):
        get_backbone("sevennet", **options)


def test_sevennet_garbage_checkpoint(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(errors.CorruptWeightsError):
        get_backbone("sevennet", weights=path)


def test_sevennet_forces_flag_does_not_change_features_or_energy(sevennet):
    structures = [bulk("Si"), molecule("H2O")]
    plain, full = sevennet.forward(structures), sevennet.forward(structures, forces=True)
    np.testing.assert_allclose(plain.energy, full.energy, atol=1e-5)
    for a, b in zip(plain.node_features, full.node_features, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert plain.forces is None and full.forces[1].shape == (3, 3) and full.stress[1] is None
