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

import os
import time

import numpy as np
import pytest
import torch

from benchmarks.harness.finetune import FineTuneHead
from hacknip_ase import get_backbone

N_STRUCTURES = 128
BATCH = 32
ROUNDS = 3


def jdft2d_structures(n: int):
    from benchmarks.data import resolve_data_dir
    from benchmarks.tasks import get_task

    task = get_task("matbench_jdft2d")
    root = resolve_data_dir(os.environ.get("HACKNIP_DATA_DIR"))
    if task.is_present(root):
        data = task.load(root)
        order = np.random.default_rng(0).permutation(len(data))[:n]
        return [data.inputs[i] for i in order], "matbench_jdft2d"
    from benchmarks.perf.conftest import make_crystals

    return make_crystals(n, seed=0), "generated crystals (no jdft2d data)"


@pytest.mark.parametrize("name", ["chgnet", "sevennet"])
def test_cpu_ms_per_structure_epoch(benchmark, name):
    torch.set_num_threads(1)
    structures, source = jdft2d_structures(N_STRUCTURES)
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
