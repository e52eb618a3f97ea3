"""Package versions recorded with every artifact (feature files, predictors, results)."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Python's version and each installed distribution's version (None if not installed)."""
    record: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            record[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            record[package] = None
    return record
