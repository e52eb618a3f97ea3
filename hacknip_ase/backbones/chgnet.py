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

from ..errors import CorruptWeightsError, InvalidStructureError, UnknownModelError
from ..weights import resolve_weights, sha256_file
from ._hooks import capture_outputs, run_until
from .base import Backbone, BackboneInfo, ForwardResult

#: CHGNet reports stress in GPa.
_GPA_PER_EV_A3 = 160.21766208
_PACKAGED = {
    "0.3.0": "0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
    "r2scan": "r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}


class CHGNetBackbone(Backbone):
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
    needs_cell = True

    def __init__(self, model: str = "0.3.0", *, weights=None, device: str = "cpu", **options) -> None:
        super().__init__(device=device, **options)
        from chgnet.model.model import CHGNet, module_dir

        if weights is None:
            if model not in _PACKAGED:
                raise UnknownModelError(f"unknown CHGNet model {model!r}; packaged: {', '.join(_PACKAGED)}")
            weights = os.path.join(module_dir, "..", "pretrained", _PACKAGED[model])
        path = resolve_weights(model=f"CHGNet {model}", filename=os.path.basename(str(weights)), url=None, path=weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints a banner on every build
                self.model = CHGNet.from_dict(state["model"], mlp_out_bias=model == "0.2.0", version=model)
        except Exception as exc:
            raise CorruptWeightsError(f"cannot load CHGNet weights from {path}: {exc}") from exc
        self.model.to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._depth_modules = [self.model.atom_embedding, *self.model.atom_conv_layers]
        self.info = BackboneInfo(
            name=self.name,
            model=model,
            weights_sha256=sha256_file(path),
            n_depths=len(self._depth_modules),
            dim=self.model.atom_embedding.embedding.embedding_dim,
            cutoff=float(self.model.graph_converter.atom_graph_cutoff),
            elements=frozenset(range(1, self.model.atom_embedding.embedding.num_embeddings + 1)),
            features="atom features after each atom-conv layer",
        )

    def graphs(self, atoms_list: list[Atoms]):
        """CHGNet crystal graphs (CPU), one per prepared structure."""
        graphs = []
        for atoms in atoms_list:
            try:
                graphs.append(self.model.graph_converter(AseAtomsAdaptor.get_structure(atoms)))
            except ValueError as exc:  # CHGNet refuses atoms with no neighbour in its cutoff
                raise InvalidStructureError(f"CHGNet cannot build a graph for {atoms.get_chemical_formula()}: {exc}") from exc
        return graphs

    def _forward(self, atoms_list: list[Atoms], *, forces: bool) -> ForwardResult:
        graphs = [g.to(self.device) for g in self.graphs(atoms_list)]
        task = "efs" if forces else "e"
        with capture_outputs(self._depth_modules) as captured, torch.set_grad_enabled(forces):
            prediction = self.model(graphs, task=task)
        counts = [len(atoms) for atoms in atoms_list]
        stacked = torch.stack(captured, dim=1).cpu().numpy().astype(np.float32)
        result = ForwardResult(
            node_features=np.split(stacked, np.cumsum(counts)[:-1]),
            energy=prediction["e"].detach().cpu().numpy().astype(float) * np.asarray(counts),
        )
        if forces:
            result.forces = [f.detach().cpu().numpy().astype(float) for f in prediction["f"]]
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
