"""ORB-v2 with random weights: the adapter's own ``architecture("orb-v2")`` (orb-models' real
15-layer orb-v2), saved to ``tmp_path`` and loaded back through ``weights=PATH`` (no download)."""

import torch

from hacknip_ase.backbones import get_backbone

# ORB's featurizer one-hot covers Z < 118, so every element up to Ts (117) is accepted.
# Og (118) is the one element past it.
UNSUPPORTED_Z = 118


def save_random_orb_v2(path, seed: int = 0):
    """Save a random-weight orb-v2 state dict at ``path`` and return the path."""
    from hacknip_ase.backbones.orb import ORBBackbone

    torch.manual_seed(seed)
    model = ORBBackbone.architecture("orb-v2")  # 15 message-passing steps, latent 256
    torch.save(model.state_dict(), path)
    return path


def build(tmp_path, **options):
    path = save_random_orb_v2(tmp_path / "orb-v2-random.ckpt")
    return get_backbone("orb", model="orb-v2", weights=path, **options)


def native_calculator(backbone):
    from orb_models.forcefield.calculator import ORBCalculator

    return ORBCalculator(backbone.model, device="cpu")
