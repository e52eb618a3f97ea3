"""ORB adapter (orb-models): ORB-v2, HackNIP's headline backbone, and the orb-v3 family.

Depths. Depth 0 is the encoder output: node features after ORB's atom embedding and encoder
MLP, before the first message-passing layer. Depth k is the node features after interaction
(GNN) layer k. ORB-v2 has 15 layers of width 256, so 16 depths x 256. orb-v3 has 5 layers,
so 6 depths x 256. orb-d3-sm-v2 has 10 layers and orb-d3-xs-v2 has 5.

Feature modes (recorded in ``BackboneInfo.features``):

* ``features="node"`` (default): the raw node features at each depth. These are HackNIP's
  published features. Their script called ORB's ``_decoder`` after the truncated layer
  stack, but in the orb-models 0.4 API they used, the decoder wrote its output to
  ``node_features["pred"]`` and they mean-pooled ``node_features["feat"]``. That is the
  layer-k features, unchanged by the decoder.
* ``features="decoder"``: ORB's node decoder (``MoleculeGNS._decoder``, the MLP the model
  applies after its last layer) applied at every depth. Its output is 3-wide, so ORB-v2
  gives 16 depths x 3. This mode is for comparison only; it is not HackNIP's protocol.

Graph. Edges come from orb-models' own featurizer and use the cutoff and neighbour limit
of the model's ``SystemConfig``. All ORB models use a 6 A cutoff. ORB-v2 and the "-20-"
orb-v3 models keep at most **20** neighbours per atom (the nearest ones); the "-inf-" and
OMol orb-v3 models keep at most 120. With 20 neighbours, an atom in a dense solid sees only
its 20 nearest neighbours, not its whole 6 A sphere. Exact distance ties in a symmetric crystal are broken arbitrarily,
so symmetry-equivalent atoms can get slightly different features. HackNIP built the graph
with a 10 A radius, but attention is multiplied by a 6 A cutoff envelope, so edges beyond
6 A do not change node features. ``expand_supercell=True`` applies HackNIP's supercell
expansion.

Rotation. ORB is not rotation invariant by construction: its edge features include raw unit
vectors (orb-v2) or spherical harmonics (orb-v3), and they go into plain MLPs. Invariance is
learned only approximately, so features at depth >= 1 depend on orientation. Depth 0 does
not. ``ORBBackbone.point_symmetry`` is None.

Molecules (``pbc=False``) are featurized as they are: ORB needs no cell. Partly periodic
cells are rejected, because ORB does not support them. The element coverage is
Z = 1..117. ORB's featurizer one-hot has 118 classes (index = Z), so Og (Z=118) cannot be
featurized.

Weights. Pass ``weights=PATH`` for a local checkpoint. Otherwise the file is looked up in
the hacknip cache and downloaded from orb-models' official URL for that model name. As in
orb-models, architecture and weights are apart: :meth:`ORBBackbone.architecture` builds the
network that orb-models' registry builder for that name builds (in float32, orb-models'
"float32-highest" precision, global torch settings left as found), and the state dict, read
with ``torch.load(weights_only=True)``, is loaded strictly. No ``torch.compile``.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import torch
from ase import Atoms

from ..errors import InvalidOptionError, InvalidStructureError, UnknownModelError
from ._hooks import capture_outputs
from .base import ForwardResult
from .nip import NIPBackbone

#: orb-models' featurizer one-hot width: atomic numbers must be below this.
_ONE_HOT_CLASSES = 118
FEATURE_MODES = ("node", "decoder")


def available_models() -> list[str]:
    """ORB model names this adapter loads: orb-models' registry minus its deprecated v1 entries
    and the separate dispersion-only models."""
    from orb_models.forcefield.pretrained import ORB_PRETRAINED_MODELS

    return sorted(name for name in ORB_PRETRAINED_MODELS if name.startswith("orb-") and "v1" not in name)


def weights_url(model: str) -> str:
    """orb-models' official download URL for ``model`` (the default of its builder)."""
    from orb_models.forcefield.pretrained import ORB_PRETRAINED_MODELS

    return inspect.signature(ORB_PRETRAINED_MODELS[model]).parameters["weights_path"].default


