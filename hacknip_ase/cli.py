"""``hacknip`` command line: ``hacknip quickstart`` (offline demo)."""

from __future__ import annotations

import argparse
import sys
import time


def _quickstart(args: argparse.Namespace) -> int:
    from ase.build import bulk, molecule

    from . import EmbeddingCalculator

    structures = {
        "Si (diamond)": bulk("Si"),
        "NaCl (rocksalt)": bulk("NaCl", "rocksalt", a=5.64),
        "Cu3Au (L1_2)": _cu3au(),
        "H2O (molecule)": molecule("H2O"),
    }
    calc = EmbeddingCalculator(backbone=args.backbone, device=args.device)
    info = calc.backbone.info
    print(f"backbone {info.name} {info.model}: {info.n_depths} depths x {info.dim} dims, sha256 {info.weights_sha256[:12]}")
    for label, atoms in structures.items():
        atoms.calc = calc
        start = time.perf_counter()
        props = atoms.get_properties(["energy", "embeddings"])
        elapsed = time.perf_counter() - start
        norms = " ".join(f"{x:6.2f}" for x in (props["embeddings"] ** 2).sum(axis=1) ** 0.5)
        print(f"{label:18s} E = {props['energy']:10.4f} eV  |embedding| per depth: {norms}  ({elapsed * 1000:.0f} ms)")
    return 0


def _cu3au():
    from ase import Atoms

    return Atoms("AuCu3", scaled_positions=[[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
                 cell=[3.75] * 3, pbc=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hacknip", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    quick = commands.add_parser("quickstart", help="embeddings and energies of a few structures (offline)")
    quick.add_argument("--backbone", default="chgnet")
    quick.add_argument("--device", default="cpu")
    quick.set_defaults(func=_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
