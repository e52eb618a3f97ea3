"""hacknip-ase: frozen neural-network interatomic potentials as universal structure descriptors."""

from .backbones import Backbone, BackboneInfo, available_backbones, get_backbone
from .calculator import EmbeddingCalculator
from .errors import *  # noqa: F401,F403 - the typed errors are public API
from .featurize import FeatureSet, featurize

__version__ = "0.1.0"

__all__ = ["Backbone", "BackboneInfo", "EmbeddingCalculator", "FeatureSet", "available_backbones", "featurize", "get_backbone", "__version__"]
