"""What every ``hacknip-bench`` command builds from its options: the recorded command line and
the run configuration."""

from __future__ import annotations

import shlex
import sys


def command_line() -> str:
    """This process's ``hacknip-bench`` command line, as recorded in result files."""
    return "hacknip-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_config(args, **fields):
    """The :class:`~benchmarks.harness.config.RunConfig` of a command's options."""
    from ..harness.config import RunConfig

    return RunConfig(data_dir=args.data_dir, results_dir=args.results_dir, cache_dir=getattr(args, "cache_dir", None),
                     device=args.device, resume=not args.no_resume, progress=not args.quiet, command=command_line(),
                     **fields)
