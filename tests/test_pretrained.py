"""The shipped property heads: load offline, fit CHGNet's weights, give textbook values.

Tolerances come from each head's cross-validated error (index.json, the benchmark's folds): a
prediction must lie within 3 x CV MAE of the experimental value (for moduli in log10 space, as
the head was scored). Experimental values: room-temperature polycrystalline (Voigt-Reuss-Hill)
moduli and refractive indices in the visible (Kittel; CRC Handbook): Si K 98, G 66 GPa, n 3.4 (eps_inf
11.7); NaCl K 25, G 14.6 GPa, n 1.54; MgO K 160, G 130 GPa, n 1.74; Cu K 140, G 48 GPa.
"""

import math

import numpy as np
import pytest
from ase.build import bulk, molecule

from hacknip_ase import EmbeddingCalculator, errors
from hacknip_ase.pretrained import TRUST_THRESHOLD, available_heads, describe, pretrained_heads

BACKBONES = ("chgnet", "sevennet")  # the offline backbones: each ships every head
CRYSTALS = {
    "Si": (lambda: bulk("Si", "diamond", a=5.431), {"bulk_modulus_vrh": 98, "shear_modulus_vrh": 66,
                                                     "refractive_index": 3.42}),
    "NaCl": (lambda: bulk("NaCl", "rocksalt", a=5.640), {"bulk_modulus_vrh": 25, "shear_modulus_vrh": 14.6,
                                                          "refractive_index": 1.54}),
    "MgO": (lambda: bulk("MgO", "rocksalt", a=4.212), {"bulk_modulus_vrh": 160, "shear_modulus_vrh": 130,
                                                        "refractive_index": 1.74}),
    "Cu": (lambda: bulk("Cu", "fcc", a=3.615), {"bulk_modulus_vrh": 140, "shear_modulus_vrh": 48}),
}


@pytest.fixture(scope="module", params=BACKBONES)
def calc(request):
    return EmbeddingCalculator(request.param, heads="matbench")


def heads_of(calc) -> dict:
    return {h["name"]: h for h in available_heads(calc.backbone.name)}


def test_the_default_calculator_gets_the_chgnet_heads():
    assert EmbeddingCalculator(heads="matbench").backbone.name == "chgnet"


def test_every_offline_task_ships_a_head_per_backbone_that_loads_offline(calc):
    expected = {"shear_modulus_vrh", "bulk_modulus_vrh", "refractive_index", "exfoliation_energy", "last_phdos_peak",
                "perovskite_formation_energy", "superconducting_tc"}
    heads = heads_of(calc)
    assert set(heads) == expected and set(calc.heads) == expected
    for name, head in heads.items():
        assert head["weights_sha256"] == calc.backbone.info.weights_sha256
        assert head["cv_mae"] > 0 and head["n_train"] > 500
    assert sum(h["size_bytes"] for h in available_heads()) < 30e6
    assert "shear_modulus_vrh" in describe(calc.backbone.name)


#: Values a head gets wrong and flags itself (domain distance above TRUST_THRESHOLD), as measured.
FLAGGED = {
    # SevenNet's Si at the experimental lattice constant (5.431 A) gets n = 5.0 at distance 3.4;
    # the dielectric set's own Si (PBE, 5.47 A) gets 3.2 (DFT 3.6): the embedding is that sensitive.
    ("sevennet", "Si", "refractive_index"),
}


@pytest.mark.parametrize("crystal", sorted(CRYSTALS))
def test_textbook_crystals_within_the_cv_error(calc, crystal):
    make, known = CRYSTALS[crystal]
    heads = heads_of(calc)
    atoms = make()
    atoms.calc = calc
    for name, expected in known.items():
        value = atoms.get_properties([name])[name]
        distance = atoms.get_properties([f"{name}_domain_distance"])[f"{name}_domain_distance"]
        if (calc.backbone.name, crystal, name) in FLAGGED:
            assert distance > TRUST_THRESHOLD, (crystal, name, value, distance)
            continue
        tolerance = 3 * heads[name]["cv_mae"]
        if heads[name]["transform"] == "log10":
            assert abs(math.log10(value) - math.log10(expected)) < tolerance, (crystal, name, value, expected)
        else:
            assert abs(value - expected) < tolerance, (crystal, name, value, expected)
        assert distance < TRUST_THRESHOLD, (crystal, name, value, distance)


def test_a_molecule_is_out_of_domain(calc):
    """Every head was trained on crystals only: a molecule's domain distance is inf (its kNN
    distance alone does not flag it: 1.3-1.9 for the moduli, refractive-index, exfoliation and
    phonon heads when measured)."""
    water = molecule("H2O")
    water.calc = calc
    for name in heads_of(calc):
        assert water.get_properties([f"{name}_domain_distance"])[f"{name}_domain_distance"] == np.inf, name
    assert np.isfinite(water.get_properties(["bulk_modulus_vrh"])["bulk_modulus_vrh"])


def test_unknown_or_unshipped_heads_are_refused():
    with pytest.raises(errors.InvalidOptionError, match="hardness"):
        pretrained_heads("chgnet", ["hardness"])
    with pytest.raises(errors.InvalidOptionError, match="no pretrained heads"):
        pretrained_heads("mace")
