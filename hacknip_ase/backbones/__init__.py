"""Backbone registry: public name -> adapter class, imported lazily (each NIP, and torch, is heavy).

A new NIP is one adapter file (a :class:`~hacknip_ase.backbones.nip.NIPBackbone` subclass: its
architecture, depth modules, forward pass and trainable view) and one line here.
"""

from __future__ import annotations

import importlib

from ..errors import UnknownBackboneError, UnknownOptionError

_REGISTRY = {
    "chgnet": "hacknip_ase.backbones.chgnet:CHGNetBackbone",
    "sevennet": "hacknip_ase.backbones.sevennet:SevenNetBackbone",
    "orb": "hacknip_ase.backbones.orb:ORBBackbone",
    "mace": "hacknip_ase.backbones.mace:MACEBackbone",
}
DEFAULT_BACKBONE = "chgnet"


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def backbone_class(name: str) -> type:
    if not isinstance(name, str):
        raise UnknownBackboneError(f"a backbone is a registry name ({', '.join(available_backbones())}) or a "
                                   f"built Backbone, not {type(name).__name__}")
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; valid names: {', '.join(available_backbones())}"
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def get_backbone(name=DEFAULT_BACKBONE, **options):
    """Build a backbone by registry name (options go to the adapter), or pass one through."""
    from .base import Backbone

    if isinstance(name, Backbone):
        if options:
            raise UnknownOptionError(f"options ({', '.join(sorted(options))}) cannot be applied to an already built "
                                     "backbone; pass its name instead")
        return name
    return backbone_class(name)(**options)


def __getattr__(name: str):
    if name in ("Backbone", "BackboneInfo", "ForwardResult"):
        from . import base

        return getattr(base, name)
    if name == "NIPBackbone":
        from . import nip

        return nip.NIPBackbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Backbone", "BackboneInfo", "ForwardResult", "NIPBackbone", "available_backbones", "backbone_class",
           "get_backbone", "DEFAULT_BACKBONE"]
