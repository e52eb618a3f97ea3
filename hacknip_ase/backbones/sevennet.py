"""SevenNet adapter (SevenNet-0 weights ship in the sevenn wheel; no download).

SevenNet is E(3)-equivariant: its node state holds scalars (0e) next to vectors and tensors
(l > 0), which rotate with the structure. Only the invariant 0e channels are taken, at every
depth: depth 0 is the node embedding (one-hot -> linear, 128x0e), depth k (1..5) the node
state after interaction block k, i.e. after its equivariant gate (the block's output; the 0e
part is 128 channels in every block, the last block outputs only 128x0e). SevenNet-0:
6 depths x 128. A checkpoint whose blocks differ in scalar width is refused, because
BackboneInfo has one ``dim``.

Checkpoints are loaded with ``torch.load(weights_only=True)``; they hold numpy arrays (energy
shift/scale in the config), so plain numeric numpy arrays are allow-listed, nothing else.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from ase import Atoms

from .._trusted import import_trusted
from ..errors import CorruptWeightsError, UnknownModelError
from ._hooks import StopForward, capture_outputs, run_until
from ._irreps import scalar_index, uniform_width
from .base import ForwardResult
from .nip import NIPBackbone

#: Packaged models: name -> attribute of sevenn._const holding the checkpoint path.
_PACKAGED = {"7net-0": "SEVENNET_0_11Jul2024", "7net-0_22May2024": "SEVENNET_0_22May2024",
             "7net-l3i5": "SEVENNET_l3i5"}
#: sevenn orders stress xx, yy, zz, xy, yz, zx; ASE Voigt is xx, yy, zz, yz, xz, xy.
_TO_ASE_VOIGT = [0, 1, 2, 4, 5, 3]


def _sevenn(*modules: str) -> list:
    """sevenn modules, imported with the weights-only switch scoped (see _trusted)."""
    return import_trusted(*modules)


def _packaged(model: str) -> str:
    """Path of a checkpoint shipped in the sevenn wheel."""
    if model not in _PACKAGED:
        raise UnknownModelError(f"unknown SevenNet model {model!r}; packaged: {', '.join(_PACKAGED)}")
    return getattr(_sevenn("sevenn._const")[0], _PACKAGED[model])


def _model_config(config: dict) -> dict:
    """A checkpoint's config as ``sevenn.util.model_from_checkpoint`` completes it (old names, defaults)."""
    const, util = _sevenn("sevenn._const", "sevenn.util")
    defaults = {**const.model_defaults(config)}
    config = util._patch_old_config(config)
    for key, value in defaults.items():
        if key not in config:
            warnings.warn(f"{key} not in config, using default value {value}", UserWarning, stacklevel=2)
            config[key] = value
    return {key: value.cpu() if isinstance(value, torch.Tensor) else value for key, value in config.items()}


