"""Fine-tuning baseline: frozen parts stay frozen, head init, best-checkpoint restore, and a
tiny real CHGNet fine-tune that lowers the validation loss. Data are made here: rattled
4-atom fcc Cu/Ni cells, target = ASE EMT energy per atom (seeds fixed)."""

import math

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from benchmarks.harness.finetune import FineTuneHead, FineTuner, update_ratios
from hacknip_ase.backbones import get_backbone

SEED = 0


def cu_ni_cells(n, seed=SEED):
    """n rattled 4-atom fcc Cu/Ni cells and their EMT energy per atom (eV/atom)."""
    rng = np.random.default_rng(seed)
    structures, energies = [], []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.05 * rng.standard_normal(), cubic=True)
        atoms.symbols[rng.random(len(atoms)) < rng.random()] = "Ni"
        atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy() / len(atoms))
        atoms.calc = None
        structures.append(atoms)
    return structures, np.array(energies)


@pytest.fixture(scope="module")
def chgnet():
    return get_backbone("chgnet")


@pytest.fixture(scope="module")
def fitted(chgnet):
    """Three epochs of real CHGNet fine-tuning on 15 cells (12 train / 3 validation)."""
    before = {n: p.detach().clone() for n, p in chgnet.model.named_parameters()}
    X, y = cu_ni_cells(15)
    tuner = FineTuner(chgnet, max_epochs=3, patience=3, batch_size=6, val_fraction=0.2,
                      lr_head=3e-3, seed=SEED, device="cpu").fit(X, y)
    return tuner, before, X


def test_head_initialization():
    head = FineTuneHead(64)
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 128), (128, 128), (128, 1)]
    assert [type(m) for m in head if not isinstance(m, torch.nn.Linear)] == [torch.nn.SiLU] * 2
    for layer in linears:
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))  # xavier_uniform_
        weight = layer.weight.detach().abs()
        assert torch.all(layer.bias == 0)
        assert weight.max() <= bound
        # torch's default init is bounded by 1/sqrt(fan_in) (< the Xavier bound for these
        # shapes); a mean near bound/2 tells Xavier-uniform apart from it.
        assert abs(weight.mean().item() - bound / 2) < 0.1 * bound
        assert weight.max() > 1 / math.sqrt(layer.in_features)


def test_update_ratios_per_neuron():
    before = {"w": torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]]), "b": torch.ones(3)}
    after = {"w": torch.tensor([[3.0, 4.5], [1.0, 2.0], [5.0, 5.0]]), "b": torch.zeros(3)}
    # rows: ||(0, .5)||/5 = 0.1, ||(0, 2)||/1 = 2; the all-zero row and the bias are skipped
    np.testing.assert_allclose(update_ratios(before, after), [0.1, 2.0])
    np.testing.assert_allclose(update_ratios({"w": before["w"].T}, {"w": after["w"].T}, out_axis={"w": 1}), [0.1, 2.0])


def test_pooled_features_match_the_frozen_embedding(chgnet):
    """The differentiable path gives exactly the adapter's last-depth embedding."""
    X, _ = cu_ni_cells(3, seed=1)
    view = chgnet.trainable_view()
    pooled = view.pooled_features(X)
    assert pooled.requires_grad
    np.testing.assert_allclose(pooled.detach().numpy(), chgnet.embed(X)[:, -1, :], rtol=1e-5, atol=1e-5)
    frozen = set(view.frozen_names())
    assert {"atom_embedding.embedding.weight", "bond_embedding.weight", "mlp.layers.0.weight"} <= frozen
    assert not any(name.startswith(("atom_conv_layers", "bond_conv_layers", "angle_layers")) for name in frozen)


def test_tiny_finetune_lowers_validation_loss(fitted):
    tuner, _, X = fitted
    losses = [record["val_loss"] for record in tuner.history_]
    assert tuner.best_epoch_ > 0 and tuner.best_val_loss_ < losses[0]
    assert len(tuner.history_) == tuner.n_epochs_ + 1 and tuner.fit_time_ > 0
    prediction = tuner.predict(X[:2])
    assert prediction.shape == (2,) and np.all(np.isfinite(prediction))


def test_frozen_parameters_unchanged_and_trainable_changed(fitted, chgnet):
    tuner, before, _ = fitted
    after = dict(tuner.model_.named_parameters())
    frozen, trainable = tuner.view_.frozen_names(), tuner.view_.trainable_names()
    assert frozen and trainable
    for name in frozen:
        assert torch.equal(after[name].detach(), before[name]), name
    changed = [name for name in trainable if not torch.equal(after[name].detach(), before[name])]
    # the last angle layer's output feeds nothing before the last atom conv, so it gets no gradient
    assert {n for n in trainable if n not in changed} <= {n for n in trainable if n.startswith("angle_layers.2.")}
    assert any(n.startswith("atom_conv_layers.3.") for n in changed)
    # the shared pretrained backbone is untouched
    for name, parameter in chgnet.model.named_parameters():
        assert torch.equal(parameter, before[name]) and not parameter.requires_grad
    ratios = tuner.update_ratios()
    assert ratios["backbone"].size > 0 and np.all(ratios["backbone"] >= 0) and ratios["head"].size == 128 + 128 + 1


