"""Small structures and a shared CHGNet for the featurization tests (and the kill-test child)."""

import functools

import numpy as np
from ase.build import bulk


def small_structures(n: int, seed: int = 0) -> list:
    """``n`` distinct 2-atom crystals (Si, NaCl, MgO, GaAs), rattled so no two are identical."""
    prototypes = [
        lambda: bulk("Si", "diamond", a=5.43),
        lambda: bulk("NaCl", "rocksalt", a=5.64),
        lambda: bulk("MgO", "rocksalt", a=4.21),
        lambda: bulk("GaAs", "zincblende", a=5.65),
    ]
    rng = np.random.default_rng(seed)
    structures = []
    for i in range(n):
        atoms = prototypes[i % len(prototypes)]()
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        structures.append(atoms)
    return structures


@functools.lru_cache(maxsize=1)
def chgnet():
    from hacknip_ase import get_backbone

    return get_backbone("chgnet")


class ForwardCounter:
    """Wraps a backbone's batched pass and counts the structures that went through it."""

    def __init__(self, backbone, delay: float = 0.0):
        self.backbone, self.delay, self.structures, self.calls = backbone, delay, 0, 0
        self._original = backbone._forward

    def __enter__(self):
        def counted(atoms_list, **kwargs):
            import time

            self.calls += 1
            self.structures += len(atoms_list)
            if self.delay:
                time.sleep(self.delay)
            return self._original(atoms_list, **kwargs)

        self.backbone._forward = counted
        return self

    def __exit__(self, *exc):
        del self.backbone._forward  # back to the class method
