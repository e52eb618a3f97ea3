"""MACE-specific behaviour: safe loading, weights resolution, invariant channels."""

import os
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from hacknip_ase import errors
from hacknip_ase._trusted import import_trusted
from hacknip_ase.backbones import get_backbone
from hacknip_ase.backbones import mace as mace_adapter

from . import build_mace

SWITCH = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
# Reuse the session-wide random MACE built for the contract tests.
uses_mace = pytest.mark.parametrize("backbone_name", ["mace"], indirect=True)


class _Payload:
    """Unpickling this creates a file: stands in for malicious code in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_official_urls_are_macesown():
    (foundations,) = import_trusted("mace.calculators.foundations_models")
    for name, url in mace_adapter.MACE_MP_URLS.items():
        assert foundations.mace_mp_urls[name] == url


@uses_mace
def test_info_and_no_unsafe_switch_left_on(built):
    backbone, module = built
    assert (backbone.info.n_depths, backbone.info.dim) == (3, 128)
    assert backbone.info.cutoff == 6.0 and backbone.info.elements == frozenset(build_mace.ELEMENTS)
    module.native_calculator(backbone)
    backbone.forward([bulk("Si")], forces=True)
    assert SWITCH not in os.environ


@uses_mace
def test_depth0_is_the_node_embedding(built):
    backbone, _ = built
    atoms = molecule("CH3CH2OH")
    nodes = backbone.embed([atoms], per_atom=True)[0]
    batch = backbone.batch([backbone.prepare(atoms)[0]])
    with torch.no_grad():
        embedding = backbone.model.node_embedding(batch["node_attrs"]).numpy()
    np.testing.assert_allclose(nodes[:, 0], embedding, atol=1e-6)
    assert not np.allclose(nodes[:, 1], nodes[:, 2])  # layers differ from each other


@uses_mace
def test_whole_model_pickle_needs_opt_in(built, tmp_path):
    backbone, _ = built
    path = tmp_path / "whole.model"
    torch.save(backbone.model, path)
    with pytest.raises(errors.UntrustedCheckpointError, match="trust_checkpoint") as info:
        get_backbone("mace", weights=path)
    assert isinstance(info.value, errors.WeightsError)
    trusted = get_backbone("mace", weights=path, trust_checkpoint=True)
    structures = [bulk("NaCl", "rocksalt", a=5.64), molecule("H2O")]
    np.testing.assert_allclose(trusted.embed(structures), backbone.embed(structures), atol=1e-6)
    assert SWITCH not in os.environ


def test_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.model"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(errors.UntrustedCheckpointError):
        get_backbone("mace", weights=path)
    assert not marker.exists()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(errors.WeightsNotFoundError):
        get_backbone("mace", weights=tmp_path / "nope.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(errors.CorruptWeightsError, match="not a torch checkpoint"):
        get_backbone("mace", weights=garbage)
    plain = tmp_path / "state_dict.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, plain)
    with pytest.raises(errors.CorruptWeightsError, match="save_weights"):
        get_backbone("mace", weights=plain)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
    with pytest.raises(errors.CorruptWeightsError):
        get_backbone("mace", weights=truncated)
    broken = tmp_path / "broken.pt"
    torch.save({"format": mace_adapter.SAFE_FORMAT, "config": {"interaction_cls": "os.system"},
                "state_dict": {"w": torch.zeros(1)}}, broken)
    with pytest.raises(errors.CorruptWeightsError, match="rebuild"):
        get_backbone("mace", weights=broken)


def test_default_weights_come_from_cache_or_official_url(tmp_path, monkeypatch):
    monkeypatch.setenv("HACKNIP_CACHE_DIR", str(tmp_path))
    requested = []

    def offline(url, timeout):
        requested.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr("hacknip_ase.weights.urllib.request.urlopen", offline)
    with pytest.raises(errors.DownloadError, match="offline"):
        get_backbone("mace")
    assert requested == [mace_adapter.MACE_MP_URLS["medium"]]
    # A file already in the cache is used without download, and is still not trusted blindly.
    cached = tmp_path / "weights" / mace_adapter.MACE_MP_URLS["small"].rsplit("/", 1)[-1]
    torch.save({"model": _Payload(tmp_path / "pwned")}, cached)
    assert zipfile.is_zipfile(cached)
    with pytest.raises(errors.UntrustedCheckpointError):
        get_backbone("mace", model="small")
    assert requested == [mace_adapter.MACE_MP_URLS["medium"]] and not (tmp_path / "pwned").exists()
    with pytest.raises(ValueError, match="small, medium"):
        get_backbone("mace", model="large")


def test_equivariant_model_keeps_only_scalars(tmp_path):
    """A medium-like model (0e+1o hidden, scalars-only last layer): only 0e channels are taken."""
    model = build_mace.make_model(hidden_irreps="8x0e+8x1o", max_ell=1, correlation=2, seed=1)
    assert model.products[0].linear.irreps_out.dim == 32  # 8 scalars + 8 vectors
    backbone = get_backbone("mace", weights=mace_adapter.save_weights(model, tmp_path / "l1.pt"), dtype="float64")
    assert (backbone.info.n_depths, backbone.info.dim) == (3, 8)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.numbers[1] = 28
    atoms.rattle(0.05, seed=2)
    nodes = backbone.embed([atoms], per_atom=True)[0]
    # mace's own invariant descriptors are our depths 1..n, concatenated.
    (calculators,) = import_trusted("mace.calculators.mace")
    native = calculators.MACECalculator(models=backbone.model, device="cpu", default_dtype="float64")
    descriptors = native.get_descriptors(atoms, invariants_only=True)
    np.testing.assert_allclose(nodes[:, 1:].reshape(len(atoms), -1), descriptors, atol=1e-6)
    # Per-atom features (not only the pooled mean) are rotation invariant.
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation
    rotated.cell = atoms.cell.array @ rotation
    np.testing.assert_allclose(backbone.embed([rotated], per_atom=True)[0], nodes, atol=1e-6)
    assert SWITCH not in os.environ


def test_bad_options_raise_before_loading(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        get_backbone("mace", weights=tmp_path / "x.pt", dtype="float16")
