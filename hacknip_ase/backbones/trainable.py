"""Trainable views of a backbone: what fine-tuning trains, and a differentiable pooled forward.

Each adapter's ``trainable_view(device)`` returns a :class:`TrainableView`: a deep copy of the
adapter's network (the shared frozen backbone never changes), the parameter-name prefixes that
train under HackNIP's fine-tuning recipe (the message-passing layers; the first embedding / edge
featurizer and the decoder stay frozen), ``encode`` (one prepared structure -> the model's input,
built once per structure and cached by the trainer) and ``run`` (a list of encoded structures ->
the last layer's node features with their autograd graph).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ase import Atoms
from torch import nn

from ._hooks import StopForward


@dataclass
class TrainableView:
    """A trainable copy of a backbone's network and a differentiable pooled-feature function."""

    backbone: Any  #: the adapter (its checks and graph builders are reused)
    model: nn.Module  #: deep copy of ``backbone.model``: the network that trains
    trainable_prefixes: tuple[str, ...]  #: parameter-name prefixes that train; all else is frozen
    dim: int
    encode: Callable[[Atoms], Any]
    run: Callable[[list], torch.Tensor]
    device: torch.device

    def is_trainable(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.trainable_prefixes)

    def trainable_names(self) -> list[str]:
        return [n for n, _ in self.model.named_parameters() if self.is_trainable(n)]

    def frozen_names(self) -> list[str]:
        """Parameters that never train: the first embedding / edge featurizer, the decoder."""
        return [n for n, _ in self.model.named_parameters() if not self.is_trainable(n)]

    def set_requires_grad(self) -> None:
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(self.is_trainable(name))

    def prepare_encode(self, structure) -> tuple[Any, int]:
        """(encoded input, number of atoms) of one structure, through the adapter's checks."""
        atoms, _ = self.backbone.prepare(structure)  # supercell copies do not change a mean
        return self.encode(atoms), len(atoms)

    def pooled(self, encoded: Sequence[tuple[Any, int]]) -> torch.Tensor:
        """Mean-pooled last-layer node features (n, dim), float32, differentiable."""
        nodes = self.run([graph for graph, _ in encoded]).float()
        counts = torch.tensor([n for _, n in encoded], device=nodes.device)
        owners = torch.repeat_interleave(torch.arange(len(encoded), device=nodes.device), counts)
        sums = torch.zeros(len(encoded), nodes.shape[1], device=nodes.device).index_add(0, owners, nodes)
        return sums / counts[:, None]

    def pooled_features(self, atoms_list: Sequence) -> torch.Tensor:
        return self.pooled([self.prepare_encode(a) for a in atoms_list])


def make_view(backbone, device, build: Callable[[nn.Module, torch.device], TrainableView]) -> TrainableView:
    """Deep-copy ``backbone.model`` to ``device``, let ``build`` describe it, and set what trains."""
    import copy

    device = torch.device(device)
    model = copy.deepcopy(backbone.model).to(device)
    view = build(model, device)
    view.set_requires_grad()
    # eval(): none of these pretrained NIPs use dropout or batch norm; eval keeps any
    # mode-dependent behaviour identical to the frozen embeddings the comparison is against.
    model.eval()
    return view


def last_output(module: nn.Module, run: Callable[[], Any]) -> torch.Tensor:
    """Output of ``module`` during ``run()``, graph kept; the pass stops right after it."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise StopForward  # the readout / forces after the last layer are not needed

    handle = module.register_forward_hook(hook)
    try:
        run()
    except StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"{type(module).__name__} was never called in the forward pass")
    return captured[0]
