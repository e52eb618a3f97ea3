"""``hacknip-bench``: benchmark command line (``tasks`` lists the tasks and their data)."""

from __future__ import annotations

import argparse
import sys

from .data import DATA_ENV, resolve_data_dir


def _tasks(args) -> int:
    from tabulate import tabulate

    from .tasks import all_tasks

    root = resolve_data_dir(args.data_dir)
    rows = []
    for task in all_tasks():
        present = task.is_present(root)
        size = "-"
        if present:
            try:
                size = task.count(root)
            except Exception as exc:  # the table must still list the task; the reason is shown
                size, present = f"error: {type(exc).__name__}: {exc}"[:60], False
        rows.append([task.name, task.family, task.task_type, size,
                     task.literature_size if task.literature_size is not None else "?",
                     ", ".join(task.metrics), task.split_description,
                     "yes" if present else f"missing ({task.files[0].path})"])
    print(f"data folder: {root}")
    print(tabulate(rows, headers=["task", "family", "type", "n", "n (literature)", "metrics", "split", "data"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hacknip-bench", description=__doc__)
    parser.add_argument("--data-dir", default=None,
                        help=f"benchmark data folder (default: ${DATA_ENV}, else the user cache)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("tasks", help="list every task with its size, metrics, split and data")
    listing.set_defaults(run=_tasks)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
