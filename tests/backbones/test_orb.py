"""ORB-specific behaviour: model names, weights errors, feature modes, the batched outputs
against ORBCalculator, rotation dependence, and the conservative orb-v3 path."""

import time

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from hacknip_ase import errors
from hacknip_ase.backbones import get_backbone
from hacknip_ase.backbones.orb import available_models, weights_url

from .build_orb import native_calculator, save_random_orb_v2

TOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These graphs are tiny. On a shared 2-core box, intra-op threads only add contention
    # (about 15x slower per forward).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_random_orb_v2(tmp_path_factory.mktemp("orb") / "orb-v2-random.ckpt")


@pytest.fixture(scope="module")
def orb(weights):
    return get_backbone("orb", model="orb-v2", weights=weights)


@pytest.fixture(scope="module")
def orb_decoder(weights):
    return get_backbone("orb", model="orb-v2", weights=weights, features="decoder")


def rattled_rocksalt():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.05, seed=5)
    return atoms


def test_model_names_come_from_orb_models():
    from orb_models.forcefield.pretrained import ORB_PRETRAINED_MODELS

    names = available_models()
    v3 = {name for name in ORB_PRETRAINED_MODELS if name.startswith("orb-v3-")}
    assert "orb-v2" in names and v3 and v3 <= set(names)
    assert not any("v1" in name for name in names)  # orb-models' deprecated entries raise
    assert weights_url("orb-v2").startswith("https://") and weights_url("orb-v2").endswith("orb-v2-20241011.ckpt")


def test_info_describes_orb_v2(orb, weights):
    from hacknip_ase.weights import sha256_file

    info = orb.info
    assert (info.n_depths, info.dim) == (16, 256)  # encoder + 15 message-passing layers
    assert info.model == "orb-v2" and info.features == "node"
    assert info.cutoff == 6.0 and orb.max_num_neighbors == 20
    assert info.elements == frozenset(range(1, 118))
    assert info.weights_sha256 == sha256_file(weights)
    assert orb.point_symmetry is None


def test_unknown_model_and_feature_mode_are_typed_errors(weights):
    with pytest.raises(errors.UnknownModelError, match="orb-v3-direct-20-omat"):
        get_backbone("orb", model="orb-v4", weights=weights)
    with pytest.raises(errors.HackNIPError, match="features"):
        get_backbone("orb", weights=weights, features="edges")


def test_missing_weights_file_names_where_to_get_it(tmp_path):
    missing = tmp_path / "nowhere" / "orb-v2.ckpt"
    with pytest.raises(errors.WeightsNotFoundError) as info:
        get_backbone("orb", weights=missing)
    assert str(missing) in str(info.value) and weights_url("orb-v2") in str(info.value)


def test_corrupt_weights_file(tmp_path):
    path = tmp_path / "corrupt.ckpt"
    path.write_bytes(b"this is not a torch checkpoint" * 10)
    with pytest.raises(errors.CorruptWeightsError, match="corrupt.ckpt"):
        get_backbone("orb", weights=path)


class _Payload:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_weights_are_never_unpickled_as_code(tmp_path, monkeypatch):
    # Even with the switch that ``import mace`` sets process-wide: orb-models passes
    # weights_only=True explicitly, which the switch cannot override.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "executed"
    path = tmp_path / "payload.ckpt"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(errors.CorruptWeightsError):
        get_backbone("orb", weights=path)
    assert not marker.exists()


def test_weights_of_another_architecture_are_rejected(weights):
    # A valid state dict, but for orb-v2 (15 layers of width 256, MLP 512), not orb-v3.
    with pytest.raises(errors.CorruptWeightsError, match="orb-v3-direct-20-omat"):
        get_backbone("orb", model="orb-v3-direct-20-omat", weights=weights)


def test_no_weights_offline_fails_fast_with_download_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HACKNIP_CACHE_DIR", str(tmp_path))
    # Behave like an offline machine whatever the network here, and record what was asked for.
    import urllib.error
    import urllib.request

    requested = []

    def offline(url, *args, **kwargs):
        requested.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    start = time.monotonic()
    with pytest.raises(errors.DownloadError) as info:
        get_backbone("orb", model="orb-v2")
    assert time.monotonic() - start < 30
    assert requested == [weights_url("orb-v2")]
    destination = tmp_path / "weights" / "orb-v2-20241011.ckpt"
    assert str(destination) in str(info.value) and not destination.exists()


def test_cached_weights_are_used_without_download(tmp_path, monkeypatch, weights):
    monkeypatch.setenv("HACKNIP_CACHE_DIR", str(tmp_path))
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    cached = tmp_path / "weights" / "orb-v2-20241011.ckpt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights.read_bytes())
    backbone = get_backbone("orb")
    assert backbone.info.model == "orb-v2" and backbone.info.n_depths == 16


