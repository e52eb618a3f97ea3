"""MACE adapter (MACE-MP-0 "small" and "medium", or any ScaleShiftMACE checkpoint).

Depth 0 is the linear node embedding, depth k (1..num_interactions) the node features after
interaction + product block k. MACE features are equivariant; only the invariant ``0e``
channels are taken, at every depth. MACE-MP-0 small (``128x0e`` hidden) and medium
(``128x0e+128x1o``, last layer ``128x0e`` only) both carry 128 scalars at every depth, so
both give 3 depths x 128.

Safe loading
------------
mace's own checkpoints (the official MACE-MP-0 ``.model`` files) are whole pickled torch
modules, which unpickle arbitrary code and cannot be read with ``weights_only=True``. So:

* A file written by :func:`save_weights` (architecture config as plain values + state_dict)
  is always loaded with ``weights_only=True``. This is the recommended format: convert an
  official file once, then load the converted copy with no trust needed.
* A whole-model pickle is refused with :class:`UntrustedCheckpointError` unless
  ``trust_checkpoint=True`` is passed. This also applies to the official file fetched when
  ``weights=None``: mace's sources publish no checksum for it, so nothing is trusted
  automatically.

Loading a :func:`save_weights` file runs the model constructor, which rebuilds MACE's
Clebsch-Gordan tables (seconds for max_ell 3); a whole pickle skips that. ``weights_sha256`` is
the hash of the file actually loaded, so a converted copy has its own identity.

``import mace`` turns on the TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD switch for the whole
process; they are only imported through :mod:`hacknip_ase._trusted`, which restores it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress

from .._trusted import import_trusted
from ..errors import CorruptWeightsError, HackNIPError, InvalidOptionError, UnknownModelError, UntrustedCheckpointError
from ._hooks import capture_outputs, run_until
from ._irreps import scalar_index, uniform_width
from .base import ForwardResult
from .nip import NIPBackbone

#: Official MACE-MP-0 files, as in mace/calculators/foundations_models.py (``mace_mp_urls``).
MACE_MP_URLS = {
    "small": "https://github.com/ACEsuit/mace-mp/releases/download/mace_mp_0/2023-12-10-mace-128-L0_energy_epoch-249.model",
    "medium": "https://github.com/ACEsuit/mace-mp/releases/download/mace_mp_0/2023-12-03-mace-128-L1_epoch-199.model",
}
#: Marker of the safe (weights_only) file format written by :func:`save_weights`.
SAFE_FORMAT = "hacknip-mace-state-dict/1"


def _mace():
    """mace/e3nn modules, imported with the weights-only switch scoped (see _trusted)."""
    _, _, modules, data, tools, torch_geometric, torch_tools, scripts_utils = import_trusted(
        "e3nn", "mace", "mace.modules", "mace.data", "mace.tools", "mace.tools.torch_geometric",
        "mace.tools.torch_tools", "mace.tools.scripts_utils",
    )
    return modules, data, tools, torch_geometric, torch_tools, scripts_utils


def save_weights(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write a ScaleShiftMACE as plain config + state_dict, loadable with ``weights_only=True``."""
    modules, _, _, _, _, scripts_utils = _mace()
    if type(model).__name__ != "ScaleShiftMACE":
        raise HackNIPError(f"only ScaleShiftMACE models can be saved, got {type(model).__name__}")
    if getattr(model, "embedding_specs", None) is not None:
        raise HackNIPError("MACE models with extra joint embeddings (charge/spin) are not supported")
    config = scripts_utils.extract_config_mace_model(model)
    gates = {fn: name for name, fn in modules.gate_dict.items() if fn is not None}
    if config["gate"] is not None and config["gate"] not in gates:
        raise HackNIPError(f"unsupported MACE gate {config['gate']!r}")
    plain = {
        key: value for key, value in config.items()
        if key not in {"cueq_config", "embedding_specs"}
    }
    plain.update(
        interaction_cls=config["interaction_cls"].__name__,
        interaction_cls_first=config["interaction_cls_first"].__name__,
        readout_cls=config["readout_cls"].__name__,
        gate=None if config["gate"] is None else gates[config["gate"]],
        hidden_irreps=str(config["hidden_irreps"]),
        MLP_irreps=str(config["MLP_irreps"]),
        edge_irreps=None if config["edge_irreps"] is None else str(config["edge_irreps"]),
        atomic_energies=np.asarray(config["atomic_energies"]).tolist(),
        atomic_numbers=[int(z) for z in config["atomic_numbers"]],
        atomic_inter_scale=np.asarray(config["atomic_inter_scale"]).tolist(),
        atomic_inter_shift=np.asarray(config["atomic_inter_shift"]).tolist(),
        distance_transform=str(config["distance_transform"]),
        avg_num_neighbors=float(config["avg_num_neighbors"]),
        heads=list(config["heads"]),
    )
    odd = {key: type(value).__name__ for key, value in plain.items() if not _is_plain(value)}
    if odd:  # would not load with weights_only=True
        raise HackNIPError(f"MACE config entries {odd} cannot be saved as plain values")
    record = {"format": SAFE_FORMAT, "config": plain,
              "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    path = Path(path)
    torch.save(record, path)
    return path


def _is_plain(value) -> bool:
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return value is None or isinstance(value, bool | int | float | str)


class MACEBackbone(NIPBackbone):
    """MACE through its own AtomicData graphs and torch_geometric batching.

    Parameters
    ----------
    model : str
        "medium" (default: the MACE-MP-0 model of the MACE-MP paper and mace's original
        default) or "small". With ``weights`` it is only a label.
    weights : path, optional
        A :func:`save_weights` file (safe), or a whole pickled MACE model (needs
        ``trust_checkpoint=True``). Default: the official MACE-MP-0 file from the user cache,
        downloaded if missing.
    trust_checkpoint : bool
        Allow full unpickling of a whole-model checkpoint (arbitrary code): only for files
        whose source you trust.
    dtype : str
        "float32" (default, as mace's ``mace_mp``) or "float64".
    head : str, optional
        Readout head of a multi-head model (default: the only head, or "default").
    device : str
        Torch device.
    """

    name = "mace"
    title = "MACE"
    default_model = "medium"
    trainable_prefixes = ("interactions", "products")

    def __init__(self, model: str = "medium", *, weights=None, trust_checkpoint: bool = False,
                 dtype: str = "float32", head: str | None = None, device: str = "cpu", **options) -> None:
        if dtype not in ("float32", "float64"):
            raise InvalidOptionError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.trust_checkpoint, self.dtype, self.head = trust_checkpoint, dtype, head
        super().__init__(model, weights=weights, device=device, **options)

    def official_weights(self, model: str) -> str:
        if model not in MACE_MP_URLS:
            raise UnknownModelError(f"unknown MACE-MP-0 model {model!r}; valid: {', '.join(MACE_MP_URLS)}")
        return MACE_MP_URLS[model]

    def load(self, model: str, path) -> torch.nn.Module:
        """A :func:`save_weights` file through the safe path, or a whole pickle if trusted."""
        _mace()  # whole pickles name mace/e3nn classes; import them with the switch scoped
        if not zipfile.is_zipfile(path):  # every torch.save file since torch 1.6 is a zip archive
            raise CorruptWeightsError(f"{path} is not a torch checkpoint (not a zip archive)")
        try:
            network = super().load(model, path)
        except CorruptWeightsError as exc:
            if not isinstance(exc.__cause__, pickle.UnpicklingError):
                raise
            network = self._whole_pickle(path, exc.__cause__)
        if getattr(network, "embedding_specs", None) is not None:
            # its joint embedding is added in place after the node embedding: depth 0 would be ambiguous
            raise HackNIPError("MACE models with extra joint embeddings (charge/spin) are not supported")
        return network

    def _whole_pickle(self, path, refused: Exception) -> torch.nn.Module:
        if not self.trust_checkpoint:
            raise UntrustedCheckpointError(
                f"{path} is a whole pickled model (e.g. an official MACE-MP .model file); "
                "unpickling it can run arbitrary code. Pass trust_checkpoint=True only if you trust "
                "its source, then convert it once with hacknip_ase.backbones.mace.save_weights"
            ) from refused
        try:
            model = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise CorruptWeightsError(f"cannot load MACE checkpoint {path}: {exc!r}") from exc
        if not isinstance(model, torch.nn.Module) or type(model).__name__ != "ScaleShiftMACE":
            raise CorruptWeightsError(f"{path} does not hold a ScaleShiftMACE model (got {type(model).__name__})")
        return model

    @staticmethod
    def split_checkpoint(record):
        if not isinstance(record, dict) or record.get("format") != SAFE_FORMAT:
            raise CorruptWeightsError(
                "not a MACE weights file: expected a whole MACE model or a file written by "
                "hacknip_ase.backbones.mace.save_weights"
            )
        state = record["state_dict"]
        dtype = next(v.dtype for v in state.values() if v.is_floating_point())
        # Build in the checkpoint's dtype: constructor-computed tensors keep full precision.
        return {**record["config"], "dtype": str(dtype).removeprefix("torch.")}, state

    @classmethod
    def architecture(cls, model: str = "medium", config: dict | None = None) -> torch.nn.Module:
        """An untrained ScaleShiftMACE from a :func:`save_weights` config (plain values; ``dtype``
        "float64" unless the config names another)."""
        modules, _, _, _, torch_tools, _ = _mace()
        if config is None:
            raise InvalidOptionError("a MACE architecture needs its config (hyperparameters), as save_weights writes it")
        config = dict(config)
        dtype = config.pop("dtype", "float64")
        o3 = import_trusted("e3nn.o3")[0]
        named = {"interaction_cls": modules.interaction_classes, "interaction_cls_first": modules.interaction_classes,
                 "readout_cls": modules.readout_classes, "gate": modules.gate_dict}
        for key, value in config.items():  # plain values (names, irreps strings, lists) -> mace's objects
            if key in named:
                config[key] = named[key][str(value) if key == "gate" else value]
            elif key in ("hidden_irreps", "MLP_irreps", "edge_irreps") and value is not None:
                config[key] = o3.Irreps(value)
            elif key in ("atomic_energies", "atomic_inter_scale", "atomic_inter_shift"):
                config[key] = np.asarray(value)
        with torch_tools.default_dtype(dtype):
            return modules.ScaleShiftMACE(**config)

    def place(self, network):
        return network.to(device=self.device, dtype=getattr(torch, self.dtype)).eval()

    def depth_modules(self):
        return [self.model.node_embedding, *self.model.products]

    point_symmetry = "O(3)"  # E(3)-equivariant irreps with parity

    def describe(self) -> dict:
        heads = list(getattr(self.model, "heads", ["Default"]))
        head = self.head
        if head is None:
            named_default = [h for h in heads if h.lower() == "default"]
            if len(heads) > 1 and not named_default:
                raise InvalidOptionError(f"this MACE model has heads {heads}; pass head=...")
            head = heads[0] if len(heads) == 1 else named_default[0]
        elif head not in heads:
            raise InvalidOptionError(f"unknown head {head!r}; this model has {heads}")
        self.head, self.heads = head, heads
        scalars = [scalar_index(self.model.node_embedding.linear.irreps_out)]
        scalars += [scalar_index(product.linear.irreps_out) for product in self.model.products]
        dim = uniform_width(scalars, model=f"MACE model {self.weights_path}")  # MACE-MP: 128 everywhere
        self._scalars = [index.to(self.device) for index in scalars]
        self.z_table = _mace()[2].AtomicNumberTable([int(z) for z in self.model.atomic_numbers])
        return {"dim": dim, "cutoff": float(self.model.r_max), "elements": frozenset(self.z_table.zs),
                "features": "invariant (0e) node features: embedding, then after each interaction+product"}

    def batch(self, atoms_list: list[Atoms]) -> dict:
        """The model's input dict for prepared structures, built as MACECalculator does."""
        _, data, _, torch_geometric, torch_tools, _ = _mace()
        with torch_tools.default_dtype(self.dtype):
            graphs = [
                data.AtomicData.from_config(
                    data.config_from_atoms(atoms, head_name=self.head),
                    z_table=self.z_table, cutoff=self.info.cutoff, heads=self.heads,
                )
                for atoms in atoms_list
            ]
        return torch_geometric.Batch.from_data_list(graphs).to(self.device).to_dict()

    def _features(self, captured: torch.Tensor, depth: int) -> np.ndarray:
        return captured[:, self._scalars[depth]].cpu().numpy().astype(np.float32)

    def _forward(self, atoms_list: list[Atoms], *, forces: bool, stress: bool) -> ForwardResult:
        batch = self.batch(atoms_list)
        with capture_outputs(self._depth_modules) as captured, torch.set_grad_enabled(forces):
            # Same flags as MACECalculator (stress from the symmetric displacement) when forces are wanted.
            out = self.model(batch, compute_force=forces, compute_stress=forces, training=False)
        features = np.stack([self._features(c, depth) for depth, c in enumerate(captured)], axis=1)
        counts = [len(atoms) for atoms in atoms_list]
        result = ForwardResult(
            node_features=np.split(features, np.cumsum(counts)[:-1]),
            energy=out["energy"].detach().cpu().numpy().astype(float),
        )
        if forces:
            result.forces = np.split(out["forces"].detach().cpu().numpy().astype(float), np.cumsum(counts)[:-1])
            result.stress = [full_3x3_to_voigt_6_stress(s) for s in out["stress"].detach().cpu().numpy().astype(float)]
        return result

    def _truncated_features(self, atoms: Atoms, depth: int) -> np.ndarray:
        batch = self.batch([atoms])
        with torch.no_grad():
            features = run_until(self._depth_modules, depth,
                                 lambda: self.model(batch, compute_force=False, training=False))
        return self._features(features, depth)

    # -- fine-tuning ---------------------------------------------------------------------
    def trainable_view(self, device="cpu"):
        """HackNIP's fine-tuning view: interactions and products train.

        Frozen: the node embedding, the radial embedding, the readouts (every layer's readout
        is decoder), the atomic energies and scale/shift. Graphs are built per batch through
        the adapter (not cached: slower epochs).
        """
        from ._irreps import scalar_index
        from .trainable import TrainableView, last_output, make_view

        def build(model, device):
            last = model.products[-1]
            scalars = scalar_index(last.linear.irreps_out).to(device)

            def run(atoms_list):
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.batch(atoms_list).items()}
                return last_output(last, lambda: model(batch, compute_force=False, training=True))[:, scalars]

            return TrainableView(self, model, self.trainable_prefixes, self.info.dim, lambda atoms: atoms, run,
                                 device)

        return make_view(self, device, build)
