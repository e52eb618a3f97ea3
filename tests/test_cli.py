"""``hacknip featurize`` end to end (CHGNet with its shipped weights)."""

import numpy as np
import pytest
from ase.io import write

from hacknip_ase.backbones.chgnet import CHGNetBackbone
from hacknip_ase.cli import main
from hacknip_ase.featurize import FeatureSet

from .featurize_support import small_structures


@pytest.fixture
def cif_folder(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, atoms in enumerate(small_structures(5, seed=3)):
        write(folder / f"s{i:02d}.cif", atoms)
    return folder


@pytest.fixture
def forward_calls(monkeypatch):
    calls = []
    original = CHGNetBackbone._forward

    def counted(self, atoms_list, **kwargs):
        calls.append(len(atoms_list))
        return original(self, atoms_list, **kwargs)

    monkeypatch.setattr(CHGNetBackbone, "_forward", counted)
    return calls


def test_featurize_a_cif_folder_then_rerun_from_cache(cif_folder, tmp_path, forward_calls, capsys):
    out = tmp_path / "features.npz"
    argv = ["featurize", str(cif_folder), "--backbone", "chgnet", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--batch-size", "4"]
    assert main(argv) == 0
    assert forward_calls == [4, 1]
    err = capsys.readouterr().err
    assert "struct/s" in err and "5 computed" in err  # progress bar and summary
    first = FeatureSet.load(out)
    assert first.ids == [f"s{i:02d}" for i in range(5)]
    assert first.embeddings.shape == (5, 5, 64)
    assert first.metadata["source"] == {"format": "cif", "path": str(cif_folder)}
    assert first.metadata["options"]["batch_size"] == 4

    out.unlink()
    assert main([*argv, "--quiet"]) == 0
    assert forward_calls == [4, 1]  # nothing new went through the model
    assert capsys.readouterr().err == ""
    second = FeatureSet.load(out)
    assert second.ids == first.ids
    np.testing.assert_allclose(second.embeddings, first.embeddings, atol=1e-6, rtol=0)


def test_bad_input_exits_with_a_message(tmp_path, capsys):
    (tmp_path / "broken.cif").write_text("not a cif\n")
    assert main(["featurize", str(tmp_path), "--out", str(tmp_path / "x.npz"), "--no-cache", "-q"]) == 2
    assert "broken.cif" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
    assert not list(tmp_path.glob(".x.npz.*"))  # no spill or partial archive left behind