def _check_model(model: str) -> None:
    if model not in available_models():
        raise UnknownModelError(f"unknown ORB model {model!r}; valid names: {', '.join(available_models())}")


def _architecture_call(model: str) -> tuple[str, dict]:
    """The orb-models architecture function and its arguments that ``model``'s registry builder uses
    (orb_models/forcefield/pretrained.py): v2 models differ in depth, v3 in kind and neighbour limit."""
    if model.startswith("orb-v3-"):
        kind = model.split("-")[2]  # "conservative" or "direct"
        options = {"max_num_neighbors": 20 if "-20-" in model else 120}
        if model.endswith("-omol"):
            options.update(has_charge_spin_cond=True, has_stress=False)
        return f"orb_v3_{kind}_architecture", options
    steps = {"orb-d3-sm-v2": 10, "orb-d3-xs-v2": 5}.get(model, 15)
    return "orb_v2_architecture", {"num_message_passing_steps": steps, "max_num_neighbors": 20}


class ORBBackbone(NIPBackbone):
    """ORB through orb-models' own featurizer, batching and ``predict``.

    Parameters
    ----------
    model : str
        "orb-v2" (default) or another name from :func:`available_models` (the orb-v3 family).
    weights : path, optional
        Local checkpoint (a state dict). If it is None, the cache is used, then a download.
    features : {"node", "decoder"}
        Raw node features (default, HackNIP's) or ORB's node decoder applied at each depth.
    device : str
        Torch device.
    """

    name = "orb"
    title = "ORB"
    default_model = "orb-v2"
    needs_cell = False
    # ORB feeds raw edge unit vectors to its MLPs. It is not equivariant by construction,
    # so features at depth >= 1 change under rotation (trained weights only approximately).
    point_symmetry = None
    trainable_prefixes = ("model.gnn_stacks",)

    def __init__(self, model: str = "orb-v2", *, weights=None, features: str = "node",
                 device: str = "cpu", **options) -> None:
        _check_model(model)
        if features not in FEATURE_MODES:
            raise InvalidOptionError(f"features must be one of {FEATURE_MODES}, got {features!r}")
        self.features = features
        super().__init__(model, weights=weights, device=device, **options)

    def official_weights(self, model: str) -> str:
        return weights_url(model)

    @classmethod
    def architecture(cls, model: str = "orb-v2", config=None):
        """orb-models' untrained network of ``model``, in float32 (orb-models' "float32-highest"
        precision), built as its registry builder does; global torch settings are left as found."""
        from orb_models.forcefield import pretrained
        from orb_models.forcefield.atomic_system import SystemConfig

        _check_model(model)
        function, options = _architecture_call(model)
        system_config = SystemConfig(radius=6.0, max_num_neighbors=options.pop("max_num_neighbors"))
        dtype, matmul = torch.get_default_dtype(), torch.get_float32_matmul_precision()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # orb-models warns that it sets the global dtype
                network = getattr(pretrained, function)(device="cpu", system_config=system_config, **options)
                return network.to(pretrained.set_torch_precision("float32-highest"))
        finally:
            torch.set_default_dtype(dtype)
            torch.set_float32_matmul_precision(matmul)

    def depth_modules(self):
        gns = self.model.model
        return [gns._encoder._node_fn, *gns.gnn_stacks]

    def describe(self) -> dict:
        from orb_models.forcefield.nn_util import ChargeSpinConditioner

        gns = self.model.model
        self._dtype = next(self.model.parameters()).dtype
        # Conservative models take forces/stress as energy gradients, so they need autograd.
        self.conservative = hasattr(self.model, "grad_forces_name")
        self.needs_charge_spin = isinstance(gns.conditioner, ChargeSpinConditioner)
        self.system_config = self.model.system_config
        decoder_out = [m for m in gns._decoder.modules() if isinstance(m, torch.nn.Linear)][-1].out_features
        n_z = min(_ONE_HOT_CLASSES, gns.atom_emb.embeddings.num_embeddings)
        return {"dim": decoder_out if self.features == "decoder" else gns.gnn_stacks[0].latent_dim,
                "cutoff": float(self.system_config.radius), "elements": frozenset(range(1, n_z)),
                "features": self.features}

    @property
    def max_num_neighbors(self) -> int:
        """ORB's neighbour limit per atom in graph construction."""
        return int(self.system_config.max_num_neighbors)

    def _graph(self, atoms: Atoms):
        """orb-models' AtomGraphs for one prepared structure."""
        from orb_models.forcefield.atomic_system import ase_atoms_to_atom_graphs

        if atoms.pbc.any() and not atoms.pbc.all():
            raise InvalidStructureError(
                f"ORB does not support partly periodic cells (pbc={atoms.pbc.tolist()}); "
                "pad with vacuum and set pbc=True, or use pbc=False"
            )
        atoms = atoms.copy()
        has = ("charge" in atoms.info, "spin" in atoms.info)
        if self.needs_charge_spin:
            if not all(has):
                raise InvalidStructureError(
                    f"ORB {self.info.model} needs atoms.info['charge'] and atoms.info['spin'] (numbers)"
                )
        else:  # ORB would reject charge without spin, and batching needs the same keys everywhere
            atoms.info.pop("charge", None)
            atoms.info.pop("spin", None)
        return ase_atoms_to_atom_graphs(atoms, self.system_config, device=self.device, output_dtype=self._dtype)

    def _batch(self, atoms_list: list[Atoms]):
        from orb_models.forcefield.base import batch_graphs

        return batch_graphs([self._graph(atoms) for atoms in atoms_list]).to(self.device)

    def _forward(self, atoms_list: list[Atoms], *, forces: bool, stress: bool) -> ForwardResult:
        batch = self._batch(atoms_list)
        with capture_outputs(self._depth_modules) as captured, torch.set_grad_enabled(self.conservative):
            prediction = self.model.predict(batch)
        nodes = torch.stack(captured, dim=1)  # (n_atoms, n_depths, latent)
        if self.features == "decoder":
            with torch.no_grad():
                nodes = self.model.model._decoder(nodes)
        counts = [len(atoms) for atoms in atoms_list]
        splits = np.cumsum(counts)[:-1]
        result = ForwardResult(
            node_features=np.split(nodes.cpu().numpy().astype(np.float32), splits),
            energy=prediction["energy"].detach().cpu().numpy().astype(float).reshape(-1),
        )
        if forces:
            force_key = self.model.grad_forces_name if self.conservative else "forces"
            result.forces = np.split(prediction[force_key].detach().cpu().numpy().astype(float), splits)
            if self.model.has_stress:
                stress_key = self.model.grad_stress_name if self.conservative else "stress"
                # Same (n, 6) Voigt eV/A^3 array that ORBCalculator hands to ASE.
                stress = prediction[stress_key].detach().cpu().numpy().astype(float).reshape(len(counts), 6)
                result.stress = list(stress)
            else:
                result.stress = [None] * len(counts)
        return result

    def _truncated_features(self, atoms: Atoms, depth: int) -> np.ndarray:
        """HackNIP's protocol: the GNS with its layer list cut to the first ``depth`` layers."""
        gns = self.model.model
        batch = self._batch([atoms])
        layers = gns.gnn_stacks
        gns.gnn_stacks = layers[:depth]
        try:
            with torch.no_grad():
                out = gns(batch)
        finally:
            gns.gnn_stacks = layers
        features = out["pred"] if self.features == "decoder" else out["node_features"]
        return features.cpu().numpy().astype(np.float32)

    # -- fine-tuning ---------------------------------------------------------------------
    def trainable_view(self, device="cpu"):
        """HackNIP's fine-tuning view: the GNN stack trains.

        Frozen: the atom embedding, the encoder (node and edge MLPs), the decoder and heads.
        """
        from orb_models.forcefield.base import batch_graphs

        from .trainable import TrainableView, last_output, make_view

        if self.features != "node":
            raise InvalidOptionError("fine-tuning uses the raw node features; build the ORB backbone with "
                                     "features='node'")

        def build(model, device):
            last = model.model.gnn_stacks[-1]

            def run(graphs):
                batch = batch_graphs(graphs).to(device)
                return last_output(last, lambda: model.predict(batch))

            return TrainableView(self, model, self.trainable_prefixes, self.info.dim, self._graph, run, device)

        return make_view(self, device, build)

