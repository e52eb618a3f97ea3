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


def descriptor_backbone(n_depths: int = 8, dim: int = 256):
    """A cheap deterministic stand-in for a NIP: per-atom cosine features of number and position.

    Each atom's features depend on that structure alone, never on the batch it shares, so two
    runs of the engine must agree bit for bit whatever their batches (a real NIP's float32
    batched sums differ at 1e-6). For load and resume tests of the engine, cache and writer.
    """
    from hacknip_ase.backbones import Backbone, BackboneInfo, ForwardResult

    class DescriptorBackbone(Backbone):
        name = "descriptor"

        def __init__(self):
            super().__init__()
            self.frequencies = np.linspace(0.1, 3.0, dim)
            self.info = BackboneInfo(name=self.name, model="cosine", weights_sha256="0" * 64, n_depths=n_depths,
                                     dim=dim, cutoff=5.0, elements=frozenset(range(1, 95)), features="test")

        def _nodes(self, atoms):
            signal = atoms.numbers + np.linalg.norm(atoms.get_scaled_positions(wrap=True), axis=1)
            depth = np.arange(1, n_depths + 1)[None, :, None]
            return np.cos(signal[:, None, None] * self.frequencies[None, None, :] * depth).astype(np.float32)

        def _forward(self, atoms_list, *, forces, stress):
            return ForwardResult(node_features=[self._nodes(a) for a in atoms_list])

        def _truncated_features(self, atoms, depth):
            return self._nodes(atoms)[:, depth]

    return DescriptorBackbone()


def cache_entry_count(root) -> int:
    from pathlib import Path

    return sum(1 for _ in Path(root).glob("*/*/*.emb"))


def kill_after_entries(child, cache_root, count: int, timeout: float = 180) -> None:
    """SIGKILL ``child`` (a Popen with stderr piped) once ``cache_root`` holds ``count`` cache entries."""
    import signal
    import time

    try:
        deadline = time.monotonic() + timeout
        while cache_entry_count(cache_root) < count:
            if child.poll() is not None:
                error = child.stderr.read()
                raise AssertionError((error.decode() if isinstance(error, bytes) else error)[-3000:])
            assert time.monotonic() < deadline, "the child wrote too few cache entries"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
