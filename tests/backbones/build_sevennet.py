"""SevenNet with its real SevenNet-0 weights, shipped in the sevenn wheel."""

import copy

from hacknip_ase.backbones import get_backbone

UNSUPPORTED_Z = 84  # Po: SevenNet-0 covers 89 elements, H..Pu without Po..Ra


def build(tmp_path):
    return get_backbone("sevennet")


def native_calculator(backbone):
    from sevenn.calculator import SevenNetCalculator

    # A copy: the calculator switches the model to unbatched mode, the backbone runs it batched.
    return SevenNetCalculator(model=copy.deepcopy(backbone.model), device="cpu")
