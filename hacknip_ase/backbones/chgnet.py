"""CHGNet adapter (the offline default: CHGNet 0.3.0 weights ship in the chgnet wheel).

Depth 0 is CHGNet's atom embedding, depth k (1..4) the atom features after atom-convolution
layer k (before the readout layer norm). All 64-dimensional, so 5 depths x 64.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import torch
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress
from pymatgen.io.ase import AseAtomsAdaptor

from ..errors import InvalidStructureError, UnknownModelError
from ._hooks import capture_outputs, run_until
from .base import ForwardResult
from .nip import NIPBackbone

#: CHGNet reports stress in GPa.
_GPA_PER_EV_A3 = 160.21766208
_PACKAGED = {
    "0.3.0": "0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
    "r2scan": "r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}


class CHGNetBackbone(NIPBackbone):
    """CHGNet through its own graph converter and batched ``forward``.

    Parameters
    ----------
    model : str
        Packaged CHGNet version: "0.3.0" (default), "0.2.0" or "r2scan".
    weights : path, optional
        A CHGNet checkpoint of your own (e.g. fine-tuned); loaded with ``weights_only=True``.
    device : str
        Torch device.
    """

    name = "chgnet"
    title = "CHGNet"
    default_model = "0.3.0"
    needs_cell = True
    trainable_prefixes = ("atom_conv_layers", "bond_conv_layers", "angle_layers")

    def official_weights(self, model: str) -> str:
        from chgnet.model.model import module_dir

        if model not in _PACKAGED:
            raise UnknownModelError(f"unknown CHGNet model {model!r}; packaged: {', '.join(_PACKAGED)}")
        return os.path.join(module_dir, "..", "pretrained", _PACKAGED[model])

    @staticmethod
    def split_checkpoint(checkpoint):
        return checkpoint["model"]["model_args"], checkpoint["model"]["state_dict"]

    @classmethod
    def architecture(cls, model: str = "0.3.0", config: dict | None = None):
        """CHGNet with the hyperparameters ``config`` (a checkpoint's ``model_args``; default CHGNet's own),
        as ``CHGNet.from_dict`` builds version ``model``."""
        from chgnet.model.model import CHGNet

        with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints a banner on every build
            return CHGNet(**(config or {}), mlp_out_bias=model == "0.2.0", version=model)

    def depth_modules(self):
        return [self.model.atom_embedding, *self.model.atom_conv_layers]

    def describe(self) -> dict:
        embedding = self.model.atom_embedding.embedding
        return {"dim": embedding.embedding_dim, "cutoff": float(self.model.graph_converter.atom_graph_cutoff),
                "elements": frozenset(range(1, embedding.num_embeddings + 1)),
                "features": "atom features after each atom-conv layer"}

    def graphs(self, atoms_list: list[Atoms]):
        """CHGNet crystal graphs (CPU), one per prepared structure."""
        graphs = []
        for atoms in atoms_list:
            try:
                graphs.append(self.model.graph_converter(AseAtomsAdaptor.get_structure(atoms)))
            except ValueError as exc:  # CHGNet refuses atoms with no neighbour in its cutoff
                raise InvalidStructureError(f"CHGNet cannot build a graph for {atoms.get_chemical_formula()}: {exc}") from exc
        return graphs

    separate_derivatives = True  # CHGNet runs one backward pass per derivative
    point_symmetry = "O(3)"  # its features are distances and bond angles

    def _forward(self, atoms_list: list[Atoms], *, forces: bool, stress: bool) -> ForwardResult:
        graphs = [g.to(self.device) for g in self.graphs(atoms_list)]
        task = "e" + "f" * forces + "s" * stress
        with capture_outputs(self._depth_modules) as captured, torch.set_grad_enabled(forces or stress):
            prediction = self.model(graphs, task=task)
        counts = [len(atoms) for atoms in atoms_list]
        stacked = torch.stack(captured, dim=1).cpu().numpy().astype(np.float32)
        result = ForwardResult(
            node_features=np.split(stacked, np.cumsum(counts)[:-1]),
            energy=prediction["e"].detach().cpu().numpy().astype(float) * np.asarray(counts),
        )
        if forces:
            result.forces = [f.detach().cpu().numpy().astype(float) for f in prediction["f"]]
        if stress:
            result.stress = [
                full_3x3_to_voigt_6_stress(s.detach().cpu().numpy().astype(float)) / _GPA_PER_EV_A3
                for s in prediction["s"]
            ]
        return result

    def _truncated_features(self, atoms: Atoms, depth: int) -> np.ndarray:
        graphs = [g.to(self.device) for g in self.graphs([atoms])]
        with torch.no_grad():
            features = run_until(self._depth_modules, depth, lambda: self.model(graphs, task="e"))
        return features.cpu().numpy().astype(np.float32)

    # -- fine-tuning ---------------------------------------------------------------------
    def trainable_view(self, device="cpu", *, optimized: bool = True):
        """HackNIP's fine-tuning view: the atom/bond/angle message passing trains.

        Frozen: the composition model, atom embedding, bond/angle basis expansions and
        embeddings, bond weights (the edge featurizer) and the decoder (readout norm, MLP,
        magmom head), which the pooled path does not use anyway.

        ``optimized`` (default): each structure's frozen inputs (bond and angle bases, their
        embeddings and weights, the atom embedding) are computed once, without gradient, when
        it is encoded, and the coordinates are not differentiated (no loss reads forces); the
        last layer's features equal CHGNet's own forward to float32 rounding. ``False`` runs
        CHGNet's own forward every step (coordinates marked ``requires_grad`` by its converter),
        the reference the optimized path is measured against.
        """
        from .trainable import TrainableView, last_output, make_view

        prefixes = self.trainable_prefixes

        def build(model, device):
            if not optimized:
                last = model.atom_conv_layers[-1]

                def run(graphs):
                    return last_output(last, lambda: model([g.to(device) for g in graphs], task="e"))

                return TrainableView(self, model, prefixes, self.info.dim, lambda atoms: self.graphs([atoms])[0],
                                     run, device)
            return TrainableView(self, model, prefixes, self.info.dim,
                                 lambda atoms: _FrozenInputs.of(model, self.graphs([atoms])[0], device),
                                 lambda items: _message_passing(model, _FrozenInputs.batch(items)), device)

        return make_view(self, device, build)


class _FrozenInputs:
    """One structure's (or a batch's) inputs to CHGNet's message passing, frozen parts precomputed."""

    def __init__(self, n_atoms, n_undirected, atom_graph, directed2undirected, bond_graph, atom_feas, bond_feas,
                 bond_weights_ag, bond_weights_bg, angle_feas):
        self.n_atoms, self.n_undirected = n_atoms, n_undirected
        self.atom_graph, self.directed2undirected, self.bond_graph = atom_graph, directed2undirected, bond_graph
        self.atom_feas, self.bond_feas, self.angle_feas = atom_feas, bond_feas, angle_feas
        self.bond_weights_ag, self.bond_weights_bg = bond_weights_ag, bond_weights_bg

    @classmethod
    def of(cls, model, graph, device) -> _FrozenInputs:
        from chgnet.model.model import BatchedGraph

        graph = graph.to(device)
        graph.atom_frac_coord = graph.atom_frac_coord.detach()  # CHGNet's converter asks for their gradient
        graph.lattice = graph.lattice.detach()
        with torch.no_grad():
            g = BatchedGraph.from_graphs([graph], bond_basis_expansion=model.bond_basis_expansion,
                                         angle_basis_expansion=model.angle_basis_expansion, compute_stress=False)
            has_angles = len(g.angle_bases) != 0
            return cls(
                n_atoms=len(g.atomic_numbers), n_undirected=len(g.bond_bases_ag), atom_graph=g.batched_atom_graph,
                directed2undirected=g.directed2undirected,
                bond_graph=g.batched_bond_graph if has_angles else None,
                atom_feas=model.atom_embedding(g.atomic_numbers - 1), bond_feas=model.bond_embedding(g.bond_bases_ag),
                bond_weights_ag=model.bond_weights_ag(g.bond_bases_ag),
                bond_weights_bg=model.bond_weights_bg(g.bond_bases_bg),
                angle_feas=model.angle_embedding(g.angle_bases) if has_angles else None)

    @classmethod
    def batch(cls, items) -> _FrozenInputs:
        """Concatenate structures, offsetting atom and undirected-bond indices as CHGNet's own batching does."""
        atom_graphs, undirected, bond_graphs = [], [], []
        atom_offset = bond_offset = 0
        for item in items:
            atom_graphs.append(item.atom_graph + atom_offset)
            undirected.append(item.directed2undirected + bond_offset)
            if item.bond_graph is not None:
                offset = torch.tensor([atom_offset, bond_offset, bond_offset], dtype=item.bond_graph.dtype,
                                      device=item.bond_graph.device)
                bond_graphs.append(item.bond_graph + offset)
            atom_offset += item.n_atoms
            bond_offset += item.n_undirected
        angles = [item.angle_feas for item in items if item.angle_feas is not None]
        return cls(atom_offset, bond_offset, torch.cat(atom_graphs), torch.cat(undirected),
                   torch.cat(bond_graphs) if bond_graphs else None,
                   torch.cat([i.atom_feas for i in items]), torch.cat([i.bond_feas for i in items]),
                   torch.cat([i.bond_weights_ag for i in items]), torch.cat([i.bond_weights_bg for i in items]),
                   torch.cat(angles) if angles else None)


def _message_passing(model, inputs: _FrozenInputs) -> torch.Tensor:
    """CHGNet's atom/bond/angle updates (chgnet.model.CHGNet._compute) from frozen inputs to the last atom conv."""
    atom_feas, bond_feas, angle_feas = inputs.atom_feas, inputs.bond_feas, inputs.angle_feas
    for atom_layer, bond_layer, angle_layer in zip(model.atom_conv_layers[:-1], model.bond_conv_layers,
                                                   model.angle_layers, strict=False):
        atom_feas = atom_layer(atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=inputs.bond_weights_ag,
                               atom_graph=inputs.atom_graph, directed2undirected=inputs.directed2undirected)
        if angle_feas is not None and bond_layer is not None:
            bond_feas = bond_layer(atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=inputs.bond_weights_bg,
                                   angle_feas=angle_feas, bond_graph=inputs.bond_graph)
            if angle_layer is not None:
                angle_feas = angle_layer(atom_feas=atom_feas, bond_feas=bond_feas, angle_feas=angle_feas,
                                         bond_graph=inputs.bond_graph)
    return model.atom_conv_layers[-1](atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=inputs.bond_weights_ag,
                                      atom_graph=inputs.atom_graph, directed2undirected=inputs.directed2undirected)
