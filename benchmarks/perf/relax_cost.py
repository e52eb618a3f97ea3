"""CPU cost of HackNIP's own molecule geometry recipe (``--relax backbone``): ETKDG, then FIRE with the NIP.

    python -m benchmarks.perf.relax_cost --n 20 --out benchmarks/perf/relax_cost_bace_chgnet.json

Builds the first ``n`` RDKit-parsable BACE molecules one by one with one torch thread and no
molecule cache, and records CPU and wall seconds per molecule (the NIP model is built once,
before timing). The JSON is rewritten after every molecule, so a stopped run keeps what it measured.
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--backbone", default="chgnet")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch

    from hacknip_ase.calculator import EmbeddingCalculator
    from hacknip_ase.errors import InvalidStructureError
    from hacknip_ase.molecules import RECIPES, build_molecules, parse_smiles

    from ..data import locate
    from ..harness.results import git_info, hardware, write_json_atomic
    from ..tasks import get_task

    torch.set_num_threads(1)
    task = get_task("bace")
    smiles = []
    for smi in pd.read_csv(locate(task.files[0], args.data_dir))[task.smiles_column].astype(str):
        try:
            parse_smiles(smi)
        except InvalidStructureError:
            continue
        smiles.append(smi)
        if len(smiles) == args.n:
            break
    settings = RECIPES["backbone"]
    calculator = EmbeddingCalculator(args.backbone)
    rows = []
    record = {"recipe": "backbone", "settings": settings.__dict__, "backbone": args.backbone, "task": "bace",
              "torch_threads": torch.get_num_threads(), "git": git_info(), "hardware": hardware(), "molecules": rows}
    for k, smi in enumerate(smiles):
        cpu, wall = time.process_time(), time.perf_counter()
        built = build_molecules({f"bace-{k}": smi}, calculator, settings=settings, cache="")
        rows.append({"smiles": smi, "n_atoms": len(built.atoms[f"bace-{k}"]) if built.atoms else None,
                     "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                     "converged": not built.unconverged, "failed": [f.reason for f in built.failures]})
        cpu_s = [r["cpu_s"] for r in rows]
        record["summary"] = {"n": len(rows), "cpu_s_mean": float(np.mean(cpu_s)), "cpu_s_median": float(np.median(cpu_s)),
                             "cpu_s_max": float(np.max(cpu_s)), "wall_s_mean": float(np.mean([r["wall_s"] for r in rows])),
                             "n_converged": sum(r["converged"] for r in rows)}
        write_json_atomic(args.out, record)
        print(f"{k + 1}/{len(smiles)} {len(built.atoms.get(f'bace-{k}', []))} atoms: {cpu_s[-1]:.1f} CPU-s", flush=True)
    return record


if __name__ == "__main__":
    main()
