"""``hacknip`` command line: ``hacknip quickstart`` (offline demo), ``hacknip featurize`` (datasets)."""

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


def _featurize(args: argparse.Namespace) -> int:
    from .errors import HackNIPError
    from .featurize import Engine, FeatureWriter
    from .readers import read_structures

    start = time.perf_counter()
    options = {"expand_supercell": args.expand_supercell}
    if args.model:
        options["model"] = args.model
    if args.weights:
        options["weights"] = args.weights
    try:
        source = read_structures(args.input, format=args.format)
        engine = Engine(args.backbone, batch_size=args.batch_size, device=args.device,
                        cache_dir=False if args.no_cache else args.cache_dir, on_error=args.on_error, **options)
        with FeatureWriter(args.out, engine.shape) as writer:
            for ids, embeddings in engine.run(source, progress=not args.quiet):
                writer.write(ids, embeddings)
            writer.metadata = engine.metadata(source)
    except (HackNIPError, OSError) as exc:
        print(f"hacknip featurize: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        # reused: cache hits and repeats of a structure within the run (computed once)
        print(f"wrote {len(writer.ids)} x {engine.shape[0]} depths x {engine.shape[1]} to {writer.path} "
              f"({engine.computed} computed, {len(writer.ids) - engine.computed} reused, "
              f"{len(engine.skipped)} skipped) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
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

    feat = commands.add_parser(
        "featurize", help="all-depth embeddings of a dataset to a portable .npz (cached, resumable)",
        description="Mean-pooled embeddings after every depth for every structure in INPUT, written to "
                    "OUT (.npz with embeddings (n, depths, dim), ids and JSON metadata; see "
                    "hacknip_ase.featurize). Finished structures are cached: a re-run, or a run after "
                    "an interruption, only computes what is missing.")
    feat.add_argument("input", help="folder of CIF files, extxyz file, ase .db, or Matbench .json.gz")
    feat.add_argument("--out", "-o", required=True, help="output .npz file")
    feat.add_argument("--backbone", default="chgnet")
    feat.add_argument("--model", help="model variant of the backbone (adapter default if not given)")
    feat.add_argument("--weights", help="local weights file")
    feat.add_argument("--device", default="cpu")
    feat.add_argument("--batch-size", type=int, default=32, help="structures per forward pass (default 32)")
    feat.add_argument("--format", choices=["cif", "extxyz", "db", "matbench"], help="input format (default: from the path)")
    feat.add_argument("--expand-supercell", action="store_true", help="repeat cells shorter than the cutoff")
    feat.add_argument("--cache-dir", help="embedding cache root (default: $HACKNIP_CACHE_DIR/features)")
    feat.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    feat.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                      help="stop at a structure the backbone rejects, or skip it (listed in the metadata)")
    feat.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    feat.set_defaults(func=_featurize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
