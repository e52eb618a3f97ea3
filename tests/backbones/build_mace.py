"""MACE with random weights in a MACE-MP-0-small-like architecture (no download needed).

2 interactions, 128x0e hidden, correlation 3, r_max 6 A, on a reduced element table. max_ell
is 2, not 3: the Clebsch-Gordan tables for max_ell 3 / correlation 3 take ~10-20 s per layer
to build on a busy CPU, and every load rebuilds them. Saved with ``save_weights`` and loaded
through the same ``weights=PATH`` code users use.
"""

import numpy as np
import torch

from hacknip_ase._trusted import import_trusted
from hacknip_ase.backbones import get_backbone

#: Elements of the contract structures plus a few more; Au is left out.
ELEMENTS = [1, 6, 7, 8, 11, 14, 17, 28, 29]
UNSUPPORTED_Z = 79  # Au: not in the reduced z_table


def make_model(*, hidden_irreps="128x0e", max_ell=2, correlation=3, num_interactions=2, seed=0,
               elements=ELEMENTS):
    """A random-weight ScaleShiftMACE (float64) with MACE-MP-0's hyperparameters, from the adapter's
    own ``architecture`` (the one that rebuilds saved weights)."""
    from hacknip_ase.backbones.mace import MACEBackbone

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    config = dict(
        r_max=6.0, num_bessel=10, num_polynomial_cutoff=5, max_ell=max_ell,
        interaction_cls="RealAgnosticResidualInteractionBlock",
        interaction_cls_first="RealAgnosticResidualInteractionBlock",
        num_interactions=num_interactions, num_elements=len(elements),
        hidden_irreps=hidden_irreps, MLP_irreps="16x0e",
        atomic_energies=rng.uniform(-5.0, -0.5, len(elements)).tolist(), avg_num_neighbors=30.0,
        atomic_numbers=elements, correlation=correlation, gate="silu",
        radial_MLP=[64, 64, 64], atomic_inter_scale=0.8, atomic_inter_shift=0.1, dtype="float64",
    )
    return MACEBackbone.architecture("small", config).eval()


def save(model, path):
    from hacknip_ase.backbones.mace import save_weights

    return save_weights(model, path)


def build(tmp_path):
    path = save(make_model(), tmp_path / "mace-small-random.pt")
    return get_backbone("mace", model="small", weights=path)


def native_calculator(backbone):
    (calculators,) = import_trusted("mace.calculators.mace")  # its import sets the unsafe switch
    return calculators.MACECalculator(models=backbone.model, device="cpu", default_dtype=backbone.dtype)
