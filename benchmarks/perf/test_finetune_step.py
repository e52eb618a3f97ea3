"""Fine-tuning cost: CPU-ms per training structure per epoch, today's path beside the optimized one.

On the same batches of matbench_jdft2d structures (from ``$HACKNIP_DATA_DIR``; generated rocksalt
and alloy cells when the data is absent), one torch thread: forward of the trainable view, the
recipe's head, MSE loss, backward and an AdamW step, for

* ``reference``: the NIP's own forward every step (CHGNet: coordinates marked requires_grad by
  its converter, bond/angle bases and embeddings recomputed; SevenNet: edge vectors and strain
  differentiated for its force/stress outputs);
* ``optimized``: the adapters' default views (frozen inputs computed once per structure, nothing
  differentiated that no loss reads).

The two modes alternate batch by batch so that load from other processes hits them alike.
Run: ``pytest benchmarks/perf/test_finetune_step.py --benchmark-only -s``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from benchmarks.harness.finetune import FineTuneHead
from benchmarks.perf.conftest import task_sample
from hacknip_ase import get_backbone

N_STRUCTURES = 128
BATCH = 32
ROUNDS = 3


@pytest.mark.parametrize("name", ["chgnet", "sevennet"])
def test_cpu_ms_per_structure_epoch(benchmark, name):
    torch.set_num_threads(1)
    structures, source, _ = task_sample("matbench_jdft2d", N_STRUCTURES)
    backbone = get_backbone(name)
    modes = {}
    for mode, optimized in (("reference", False), ("optimized", True)):
        view = backbone.trainable_view("cpu", optimized=optimized)
        torch.manual_seed(0)
        head = FineTuneHead(view.dim)
        params = [p for p in view.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW([{"params": params, "lr": 1e-5}, {"params": list(head.parameters()), "lr": 1e-3}],
                                      weight_decay=1e-4)
        modes[mode] = (view, head, optimizer, [view.prepare_encode(a) for a in structures])
    targets = torch.tensor(np.random.default_rng(1).normal(size=len(structures)), dtype=torch.float32)
    cpu = {mode: 0.0 for mode in modes}

    def epoch():
        for begin in range(0, len(structures), BATCH):
            for mode, (view, head, optimizer, encoded) in modes.items():
                start = time.process_time()
                prediction = head(view.pooled(encoded[begin: begin + BATCH])).reshape(-1)
                loss = torch.nn.functional.mse_loss(prediction, targets[begin: begin + BATCH])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                cpu[mode] += time.process_time() - start

    benchmark.pedantic(epoch, rounds=ROUNDS, warmup_rounds=1)
    per_structure = {mode: 1000 * cpu[mode] / ((ROUNDS + 1) * len(structures)) for mode in modes}
    benchmark.extra_info.update(source=source, n_structures=len(structures), batch=BATCH,
                                cpu_ms_per_structure_epoch=per_structure,
                                speedup=per_structure["reference"] / per_structure["optimized"])
    print(f"\n{name} on {len(structures)} {source}: CPU-ms per training structure per epoch "
          f"reference {per_structure['reference']:.2f}, optimized {per_structure['optimized']:.2f} "
          f"({per_structure['reference'] / per_structure['optimized']:.2f}x)")