def _numpy_safe_globals() -> list:
    """What ``weights_only`` needs to rebuild plain numeric numpy arrays (no object arrays)."""
    from numpy.core.multiarray import _reconstruct

    dtypes = [type(np.dtype(code)) for code in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]]
    return [(_reconstruct, "numpy.core.multiarray._reconstruct"),
            (_reconstruct, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype, *set(dtypes)]


class SevenNetBackbone(NIPBackbone):
    """SevenNet through sevenn's own graph builder, torch_geometric batching and model.

    Parameters
    ----------
    model : str
        Packaged model: "7net-0" (SevenNet-0, 11Jul2024; default), "7net-0_22May2024" or
        "7net-l3i5".
    weights : path, optional
        A SevenNet checkpoint of your own (e.g. fine-tuned); loaded with ``weights_only=True``.
    device : str
        Torch device.
    """

    name = "sevennet"
    title = "SevenNet"
    default_model = "7net-0"
    needs_cell = False  # sevenn builds graphs of molecules without a cell, as its calculator does
    checkpoint_contents = "tensors, numeric numpy arrays and plain Python values"

    def __init__(self, model: str = "7net-0", *, weights=None, device: str = "cpu", **options) -> None:
        # e3nn loads a packaged file at import time that weights_only refuses: trust it, scoped.
        self._keys, graph_data, dataload = _sevenn("sevenn._keys", "sevenn.atom_graph_data", "sevenn.train.dataload")
        self._graph_data, self._to_graph = graph_data.AtomGraphData, dataload.unlabeled_atoms_to_graph
        if weights is not None:
            model = os.path.basename(str(weights))  # a user's checkpoint is named by its file
        super().__init__(model, weights=weights, device=device, **options)

    def official_weights(self, model: str) -> str:
        return _packaged(model)

    @classmethod
    def safe_globals(cls) -> list:
        return _numpy_safe_globals()

    @staticmethod
    def split_checkpoint(checkpoint):
        return _model_config(checkpoint["config"]), checkpoint["model_state_dict"]

    @classmethod
    def architecture(cls, model: str = "7net-0", config: dict | None = None):
        """sevenn's E(3)-equivariant network for ``config`` (a checkpoint's; default: the packaged
        ``model``'s)."""
        if config is None:
            config = _model_config(cls.read_checkpoint(_packaged(model))["config"])
        return _sevenn("sevenn.model_build")[0].build_E3_equivariant_model(config)

    def load_state(self, network, state) -> None:
        # as sevenn.util.model_from_checkpoint: checkpoints before April 2024 name modules differently
        missing, _ = network.load_state_dict(state, strict=False)
        if missing:
            missing, unused = network.load_state_dict(_sevenn("sevenn.util")[0]._map_old_model(state), strict=False)
            if unused:
                warnings.warn(f"Some keys are not used: {unused}", UserWarning, stacklevel=2)
        if missing:
            raise CorruptWeightsError(f"the SevenNet checkpoint lacks parameters {missing}")

    def depth_modules(self):
        modules = self.model._modules
        gates = [m.gate for key, m in modules.items() if key.endswith("_equivariant_gate")]
        return [modules["onehot_to_feature_x"].linear, *gates]

    @property
    def point_symmetry(self) -> str:
        """SevenNet-0 is built without parity ("is_parity": False): rotations only."""
        return "O(3)" if self.config.get("is_parity", True) else "SO(3)"  # sevenn's own default is True

    def describe(self) -> dict:
        self._scalars = [scalar_index(m.irreps_out).to(self.device) for m in self._depth_modules]
        return {"dim": uniform_width(self._scalars, model=f"SevenNet checkpoint {self.weights_path}"),
                "cutoff": float(self.config["cutoff"]), "elements": frozenset(int(z) for z in self.model.type_map),
                "features": "invariant 0e node channels after the embedding and each interaction block"}

    def batch(self, atoms_list: list[Atoms]):
        """sevenn graphs of prepared structures, collated as its DataLoader does."""
        from torch_geometric.data import Batch

        graphs = [self._graph_data.from_numpy_dict(self._to_graph(atoms, self.info.cutoff)) for atoms in atoms_list]
        return Batch.from_data_list(graphs).to(self.device)

    def _scalar_features(self, depth: int, output: torch.Tensor) -> torch.Tensor:
        return output[:, self._scalars[depth]]

    def _forward(self, atoms_list: list[Atoms], *, forces: bool, stress: bool) -> ForwardResult:
        data = self.batch(atoms_list)
        self.model.set_is_batch_data(True)
        keys = self._keys
        with capture_outputs(self._depth_modules) as captured:
            if forces:  # sevenn differentiates the energy w.r.t. edge vectors for forces and stress
                data = self.model(data)
            else:  # modules write into ``data``; stop before the autograd force/stress step
                handle = self.model.force_output.register_forward_pre_hook(_stop)
                try:
                    with torch.no_grad():
                        self.model(data)
                except StopForward:
                    pass
                finally:
                    handle.remove()
        stacked = torch.stack([self._scalar_features(d, c) for d, c in enumerate(captured)], dim=1)
        counts = np.cumsum([len(atoms) for atoms in atoms_list])[:-1]
        result = ForwardResult(
            node_features=np.split(stacked.cpu().numpy().astype(np.float32), counts),
            energy=data[keys.PRED_TOTAL_ENERGY].detach().cpu().numpy().astype(float).reshape(-1),
        )
        if forces:
            result.forces = np.split(data[keys.PRED_FORCE].detach().cpu().numpy().astype(float), counts)
            # same sign and order as SevenNetCalculator: ASE stress = -(sevenn stress), Voigt
            stress = -data[keys.PRED_STRESS].detach().cpu().numpy().astype(float).reshape(len(atoms_list), 6)
            result.stress = list(stress[:, _TO_ASE_VOIGT])
        return result

    def _truncated_features(self, atoms: Atoms, depth: int) -> np.ndarray:
        data = self.batch([atoms])
        self.model.set_is_batch_data(True)
        with torch.no_grad():
            output = run_until(self._depth_modules, depth, lambda: self.model(data))
        return self._scalar_features(depth, output).cpu().numpy().astype(np.float32)

    # -- fine-tuning ---------------------------------------------------------------------
    def trainable_view(self, device="cpu", *, optimized: bool = True):
        """HackNIP's fine-tuning view: the interaction blocks ``<k>_*`` train.

        Frozen: the edge embedding (radial basis), the one-hot -> feature embedding and the
        decoder (reduce_* layers, energy rescale). Graphs are built once per structure by the
        adapter's own builder. ``optimized`` (default): the edge vectors and the strain are not
        differentiated (sevenn marks them for its force and stress outputs, which no loss of
        the pooled path reads); ``False`` keeps sevenn's own settings, the reference.
        """
        from torch_geometric.data import Batch

        from ._irreps import scalar_index
        from .trainable import TrainableView, last_output, make_view

        def build(model, device):
            if optimized:
                model.key_grad = None
                for module in model.modules():
                    if hasattr(module, "is_stress"):
                        module.is_stress = False
            blocks = [key for key in model._modules if key.split("_", 1)[0].isdigit()]
            last = model._modules[[k for k in blocks if k.endswith("_equivariant_gate")][-1]].gate
            scalars = scalar_index(last.irreps_out).to(device)

            def encode(atoms):
                return self._graph_data.from_numpy_dict(self._to_graph(atoms, self.info.cutoff))

            def run(graphs):
                data = Batch.from_data_list(graphs).to(device)
                model.set_is_batch_data(True)
                return last_output(last, lambda: model(data))[:, scalars]

            return TrainableView(self, model, tuple(blocks), self.info.dim, encode, run, device)

        return make_view(self, device, build)


def _stop(*_):
    raise StopForward
