"""End-to-end fine-tuning of a NIP backbone with an MLP head: the baseline that frozen
embeddings + a shallow head are compared against (HackNIP's data-efficiency study).

Recipe (the paper's): a head ``dim -> 128 -> 128 -> 1`` with SiLU, Xavier-uniform weights and
zero biases, on the mean-pooled node features of the backbone's last message-passing layer.
The first embedding / edge featurizer and the final decoder stay frozen, the message-passing
layers train. AdamW, learning rate 1e-5 for the backbone and 1e-3 for the head, weight decay
1e-4, up to 200 epochs with early stopping on a validation split carved from the training
data; the best checkpoint is kept and restored.

A *trainable view* (:func:`trainable_view`) is the per-backbone part: a deep copy of the
backbone's network, which of its parameters train, and a differentiable
``pooled_features(atoms_list) -> (n, dim)``. The last layer's output is captured by a forward
hook that keeps the autograd graph; the NIP's own forward code runs unchanged and is cut
right after that layer.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms
from sklearn.base import BaseEstimator, RegressorMixin
from torch import nn

from hacknip_ase.backbones import Backbone, get_backbone
from hacknip_ase.backbones._hooks import StopForward
from hacknip_ase.errors import HackNIPError

logger = logging.getLogger(__name__)

#: Hidden width of the fine-tuning head (paper: dim -> 128 -> 128 -> 1).
HEAD_HIDDEN = 128


# -- trainable views -----------------------------------------------------------------------
@dataclass
class TrainableView:
    """A trainable copy of a backbone's network and a differentiable pooled-feature function.

    ``encode`` turns one prepared structure into the model's per-structure input (graphs are
    built once and cached by :class:`FineTuner`); ``run`` takes a list of encoded structures
    and returns the last layer's node features (n_atoms_total, dim) with their autograd graph.
    """

    backbone: Backbone
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


def _last_output(module: nn.Module, run: Callable[[], Any]) -> torch.Tensor:
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


def _chgnet_view(backbone, model: nn.Module, device: torch.device) -> TrainableView:
    # Trains the atom/bond/angle message passing; frozen: composition model, atom embedding,
    # bond/angle basis expansions and embeddings, bond weights (the edge featurizer), and the
    # decoder (readout norm, MLP, magmom head), which the pooled path does not use anyway.
    last = model.atom_conv_layers[-1]

    def run(graphs):
        return _last_output(last, lambda: model([g.to(device) for g in graphs], task="e"))

    return TrainableView(backbone, model, ("atom_conv_layers", "bond_conv_layers", "angle_layers"),
                         backbone.info.dim, lambda atoms: backbone.graphs([atoms])[0], run, device)


def _sevennet_view(backbone, model: nn.Module, device: torch.device) -> TrainableView:
    # Trains interaction blocks "<k>_*"; frozen: edge embedding (radial basis), one-hot ->
    # feature embedding, and the decoder (reduce_* layers, energy rescale).
    from torch_geometric.data import Batch

    from hacknip_ase.backbones._irreps import scalar_index

    blocks = [key for key in model._modules if key.split("_", 1)[0].isdigit()]
    last = model._modules[[k for k in blocks if k.endswith("_equivariant_gate")][-1]].gate
    scalars = scalar_index(last.irreps_out).to(device)
    cutoff = backbone.info.cutoff

    def encode(atoms):
        # the adapter's own graph builder and data class, one structure at a time (cached)
        return backbone._graph_data.from_numpy_dict(backbone._to_graph(atoms, cutoff))

    def run(graphs):
        data = Batch.from_data_list(graphs).to(device)
        model.set_is_batch_data(True)
        return _last_output(last, lambda: model(data))[:, scalars]

    return TrainableView(backbone, model, tuple(blocks), backbone.info.dim, encode, run, device)


def _orb_view(backbone, model: nn.Module, device: torch.device) -> TrainableView:
    # Trains the GNN stack; frozen: atom embedding, encoder (node and edge MLPs), decoder, heads.
    from orb_models.forcefield.base import batch_graphs

    if backbone.features != "node":
        raise HackNIPError("fine-tuning uses the raw node features; build the ORB backbone with features='node'")
    last = model.model.gnn_stacks[-1]

    def run(graphs):
        batch = batch_graphs(graphs).to(device)
        return _last_output(last, lambda: model.predict(batch))

    return TrainableView(backbone, model, ("model.gnn_stacks",), backbone.info.dim, backbone._graph, run, device)


def _mace_view(backbone, model: nn.Module, device: torch.device) -> TrainableView:
    # Trains interactions + products; frozen: node embedding, radial embedding, the readouts
    # (every layer's readout is decoder), atomic energies and scale/shift.
    from hacknip_ase.backbones._irreps import scalar_index

    last = model.products[-1]
    scalars = scalar_index(last.linear.irreps_out).to(device)

    def run(atoms_list):
        # mace graphs are built per batch through the adapter (not cached: slower epochs)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in backbone.batch(atoms_list).items()}
        return _last_output(last, lambda: model(batch, compute_force=False, training=True))[:, scalars]

    return TrainableView(backbone, model, ("interactions", "products"), backbone.info.dim,
                         lambda atoms: atoms, run, device)


#: backbone registry name -> builder of its trainable view
VIEWS: dict[str, Callable[..., TrainableView]] = {
    "chgnet": _chgnet_view, "sevennet": _sevennet_view, "orb": _orb_view, "mace": _mace_view,
}


def trainable_view(backbone: Backbone, device: str | torch.device = "cpu") -> TrainableView:
    """A trainable deep copy of ``backbone.model``; the shared backbone is never modified."""
    if backbone.name not in VIEWS:
        raise HackNIPError(f"no fine-tuning view for backbone {backbone.name!r}; available: {', '.join(VIEWS)}")
    device = torch.device(device)
    model = copy.deepcopy(backbone.model).to(device)
    view = VIEWS[backbone.name](backbone, model, device)
    view.set_requires_grad()
    # eval(): none of these pretrained NIPs use dropout or batch norm; eval keeps any
    # mode-dependent behaviour identical to the frozen embeddings the comparison is against.
    model.eval()
    return view


# -- head ------------------------------------------------------------------------------------
class FineTuneHead(nn.Sequential):
    """``dim -> 128 -> 128 -> 1`` MLP with SiLU; Xavier-uniform weights, zero biases."""

    def __init__(self, dim: int, hidden: int = HEAD_HIDDEN) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, 1))
        for layer in self:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)


# -- update ratios ---------------------------------------------------------------------------
def update_ratios(before: Mapping[str, Any], after: Mapping[str, Any], *,
                  out_axis: Mapping[str, int] | None = None, by_parameter: bool = False):
    """Per-neuron update ratios between two sets of weights (HackNIP eq. 2-3).

    For every weight tensor with at least two dimensions and every output neuron ``i``
    (row ``i`` along its output axis, default 0 as in ``torch.nn.Linear``), with ``w_i`` all
    of that neuron's incoming weights::

        r_i = || w_i(after) - w_i(before) ||_2 / || w_i(before) ||_2

    One-dimensional parameters (biases, norm scales, e3nn's flattened tensor-product
    weights, whose neurons cannot be read from the shape) are skipped, as are neurons whose
    weights were all zero before (the ratio is undefined). ``out_axis`` overrides the output
    axis per name (sklearn's ``coefs_`` and e3nn's ``FullyConnectedNet`` store ``(in, out)``:
    pass 1). Returns all ratios concatenated, or ``{name: ratios}`` with ``by_parameter``.
    """
    out_axis = dict(out_axis or {})
    ratios = {}
    for name, old in before.items():
        old = _as_numpy(old)
        if old.ndim < 2 or not np.issubdtype(old.dtype, np.floating):
            continue
        new = _as_numpy(after[name])
        axis = out_axis.get(name, 0)
        old_rows = np.moveaxis(old, axis, 0).reshape(old.shape[axis], -1).astype(np.float64)
        new_rows = np.moveaxis(new, axis, 0).reshape(new.shape[axis], -1).astype(np.float64)
        norm = np.linalg.norm(old_rows, axis=1)
        keep = norm > 0
        ratios[name] = np.linalg.norm(new_rows - old_rows, axis=1)[keep] / norm[keep]
    if by_parameter:
        return ratios
    return np.concatenate(list(ratios.values())) if ratios else np.zeros(0)


def _as_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


# -- estimator -------------------------------------------------------------------------------
class FineTuner(RegressorMixin, BaseEstimator):
    """Fine-tune a NIP backbone end to end with an MLP head; sklearn-style ``fit``/``predict``.

    Parameters
    ----------
    backbone : str or Backbone
        Registry name (built with ``backbone_options``) or a built adapter. Its network is
        deep-copied before training: the shared pretrained backbone never changes.
    lr_backbone, lr_head : float
        AdamW learning rates of the trainable backbone layers (1e-5) and the head (1e-3).
    weight_decay : float
        AdamW weight decay of both groups (1e-4).
    max_epochs : int
        Upper bound on training epochs (200).
    patience : int
        Stop after this many epochs without a new best validation loss (default 20: one
        tenth of ``max_epochs``, long enough for the small backbone learning rate to show).
    batch_size : int
        Structures per optimizer step.
    val_fraction : float
        Share of the training data held out for early stopping (at least one structure),
        unless ``fit`` gets an explicit validation set.
    seed : int
        Seeds the split, the batch order and the head initialization.
    device : str, optional
        Torch device; default "cuda" when available, else "cpu".
    backbone_options : dict, optional
        Options for :func:`hacknip_ase.backbones.get_backbone` when ``backbone`` is a name.
    callback : callable, optional
        Called as ``callback(tuner, record)`` after the initial evaluation and after every
        epoch (``record`` is the history entry); for snapshots and logging.

    Attributes
    ----------
    history_ : list of dict
        Per epoch: ``epoch`` (0 = before training), ``train_loss``, ``val_loss`` (MSE of
        standardized targets), ``val_mae`` (target units), ``seconds`` (wall time of the
        epoch; for epoch 0 the setup: backbone copy, graph building, first evaluation).
    best_epoch_, best_val_loss_, n_epochs_, stopped_early_, fit_time_ : the early-stopping
        outcome and the wall time of ``fit`` in seconds (graph building included).
    """

    def __init__(self, backbone="chgnet", *, lr_backbone: float = 1e-5, lr_head: float = 1e-3,
                 weight_decay: float = 1e-4, max_epochs: int = 200, patience: int = 20,
                 batch_size: int = 32, val_fraction: float = 0.1, seed: int = 0,
                 device: str | None = None, backbone_options: dict | None = None,
                 callback: Callable | None = None) -> None:
        self.backbone = backbone
        self.lr_backbone = lr_backbone
        self.lr_head = lr_head
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.device = device
        self.backbone_options = backbone_options
        self.callback = callback

    # -- fit -------------------------------------------------------------------------------
    def fit(self, X: Sequence, y, X_val: Sequence | None = None, y_val=None) -> FineTuner:
        """Train on ``X, y``; validation is ``X_val, y_val`` or a split of ``X`` (never test data)."""
        start = time.perf_counter()
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} structures but y has {len(y)} targets")
        if (X_val is None) != (y_val is None):
            raise ValueError("pass both X_val and y_val, or neither")
        rng = np.random.default_rng(self.seed)
        if X_val is None:
            if len(y) < 2:
                raise ValueError("fine-tuning needs at least 2 structures (one for validation)")
            order = rng.permutation(len(y))
            n_val = min(len(y) - 1, max(1, int(round(self.val_fraction * len(y)))))
            val_idx, train_idx = order[:n_val], order[n_val:]
            X_train, y_train = [X[i] for i in train_idx], y[train_idx]
            X_val, y_val = [X[i] for i in val_idx], y[val_idx]
        else:
            X_train, y_train = list(X), y
            y_val = np.asarray(y_val, dtype=np.float64).reshape(-1)
        self.device_ = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        options = self.backbone_options or {}
        self.backbone_ = get_backbone(self.backbone, **options)
        self.view_ = trainable_view(self.backbone_, self.device_)
        self.model_ = self.view_.model
        with torch.random.fork_rng(devices=[]):  # seeded head init without touching global RNG
            torch.manual_seed(self.seed)
            self.head_ = FineTuneHead(self.view_.dim).to(self.device_)
        self.initial_state_ = {"backbone": _clone_state(self.model_, self.view_.trainable_names()),
                               "head": _clone_state(self.head_)}
        # Standardize targets with training statistics only.
        self.y_mean_ = float(y_train.mean())
        self.y_std_ = float(y_train.std()) or 1.0
        train = [self.view_.prepare_encode(a) for a in X_train]  # graphs built once
        val = [self.view_.prepare_encode(a) for a in X_val]
        t_train = torch.tensor((y_train - self.y_mean_) / self.y_std_, dtype=torch.float32, device=self.device_)
        t_val = torch.tensor((y_val - self.y_mean_) / self.y_std_, dtype=torch.float32, device=self.device_)

        backbone_params = [p for p in self.model_.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [{"params": backbone_params, "lr": self.lr_backbone},
             {"params": list(self.head_.parameters()), "lr": self.lr_head}],
            weight_decay=self.weight_decay)

        self.history_ = []
        self._record(0, float("nan"), val, t_val, time.perf_counter() - start)
        best = self._snapshot()
        self.best_epoch_, self.best_val_loss_ = 0, self.history_[0]["val_loss"]
        self.stopped_early_ = False
        for epoch in range(1, self.max_epochs + 1):
            epoch_start = time.perf_counter()
            train_loss = self._train_epoch(train, t_train, optimizer, rng)
            record = self._record(epoch, train_loss, val, t_val, time.perf_counter() - epoch_start)
            if record["val_loss"] < self.best_val_loss_:
                self.best_epoch_, self.best_val_loss_ = epoch, record["val_loss"]
                best = self._snapshot()
            elif epoch - self.best_epoch_ >= self.patience:
                self.stopped_early_ = True
                break
        self.n_epochs_ = len(self.history_) - 1
        self.model_.load_state_dict(best["backbone"])
        self.head_.load_state_dict(best["head"])
        self.fit_time_ = time.perf_counter() - start
        logger.info("fine-tuned %s: best epoch %d of %d, val loss %.4g, %.1f s", self.backbone_.name,
                    self.best_epoch_, self.n_epochs_, self.best_val_loss_, self.fit_time_)
        return self

    def _forward(self, encoded) -> torch.Tensor:
        return self.head_(self.view_.pooled(encoded)).reshape(-1)

    def _train_epoch(self, train, targets, optimizer, rng) -> float:
        order = rng.permutation(len(train))
        total = 0.0
        for begin in range(0, len(order), self.batch_size):
            index = order[begin: begin + self.batch_size]
            prediction = self._forward([train[i] for i in index])
            loss = torch.nn.functional.mse_loss(prediction, targets[torch.as_tensor(index, device=self.device_)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss) * len(index)
        return total / len(order)

    def _predict_standardized(self, encoded) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self._forward(encoded[b: b + self.batch_size])
                              for b in range(0, len(encoded), self.batch_size)])

    def _record(self, epoch, train_loss, val, t_val, seconds) -> dict:
        prediction = self._predict_standardized(val)
        record = {"epoch": epoch, "train_loss": train_loss,
                  "val_loss": float(torch.mean((prediction - t_val) ** 2)),
                  "val_mae": float(torch.mean(torch.abs(prediction - t_val))) * self.y_std_,
                  "seconds": seconds}
        self.history_.append(record)
        if self.callback is not None:
            self.callback(self, record)
        return record

    def _snapshot(self) -> dict:
        # deep copies: later optimizer steps must not reach the kept checkpoint
        return {"backbone": copy.deepcopy(self.model_.state_dict()), "head": copy.deepcopy(self.head_.state_dict())}

    # -- use -------------------------------------------------------------------------------
    def predict(self, X: Sequence) -> np.ndarray:
        """Predictions in target units, shape (n,)."""
        encoded = [self.view_.prepare_encode(a) for a in X]
        standardized = self._predict_standardized(encoded).cpu().numpy().astype(np.float64)
        return standardized * self.y_std_ + self.y_mean_

    def update_ratios(self) -> dict[str, np.ndarray]:
        """Per-neuron update ratios (see :func:`update_ratios`) of the trained backbone
        layers and of the head, from their state before training to the kept checkpoint."""
        return {"backbone": update_ratios(self.initial_state_["backbone"],
                                          _clone_state(self.model_, self.view_.trainable_names())),
                "head": update_ratios(self.initial_state_["head"], _clone_state(self.head_))}


def _clone_state(module: nn.Module, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """CPU copies of a module's parameters (all, or the named ones)."""
    wanted = None if names is None else set(names)
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters() if wanted is None or n in wanted}
