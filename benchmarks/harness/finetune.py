"""End-to-end fine-tuning of a NIP backbone with an MLP head: the baseline that frozen
embeddings + a shallow head are compared against (HackNIP's data-efficiency study).

Recipe (the paper's): a head ``dim -> 128 -> 128 -> 1`` with SiLU, Xavier-uniform weights and
zero biases, on the mean-pooled node features of the backbone's last message-passing layer.
The first embedding / edge featurizer and the final decoder stay frozen, the message-passing
layers train. AdamW, learning rate 1e-5 for the backbone and 1e-3 for the head, weight decay
1e-4, up to 200 epochs with early stopping on a validation split carved from the training
data; the best checkpoint is kept and restored.

The per-backbone part is the adapter's *trainable view* (``backbone.trainable_view(device)``,
:mod:`hacknip_ase.backbones.trainable`): a deep copy of the network, which of its parameters
train, and a differentiable pooled forward of the last layer. This module holds no per-NIP code.

Cost: every epoch's wall and CPU time (``time.process_time``) is recorded. With ``checkpoint``,
the full training state (network, head, optimizer, RNG, history, best snapshot) is written
atomically after every epoch, and a ``fit`` that finds it resumes after the last finished epoch:
a killed run loses at most the epoch in flight.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from torch import nn

from hacknip_ase.backbones import get_backbone
from hacknip_ase.files import atomic_output
from hacknip_ase.errors import HackNIPError

logger = logging.getLogger(__name__)

#: Hidden width of the fine-tuning head (paper: dim -> 128 -> 128 -> 1).
HEAD_HIDDEN = 128


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
    checkpoint : path, optional
        File for the per-epoch training state; an existing one (of the same data, seed and
        hyper-parameters) is resumed. Loaded with ``weights_only=True``.

    Attributes
    ----------
    history_ : list of dict
        Per epoch: ``epoch`` (0 = before training), ``train_loss``, ``val_loss`` (MSE of
        standardized targets), ``val_mae`` (target units), ``seconds`` and ``cpu_seconds``
        (wall and CPU time of the epoch; for epoch 0 the setup: backbone copy, graph building,
        first evaluation).
    best_epoch_, best_val_loss_, n_epochs_, stopped_early_, fit_time_ : the early-stopping
        outcome and the wall time of ``fit`` in seconds (graph building included).
    """

    def __init__(self, backbone="chgnet", *, lr_backbone: float = 1e-5, lr_head: float = 1e-3,
                 weight_decay: float = 1e-4, max_epochs: int = 200, patience: int = 20,
                 batch_size: int = 32, val_fraction: float = 0.1, seed: int = 0,
                 device: str | None = None, backbone_options: dict | None = None,
                 callback: Callable | None = None, checkpoint: str | os.PathLike | None = None) -> None:
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
        self.checkpoint = checkpoint

    # -- fit -------------------------------------------------------------------------------
    def fit(self, X: Sequence, y, X_val: Sequence | None = None, y_val=None) -> FineTuner:
        """Train on ``X, y``; validation is ``X_val, y_val`` or a split of ``X`` (never test data)."""
        start, cpu_start = time.perf_counter(), time.process_time()
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
        if not hasattr(self.backbone_, "trainable_view"):
            raise HackNIPError(f"the {self.backbone_.name} adapter has no trainable view")
        self.view_ = self.backbone_.trainable_view(self.device_)
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
        self.resumed_from_ = None
        fingerprint = self._fingerprint(y_train, y_val)
        state = self._load_checkpoint(fingerprint)
        if state is None:
            self._record(0, float("nan"), val, t_val, time.perf_counter() - start, time.process_time() - cpu_start)
            best = self._snapshot()
            self.best_epoch_, self.best_val_loss_ = 0, self.history_[0]["val_loss"]
            self.stopped_early_ = False
            self._save_checkpoint(fingerprint, optimizer, rng, best)
        else:
            best = self._restore(state, optimizer, rng)
        for epoch in range(len(self.history_), self.max_epochs + 1):
            if self.stopped_early_:
                break
            epoch_start, epoch_cpu = time.perf_counter(), time.process_time()
            train_loss = self._train_epoch(train, t_train, optimizer, rng)
            record = self._record(epoch, train_loss, val, t_val, time.perf_counter() - epoch_start,
                                  time.process_time() - epoch_cpu)
            if record["val_loss"] < self.best_val_loss_:
                self.best_epoch_, self.best_val_loss_ = epoch, record["val_loss"]
                best = self._snapshot()
            elif epoch - self.best_epoch_ >= self.patience:
                self.stopped_early_ = True
            self._save_checkpoint(fingerprint, optimizer, rng, best)
        self.n_epochs_ = len(self.history_) - 1
        self.model_.load_state_dict(best["backbone"])
        self.head_.load_state_dict(best["head"])
        self.fit_time_ = time.perf_counter() - start
        self.fit_cpu_time_ = time.process_time() - cpu_start
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

    def _record(self, epoch, train_loss, val, t_val, seconds, cpu_seconds) -> dict:
        prediction = self._predict_standardized(val)
        record = {"epoch": epoch, "train_loss": train_loss,
                  "val_loss": float(torch.mean((prediction - t_val) ** 2)),
                  "val_mae": float(torch.mean(torch.abs(prediction - t_val))) * self.y_std_,
                  "seconds": seconds, "cpu_seconds": cpu_seconds}
        self.history_.append(record)
        if self.callback is not None:
            self.callback(self, record)
        return record

    def _snapshot(self) -> dict:
        # deep copies: later optimizer steps must not reach the kept checkpoint
        return {"backbone": copy.deepcopy(self.model_.state_dict()), "head": copy.deepcopy(self.head_.state_dict())}

    # -- checkpoints ---------------------------------------------------------------------
    def _fingerprint(self, y_train, y_val) -> dict:
        """What a checkpoint must match to be resumed: the data, seed and hyper-parameters."""
        import hashlib

        digest = hashlib.sha256(np.ascontiguousarray(y_train).tobytes() + np.ascontiguousarray(y_val).tobytes())
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if k not in ("callback", "checkpoint", "device", "backbone")}
        return {"targets_sha256": digest.hexdigest(), "params": repr(sorted(params.items())),
                "backbone": repr(self.backbone_.info.as_dict())}

    def _load_checkpoint(self, fingerprint: dict) -> dict | None:
        if self.checkpoint is None or not Path(self.checkpoint).is_file():
            return None
        try:
            state = torch.load(self.checkpoint, map_location=self.device_, weights_only=True)
        except Exception as exc:  # a damaged file: start again rather than trust it
            logger.warning("cannot read fine-tuning checkpoint %s (%s): starting again", self.checkpoint, exc)
            return None
        if state.get("fingerprint") != fingerprint:
            logger.warning("fine-tuning checkpoint %s is of other data or settings: starting again", self.checkpoint)
            return None
        return state

    def _save_checkpoint(self, fingerprint, optimizer, rng, best) -> None:
        if self.checkpoint is None:
            return
        state = {"fingerprint": fingerprint, "model": self.model_.state_dict(), "head": self.head_.state_dict(),
                 "optimizer": optimizer.state_dict(), "rng": _rng_state(rng), "history": self.history_,
                 "best": best, "best_epoch": self.best_epoch_, "best_val_loss": self.best_val_loss_,
                 "stopped_early": self.stopped_early_}
        with atomic_output(self.checkpoint) as tmp:
            torch.save(state, tmp)

    def _restore(self, state, optimizer, rng) -> dict:
        self.model_.load_state_dict(state["model"])
        self.head_.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = _rng_from_state(state["rng"])
        self.history_ = list(state["history"])
        self.best_epoch_, self.best_val_loss_ = state["best_epoch"], state["best_val_loss"]
        self.stopped_early_ = state["stopped_early"]
        self.resumed_from_ = len(self.history_) - 1
        logger.info("resumed fine-tuning from %s after epoch %d", self.checkpoint, self.resumed_from_)
        return state["best"]

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


def _rng_state(rng: np.random.Generator) -> dict:
    """numpy's PCG64 state with its 128-bit integers as strings (weights_only files hold no big ints)."""
    state = copy.deepcopy(rng.bit_generator.state)
    state["state"] = {k: str(v) for k, v in state["state"].items()}
    return state


def _rng_from_state(state: Mapping) -> dict:
    state = copy.deepcopy(dict(state))
    state["state"] = {k: int(v) for k, v in state["state"].items()}
    return state


def _clone_state(module: nn.Module, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """CPU copies of a module's parameters (all, or the named ones)."""
    wanted = None if names is None else set(names)
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters() if wanted is None or n in wanted}
