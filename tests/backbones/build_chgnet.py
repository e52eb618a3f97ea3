"""CHGNet with its real shipped 0.3.0 weights."""

from hacknip_ase.backbones import get_backbone

UNSUPPORTED_Z = 95  # Am: CHGNet's embedding covers H..Pu


def build(tmp_path):
    return get_backbone("chgnet")


def native_calculator(backbone):
    from chgnet.model.dynamics import CHGNetCalculator

    return CHGNetCalculator(model=backbone.model, use_device="cpu")
