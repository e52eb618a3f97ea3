"""hacknip-ase: frozen neural-network interatomic potentials as universal structure descriptors.

The public names below are imported on first use, so that ``hacknip --help`` and the typed
errors do not pay for torch and the NIP packages.
"""

from .errors import *  # noqa: F401,F403 - the typed errors are public API

__version__ = "0.1.0"

_LAZY = {
    "Backbone": "backbones", "BackboneInfo": "backbones", "available_backbones": "backbones",
    "get_backbone": "backbones", "EmbeddingCalculator": "calculator", "FeatureSet": "featureset",
    "featurize": "featurize",
}

__all__ = ["Backbone", "BackboneInfo", "EmbeddingCalculator", "FeatureSet", "available_backbones", "featurize",
           "get_backbone", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
