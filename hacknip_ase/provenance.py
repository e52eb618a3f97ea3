"""Package versions recorded with every artifact (feature files, predictors, results): the one list of each.

``feature_versions`` goes into every features file (and the benchmarks' result records),
``predictor_versions`` into every saved predictor, ``run_versions`` into every benchmark run.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable

#: The NIP's own distribution, by backbone registry name.
NIP_PACKAGES = {"chgnet": "chgnet", "sevennet": "sevenn", "orb": "orb-models", "mace": "mace-torch"}
#: What changes a features file's numbers, beside the NIP's own package.
FEATURE_PACKAGES = ("hacknip-ase", "numpy", "torch", "ase", "pymatgen")
#: What a saved predictor's heads depend on.
PREDICTOR_PACKAGES = ("hacknip-ase", "numpy", "scikit-learn", "xgboost-cpu", "tensorflow-cpu", "modnet", "ase", "torch",
                      "optuna")
#: Everything a benchmark run may use.
RUN_PACKAGES = ("hacknip-ase", "numpy", "scikit-learn", "xgboost-cpu", "xgboost", "torch", "ase", "pymatgen", "chgnet",
                "sevenn", "modnet", "tensorflow-cpu", "matbench")


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Python's version and each installed distribution's version (None if not installed)."""
    record: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            record[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            record[package] = None
    return record


def feature_versions(backbone_name: str | None = None) -> dict:
    """Versions behind a features file of the backbone ``backbone_name`` (its NIP package included)."""
    packages = list(FEATURE_PACKAGES)
    if backbone_name in NIP_PACKAGES:
        packages.append(NIP_PACKAGES[backbone_name])
    return package_versions(packages)


def predictor_versions() -> dict:
    return package_versions(PREDICTOR_PACKAGES)


def run_versions() -> dict:
    return package_versions(RUN_PACKAGES)
