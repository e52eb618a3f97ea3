"""``hacknip`` command line: ``featurize`` (datasets to embeddings), ``fit`` and ``predict`` (your own data).

The main job of the benchmarks is ``hacknip-bench quickstart``.
"""

from __future__ import annotations

import argparse
import sys
import time

from .choices import STRUCTURE_FORMATS
from .tabular import add_data_commands


_RAY_FLAGS = {"address": "--address", "actors": "--actors", "gpus_per_actor": "--gpus-per-actor",
              "shard_size": "--shard-size"}


def _featurize(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .errors import InvalidOptionError
    from .featurize import write_features
    from .readers import read_structures

    start = time.perf_counter()
    options = {"expand_supercell": args.expand_supercell}
    if args.model:
        options["model"] = args.model
    if args.weights:
        options["weights"] = args.weights
    ray_options = {key: getattr(args, key) for key in _RAY_FLAGS if getattr(args, key) is not None}
    if args.engine == "local" and ray_options:
        raise InvalidOptionError(f"{', '.join(_RAY_FLAGS[k] for k in ray_options)} only apply with --engine ray")
    source = read_structures(args.input, format=args.format)
    if args.engine == "ray":
        return _featurize_ray(args, source, options, ray_options, start)
    engine = Engine(args.backbone, batch_size=args.batch_size, device=args.device, cache=not args.no_cache,
                    cache_dir=args.cache_dir, on_error=args.on_error, **options)
    writer = write_features(engine, source, args.out, progress=not args.quiet)
    if not args.quiet:
        # reused: cache hits and repeats of a structure within the run (computed once)
        print(f"wrote {len(writer.ids)} x {engine.shape[0]} depths x {engine.shape[1]} to {writer.path} "
              f"({engine.computed} computed, {len(writer.ids) - engine.computed} reused, "
              f"{len(engine.skipped)} skipped{'' if engine.loaded else '; model not loaded'}) "
              f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _featurize_ray(args, source, options: dict, ray_options: dict, start: float) -> int:
    from .distributed import RayEngine

    engine = RayEngine(args.backbone, batch_size=args.batch_size, device=args.device, cache=not args.no_cache,
                       cache_dir=args.cache_dir, on_error=args.on_error, **ray_options, **options)
    path = engine.run_to_file(source, args.out, progress=not args.quiet)
    if not args.quiet:
        n = engine.written
        print(f"wrote {n} x {engine.shape[0]} depths x {engine.shape[1]} to {path} "
              f"({engine.computed} computed, {n - engine.computed} reused, {len(engine.skipped)} skipped; "
              f"{engine.shards_run} shards run on {engine.n_actors} Ray actors, {engine.shards_done} found finished"
              f"{'' if engine.loaded else '; model not loaded'}) in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (exit code 2, as argparse's own)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="hacknip", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    feat = commands.add_parser(
        "featurize", help="all-depth embeddings of a dataset to a portable .npz (cached, resumable)",
        description="Mean-pooled embeddings after every depth for every structure in INPUT, written to "
                    "OUT (.npz with embeddings (n, depths, dim), ids and JSON metadata; see "
                    "hacknip_ase.featureset). Finished structures are cached: a re-run, or a run after "
                    "an interruption, only computes what is missing.")
    feat.add_argument("input", help="folder of CIF files, extxyz file, ase .db, Matbench .json.gz, or a Parquet/CSV "
                                    "table of structures (columns id, structure)")
    feat.add_argument("--out", "-o", required=True, help="output .npz file")
    feat.add_argument("--backbone", default="chgnet")
    feat.add_argument("--model", help="model variant of the backbone (adapter default if not given)")
    feat.add_argument("--weights", help="local weights file")
    feat.add_argument("--device", default="cpu")
    feat.add_argument("--batch-size", type=int, default=32, help="structures per forward pass (default 32)")
    feat.add_argument("--format", choices=list(STRUCTURE_FORMATS), help="input format (default: from the path)")
    feat.add_argument("--expand-supercell", action="store_true", help="repeat cells shorter than the cutoff")
    feat.add_argument("--cache-dir", help="embedding cache root (default: $HACKNIP_CACHE_DIR/features)")
    feat.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    feat.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                      help="stop at a structure the backbone rejects, or skip it (listed in the metadata)")
    feat.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    scale = feat.add_argument_group("scale out with Ray (pip install hacknip-ase[ray])")
    scale.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local: this process (default); ray: a pool of Ray actors, one loaded model each, "
                            "resumable by shard (OUT.shards/)")
    scale.add_argument("--address", help="Ray cluster to join (auto, HOST:6379, ray://HOST:10001); "
                                         "default: start a local Ray")
    scale.add_argument("--actors", type=int, help="actors in the pool (default: one per CPU, or per --gpus-per-actor GPUs)")
    scale.add_argument("--gpus-per-actor", type=float, help="GPUs Ray reserves per actor (fractions share a GPU; "
                                                           "the model runs on cuda)")
    scale.add_argument("--shard-size", type=int, help="structures per shard, a multiple of --batch-size (default 1024)")
    feat.set_defaults(func=_featurize)
    add_data_commands(commands)  # hacknip fit, hacknip predict
    return parser


def run_command(prog: str, func, args) -> int:
    """Run a command: bad input (a HackNIPError) or an unreadable file is one line on stderr and exit 2."""
    from .errors import HackNIPError

    try:
        return func(args)
    except (HackNIPError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (finished work is cached; run again to resume)", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(f"hacknip {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
