"""The life cycle every pretrained NIP adapter shares: weights, safe loading, freezing, identity.

orb-models keeps ``architecture(...)`` and ``load_model(model, path)`` apart; so does this class:
an adapter says how to build its untrained network, this class fills it from a file read with
``torch.load(weights_only=True)``. (``import mace`` turns on TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for
the whole process; an explicit ``weights_only=True`` is not overridden by it, and the NIP packages
are imported through :mod:`hacknip_ase._trusted`, which restores it.)
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CorruptWeightsError, HackNIPError, UnknownModelError
from ..weights import resolve_weights, sha256_file
from .base import Backbone, BackboneInfo


class NIPBackbone(Backbone):
    """A pretrained torch NIP behind the :class:`Backbone` interface.

    The life cycle is the same for every NIP and lives here: find the weights file (a given
    path, a file shipped in the NIP's wheel, the user cache, or a download), read it with
    ``torch.load(weights_only=True)``, build the untrained network with the adapter's
    :meth:`architecture`, fill it with a strict ``load_state_dict``, place it on the device,
    freeze it and describe it as a :class:`BackboneInfo`. A missing weights file is an error,
    never random weights.

    An adapter (one file per NIP) supplies:

    * :attr:`name`, :attr:`title`, :attr:`default_model` and :meth:`official_weights` (where a
      model's weights come from when none are given);
    * :meth:`architecture` (the untrained network, also what tests fill with random weights) and,
      when its checkpoints are not plain state dicts, :meth:`split_checkpoint`;
    * :meth:`depth_modules` (whose outputs are the depths, read by forward hooks) and
      :meth:`describe` (feature width, cutoff, elements);
    * :meth:`_forward` (the batched all-depth pass), :meth:`_truncated_features` (the reference
      protocol: the model run only up to one depth), and :meth:`trainable_view` with
      :attr:`trainable_prefixes` (what HackNIP's fine-tuning recipe trains).
    """

    #: the NIP's name in messages ("CHGNet")
    title: str = ""
    #: model variant built when none is named
    default_model: str = ""
    #: parameter-name prefixes that train under HackNIP's fine-tuning recipe; all else stays frozen
    trainable_prefixes: tuple[str, ...] = ()
    #: what the file must hold to load with ``weights_only=True`` (named in the error message)
    checkpoint_contents: str = "tensors and plain Python values"

    def __init__(self, model: str | None = None, *, weights=None, device: str = "cpu", **options) -> None:
        super().__init__(device=device, **options)
        model = self.default_model if model is None else model
        path = self.weights_path = self._weights_file(model, weights)
        self.model = self.place(self.load(model, path))
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._depth_modules = list(self.depth_modules())
        self.info = BackboneInfo(name=self.name, model=model, weights_sha256=sha256_file(path),
                                 n_depths=len(self._depth_modules), **self.describe())

    # -- life cycle ----------------------------------------------------------------------
    def official_weights(self, model: str) -> str:
        """The weights of ``model`` when none are given: a file shipped in the NIP's wheel or a
        download URL; :class:`UnknownModelError` for a model the adapter does not know."""
        raise UnknownModelError(f"the {self.name} backbone ships no weights; pass weights=PATH")

    def _weights_file(self, model: str, weights) -> Path:
        label = f"{self.title} {model}"
        if weights is not None:
            try:
                source = self.official_weights(model)
            except UnknownModelError:  # a user's checkpoint: the model name is only a label
                source = None
            url = source if source is not None and _is_url(source) else None
            return resolve_weights(model=label, filename=Path(str(weights)).name, url=url, path=weights)
        source = self.official_weights(model)
        if _is_url(source):
            return resolve_weights(model=label, filename=source.rsplit("/", 1)[-1], url=source)
        return resolve_weights(model=label, filename=Path(source).name, url=None, path=source)

    @classmethod
    def read_checkpoint(cls, path) -> Any:
        """The checkpoint at ``path``, read with ``torch.load(weights_only=True)``: no code runs."""
        with torch.serialization.safe_globals(cls.safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)

    @classmethod
    def safe_globals(cls) -> list:
        """Non-tensor types ``weights_only`` may rebuild for this NIP's checkpoints (default none)."""
        return []

    def load(self, model: str, path: Path) -> nn.Module:
        """The network of ``model`` with the weights at ``path`` (on the CPU, not yet placed)."""
        self.config = None
        try:
            checkpoint = self.read_checkpoint(path)
        except Exception as exc:
            raise CorruptWeightsError(
                f"cannot load {self.title} {model} weights from {path} with weights_only=True (the file must hold "
                f"only {self.checkpoint_contents}): {exc}") from exc
        try:
            config, state = self.split_checkpoint(checkpoint)
            network = self.architecture(model, config)
            self.config = config  # what the checkpoint says of the architecture (None: the model name does)
            self.load_state(network, state)
        except HackNIPError:
            raise
        except Exception as exc:
            raise CorruptWeightsError(f"cannot rebuild {self.title} {model} from the weights at {path}: {exc!r}") from exc
        return network

    @staticmethod
    def split_checkpoint(checkpoint) -> tuple[Any, dict]:
        """(architecture config, state dict) of a checkpoint; default: a plain state dict, no config."""
        return None, checkpoint

    @classmethod
    @abc.abstractmethod
    def architecture(cls, model: str, config=None) -> nn.Module:
        """The untrained network of ``model`` (``config``: the architecture a checkpoint records)."""

    def load_state(self, network: nn.Module, state: dict) -> None:
        """Fill ``network`` with ``state``: every parameter, nothing left over."""
        network.load_state_dict(state, strict=True)

    def place(self, network: nn.Module) -> nn.Module:
        """``network`` on this backbone's device, in eval mode."""
        return network.to(self.device).eval()

    @abc.abstractmethod
    def depth_modules(self) -> list[nn.Module]:
        """The modules of ``self.model`` whose outputs are depth 0, 1, ... (read by forward hooks)."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """``dim``, ``cutoff``, ``elements`` and ``features`` of the loaded model, for :class:`BackboneInfo`."""


def _is_url(source) -> bool:
    return "://" in str(source)