@pytest.mark.parametrize("make", [rattled_rocksalt, lambda: molecule("H2O")])
def test_decoder_mode_one_pass_equals_truncated(orb_decoder, make):
    atoms = make()
    assert orb_decoder.info.features == "decoder" and orb_decoder.info.dim == 3
    nodes = orb_decoder.embed([atoms], per_atom=True)[0]
    assert nodes.shape == (len(atoms), 16, 3)
    for depth in range(16):
        np.testing.assert_allclose(nodes[:, depth], orb_decoder.truncated_features(atoms, depth), atol=TOL, rtol=0)


def test_decoder_mode_is_orb_decoder_of_node_features(orb, orb_decoder):
    atoms = rattled_rocksalt()
    nodes = orb.embed([atoms], per_atom=True)[0]
    decoded = orb_decoder.embed([atoms], per_atom=True)[0]
    with torch.no_grad():
        expected = orb.model.model._decoder(torch.from_numpy(nodes)).numpy()
    np.testing.assert_allclose(decoded, expected, atol=TOL, rtol=0)


def test_last_depth_is_what_orb_heads_see(orb):
    atoms = rattled_rocksalt()
    nodes = orb.embed([atoms], per_atom=True)[0]
    batch = orb._batch([atoms])
    with torch.no_grad():
        out = orb.model.model(batch)
    np.testing.assert_allclose(nodes[:, -1], out["node_features"].numpy(), atol=TOL, rtol=0)
    assert not np.allclose(nodes[:, 0], nodes[:, -1], atol=1e-2)  # the layers do change features


def test_batched_outputs_match_orb_calculator(orb):
    structures = [rattled_rocksalt(), molecule("CH4"), bulk("Si") * (1, 1, 2)]
    result = orb.forward(structures, forces=True)
    for k, atoms in enumerate(structures):
        native = atoms.copy()
        native.calc = native_calculator(orb)
        assert result.energy[k] == pytest.approx(float(np.ravel(native.get_potential_energy())[0]), abs=1e-4)
        np.testing.assert_allclose(result.forces[k], native.get_forces(), atol=1e-4)
        if atoms.pbc.all():
            assert result.stress[k].shape == (6,)
            np.testing.assert_allclose(result.stress[k], native.get_stress(), atol=1e-5)
        else:
            assert result.stress[k] is None


def test_rotation_changes_orb_features_except_the_embedding(orb):
    atoms = molecule("CH3CH2OH")
    rotated = atoms.copy()
    rotated.rotate(37, "x", center="COM")
    rotated.rotate(71, "z", center="COM")
    reference, turned = orb.embed([atoms])[0], orb.embed([rotated])[0]
    np.testing.assert_allclose(turned[0], reference[0], atol=1e-5)
    assert np.abs(turned[1:] - reference[1:]).max() > 1e-3


def test_partly_periodic_and_charge_info(orb):
    slab = bulk("Cu", "fcc", a=3.61, cubic=True)
    slab.pbc = [True, True, False]
    with pytest.raises(errors.InvalidStructureError, match="partly periodic"):
        orb.embed([slab])
    water = molecule("H2O")
    charged = water.copy()
    charged.info["charge"] = 0  # e.g. from pymatgen; orb-v2 has no charge conditioning
    np.testing.assert_array_equal(orb.embed([charged]), orb.embed([water]))


def test_conservative_orb_v3_gradients_and_depths(tmp_path):
    from hacknip_ase.backbones.orb import ORBBackbone

    torch.manual_seed(1)
    model = ORBBackbone.architecture("orb-v3-conservative-20-omat")
    path = tmp_path / "orb-v3-conservative-random.ckpt"
    torch.save(model.state_dict(), path)
    backbone = get_backbone("orb", model="orb-v3-conservative-20-omat", weights=path)
    assert backbone.conservative and (backbone.info.n_depths, backbone.info.dim) == (6, 256)
    atoms = rattled_rocksalt()
    result = backbone.forward([atoms], forces=True)
    for depth in range(6):
        np.testing.assert_allclose(result.node_features[0][:, depth], backbone.truncated_features(atoms, depth),
                                   atol=1e-4, rtol=0)
    native = atoms.copy()
    native.calc = native_calculator(backbone)
    assert result.energy[0] == pytest.approx(float(np.ravel(native.get_potential_energy())[0]), abs=1e-4)
    np.testing.assert_allclose(result.forces[0], native.get_forces(), atol=1e-4)
    np.testing.assert_allclose(result.stress[0], native.get_stress(), atol=1e-5)
