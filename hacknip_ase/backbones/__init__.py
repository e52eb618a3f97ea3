"""Backbone registry: public name -> adapter class, imported lazily (each NIP is heavy)."""

from __future__ import annotations

import importlib

from ..errors import UnknownBackboneError
from .base import Backbone, BackboneInfo, ForwardResult

_REGISTRY = {
    "chgnet": "hacknip_ase.backbones.chgnet:CHGNetBackbone",
    "sevennet": "hacknip_ase.backbones.sevennet:SevenNetBackbone",
    "orb": "hacknip_ase.backbones.orb:ORBBackbone",
    "mace": "hacknip_ase.backbones.mace:MACEBackbone",
}
DEFAULT_BACKBONE = "chgnet"


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def backbone_class(name: str) -> type[Backbone]:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; valid names: {', '.join(available_backbones())}"
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def get_backbone(name: str | Backbone = DEFAULT_BACKBONE, **options) -> Backbone:
    """Build a backbone by registry name (options go to the adapter), or pass one through."""
    if isinstance(name, Backbone):
        if options:
            raise TypeError("options cannot be applied to an already built backbone")
        return name
    return backbone_class(name)(**options)


__all__ = ["Backbone", "BackboneInfo", "ForwardResult", "available_backbones", "backbone_class",
           "get_backbone", "DEFAULT_BACKBONE"]
