"""The small interface every NIP adapter implements.

An adapter runs a frozen NIP once over a batch of structures and returns the per-atom
features after every depth: depth 0 is the embedding/encoder output, depth k the output of
message-passing layer k. Mean pooling and the per-structure bookkeeping live here, once.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from ase import Atoms

from ..errors import DeviceError, InvalidOptionError, UnknownOptionError
from ..structures import MIN_DISTANCE, as_atoms, box_in_vacuum, supercell_repeats, validate


@dataclass(frozen=True)
class BackboneInfo:
    """Identity of a loaded backbone: what produced an embedding."""

    name: str  #: registry name, e.g. "chgnet"
    model: str  #: model variant, e.g. "0.3.0" or "orb-v2"
    weights_sha256: str  #: sha256 of the weights file the parameters came from
    n_depths: int  #: number of depths (embedding + message-passing layers)
    dim: int  #: feature dimension at every depth
    cutoff: float  #: interaction cutoff in Angstrom
    elements: frozenset[int] = field(repr=False)  #: atomic numbers the model covers
    features: str = "node"  #: which features are taken at each depth (adapter-specific)

    @property
    def dims(self) -> tuple[int, ...]:
        return (self.dim,) * self.n_depths

    def as_dict(self) -> dict:
        record = asdict(self)
        record["elements"] = sorted(self.elements)
        return record


@dataclass
class ForwardResult:
    """Output of one pass over a batch, one entry per input structure."""

    node_features: list[np.ndarray]  #: each (n_atoms, n_depths, dim), float32
    energy: np.ndarray | None = None  #: (n,) total energy, eV
    forces: list[np.ndarray] | None = None  #: each (n_atoms, 3), eV/A
    stress: list[np.ndarray | None] | None = None  #: each (6,) Voigt, eV/A^3, None if not periodic

    def embeddings(self) -> np.ndarray:
        """Mean-pooled features, shape (n, n_depths, dim)."""
        return np.stack([nodes.mean(axis=0) for nodes in self.node_features])


class Backbone(abc.ABC):
    """A frozen NIP that yields features at every depth from one forward pass.

    Subclasses set :attr:`info` in ``__init__`` and implement :meth:`_forward` (the batched
    all-depth pass on prepared structures) and :meth:`_truncated_features` (the reference
    protocol: the model run only up to one depth). Pretrained torch NIPs subclass
    :class:`~hacknip_ase.backbones.nip.NIPBackbone`, which owns their weights and loading.
    """

    #: registry name
    name: str = ""
    #: True when the model only takes periodic cells (molecules are boxed in vacuum)
    needs_cell: bool = False
    #: What the model's energy and features are invariant under by construction: "O(3)"
    #: (rotations and inversion), "SO(3)" (rotations only) or None (ORB learns rotation
    #: invariance only approximately: its features change when a structure is rotated). The
    #: phonon step uses no more of a crystal's symmetry than this (physics.displacement_plan).
    point_symmetry: str | None = None
    info: BackboneInfo

    def __init__(self, *, device: str = "cpu", expand_supercell: bool = False,
                 min_distance: float = MIN_DISTANCE, **unknown) -> None:
        if unknown:
            raise UnknownOptionError(
                f"the {self.name} backbone takes no option(s) {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(_option_names(type(self)))}")
        self.device = torch_device(device)
        self.expand_supercell = expand_supercell
        self.min_distance = min_distance

    # -- public API -------------------------------------------------------------------
    def prepare(self, structure) -> tuple[Atoms, int]:
        """Validate a structure and return what the model sees plus the number of copies.

        Non-periodic structures are boxed in vacuum for models that need a cell; with
        ``expand_supercell`` periodic ones are repeated until every lattice vector is
        longer than the cutoff (mean-pooled features do not change; per-atom outputs
        refer to the first copy).
        """
        atoms = as_atoms(structure)
        validate(atoms, model=f"{self.name} {self.info.model}", elements=self.info.elements,
                 min_distance=self.min_distance)
        copies = 1
        if atoms.pbc.any():
            if self.expand_supercell:
                repeats = supercell_repeats(atoms, self.info.cutoff)
                copies = int(np.prod(repeats))
                if copies > 1:
                    atoms = atoms.repeat(repeats)
        elif self.needs_cell:
            atoms = box_in_vacuum(atoms, self.info.cutoff)
        return atoms, copies

    def forward(self, structures: Sequence, *, forces: bool = False, stress: bool | None = None) -> ForwardResult:
        """Features at every depth for a batch, plus energy, and forces and stress if asked.

        ``stress`` defaults to ``forces``. Asking for one of the two lets an adapter skip the
        other's gradient (CHGNet takes each in its own backward pass); an adapter may still
        return both.
        """
        inputs = [as_atoms(s) for s in structures]
        prepared = [self.prepare(atoms) for atoms in inputs]
        stress = forces if stress is None else bool(stress)
        if not self.separate_derivatives:  # one gradient gives both
            forces = stress = forces or stress
        result = self._forward([atoms for atoms, _ in prepared], forces=forces, stress=stress)
        if any(copies > 1 for _, copies in prepared):
            result = _first_copy(result, [len(a) for a in inputs], [copies for _, copies in prepared])
        if result.stress is not None:  # a boxed molecule has no physical stress
            result.stress = [s if a.pbc.all() else None for s, a in zip(result.stress, inputs, strict=True)]
        return result

    def embed(self, structures: Sequence, *, per_atom: bool = False):
        """Mean-pooled (n, n_depths, dim) array, or the list of per-atom arrays."""
        result = self.forward(structures)
        return result.node_features if per_atom else result.embeddings()

    def truncated_features(self, structure, depth: int) -> np.ndarray:
        """Reference protocol: per-atom features of the model cut after ``depth``."""
        if not 0 <= depth < self.info.n_depths:
            raise InvalidOptionError(f"depth must be in [0, {self.info.n_depths - 1}], got {depth}")
        atoms, copies = self.prepare(structure)
        features = self._truncated_features(atoms, depth)
        return features[: len(atoms) // copies]

    #: True where the adapter takes forces and stress in separate backward passes (CHGNet), so
    #: that asking for one costs less; otherwise :meth:`forward` asks ``_forward`` for both.
    separate_derivatives = False

    # -- adapter hooks -----------------------------------------------------------------
    @abc.abstractmethod
    def _forward(self, atoms_list: list[Atoms], *, forces: bool, stress: bool) -> ForwardResult:
        """All depths in one pass on prepared structures."""

    @abc.abstractmethod
    def _truncated_features(self, atoms: Atoms, depth: int) -> np.ndarray:
        """(n_atoms, dim) features of a run that stops after ``depth``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.info.model!r}, device={str(self.device)!r})"


def torch_device(spec) -> torch.device:
    """``spec`` as a torch device that exists here, else :class:`DeviceError` naming why."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DeviceError(f"cannot parse device {spec!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but torch finds no CUDA GPU on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {spec!r} asked for, but MPS is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {spec!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    return device


def _option_names(cls) -> list[str]:
    """Keyword options an adapter takes: its own and the base class's."""
    import inspect

    names = []
    for klass in [k for k in cls.__mro__ if "__init__" in vars(k) and issubclass(k, Backbone)]:
        for parameter in inspect.signature(klass.__init__).parameters.values():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY) \
                    and parameter.name != "self" and parameter.name not in names:
                names.append(parameter.name)
    return names


def _first_copy(result: ForwardResult, n_atoms: list[int], copies: list[int]) -> ForwardResult:
    """Map supercell outputs back to the input cell: first copy's atoms, energy per copy."""
    return ForwardResult(
        node_features=[nodes[:n] for nodes, n in zip(result.node_features, n_atoms, strict=True)],
        energy=None if result.energy is None else result.energy / np.asarray(copies),
        forces=None if result.forces is None else [f[:n] for f, n in zip(result.forces, n_atoms, strict=True)],
        stress=result.stress,
    )
