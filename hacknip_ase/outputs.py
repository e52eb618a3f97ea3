"""Registration of our custom properties in ``ase.outputs.all_outputs``.

``Atoms.get_properties`` only accepts names registered there and exports every key of
``calc.results`` through ``ase.outputs.Properties``, which checks shapes; string dimensions
must be registered as integer properties too.
"""

from __future__ import annotations

from ase.outputs import _defineprop, all_outputs

#: ASE name -> shape spec of the outputs the calculator adds to ASE's.
EMBEDDING_OUTPUTS = {
    "embeddings": ("ndepths", "embedding_dim"),
    "node_embeddings": ("natoms", "ndepths", "embedding_dim"),
}
_SIZE_NAMES = ("ndepths", "embedding_dim")


def register_output(name: str, shape: tuple = (), dtype: type = float) -> None:
    """Register ``name`` once; re-registering with the same spec is a no-op."""
    existing = all_outputs.get(name)
    if existing is not None:
        if tuple(existing.shapespec) != tuple(shape) or existing.dtype is not dtype:
            raise ValueError(
                f"property {name!r} is already registered in ase.outputs as {existing}; "
                "choose another name"
            )
        return
    _defineprop(name, dtype, shape)


def register_embedding_outputs() -> None:
    for size_name in _SIZE_NAMES:
        register_output(size_name, (), int)
    for name, shape in EMBEDDING_OUTPUTS.items():
        register_output(name, shape)