def test_early_stopping_restores_best_checkpoint(chgnet):
    """A large head learning rate (one step per epoch) on validation targets shrunk towards
    the mean makes the validation loss non-monotonic (seeded: minimum at epoch 2 of 4), so
    patience 2 stops the run after an interior minimum; the weights must be that epoch's."""
    X, y = cu_ni_cells(6, seed=2)
    snapshots = {}

    def snapshot(tuner, record):
        snapshots[record["epoch"]] = {n: p.detach().clone() for n, p in
                                      [*tuner.model_.named_parameters(), *tuner.head_.named_parameters()]}

    shrunk = y.mean() + 0.5 * (y - y.mean())
    tuner = FineTuner(chgnet, max_epochs=12, patience=2, batch_size=6, lr_head=1e-2, seed=SEED,
                      device="cpu", callback=snapshot).fit(X, y, X_val=X, y_val=shrunk)
    losses = [record["val_loss"] for record in tuner.history_]
    assert tuner.stopped_early_ and tuner.n_epochs_ < 12
    assert 0 < tuner.best_epoch_ == int(np.argmin(losses)) < tuner.n_epochs_
    restored = [*tuner.model_.named_parameters(), *tuner.head_.named_parameters()]
    last = snapshots[tuner.n_epochs_]
    assert all(torch.equal(p.detach(), snapshots[tuner.best_epoch_][n]) for n, p in restored)
    assert not all(torch.equal(p.detach(), last[n]) for n, p in restored)


def test_optimized_chgnet_view_equals_chgnet_forward_features_and_gradients(chgnet):
    """Frozen inputs computed once and undifferentiated coordinates change nothing the loss sees."""
    X, _ = cu_ni_cells(4, seed=3)
    X.append(bulk("Si", "diamond", a=5.43))  # angles and several elements
    results = []
    for optimized in (False, True):
        view = chgnet.trainable_view(optimized=optimized)
        encoded = [view.prepare_encode(a) for a in X]
        pooled = view.pooled(encoded)
        (pooled ** 2).sum().backward()
        grads = {n: p.grad.clone() for n, p in view.model.named_parameters() if p.grad is not None}
        results.append((pooled.detach(), grads))
    (reference, ref_grads), (fast, fast_grads) = results
    torch.testing.assert_close(fast, reference, rtol=1e-6, atol=1e-6)
    assert sorted(fast_grads) == sorted(ref_grads) and ref_grads
    for name in ref_grads:
        torch.testing.assert_close(fast_grads[name], ref_grads[name], rtol=1e-5, atol=1e-7)


class Interrupt(Exception):
    pass


def test_interrupted_finetune_resumes_at_its_last_epoch(chgnet, tmp_path):
    """A run stopped during epoch 3 (as a kill would) resumes after epoch 2 and ends where an
    uninterrupted run ends."""
    X, y = cu_ni_cells(8, seed=4)
    options = dict(max_epochs=5, patience=5, batch_size=4, val_fraction=0.25, lr_head=3e-3, seed=SEED, device="cpu")
    whole = FineTuner(chgnet, **options).fit(X, y)

    def stop_at_three(tuner, record):
        if record["epoch"] == 3:
            raise Interrupt

    checkpoint = tmp_path / "fold.pt"
    with pytest.raises(Interrupt):
        FineTuner(chgnet, callback=stop_at_three, checkpoint=checkpoint, **options).fit(X, y)
    resumed = FineTuner(chgnet, checkpoint=checkpoint, **options).fit(X, y)
    assert resumed.resumed_from_ == 2 and whole.resumed_from_ is None
    assert [h["epoch"] for h in resumed.history_] == list(range(6))
    np.testing.assert_allclose([h["val_loss"] for h in resumed.history_], [h["val_loss"] for h in whole.history_],
                               rtol=1e-5)
    np.testing.assert_allclose(resumed.predict(X[:3]), whole.predict(X[:3]), rtol=1e-5)
    assert all(h["cpu_seconds"] > 0 for h in resumed.history_)
    other = FineTuner(chgnet, checkpoint=checkpoint, **{**options, "lr_head": 1e-3}).fit(X, y)
    assert other.resumed_from_ is None  # a checkpoint of other settings is not resumed
