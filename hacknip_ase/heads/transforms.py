"""Target transforms applied before fitting a regressor and inverted on predict.

``log10`` (or ``ln``) suits positive, log-normally spread targets (moduli, critical
temperatures, refractive indices); ``log1p`` (ln(1 + y)) non-negative ones that reach zero
(exfoliation energies, band gaps); ``neglog1m`` (-log10(1 - x)) stretches targets in [0, 1)
that crowd towards 1 (e.g. efficiencies, fractions). :func:`candidates` lists the transforms a
set of training targets allows, for a choice by inner cross-validation.
"""

from __future__ import annotations

import numpy as np


def _check_positive(y):
    if np.any(~(y > 0)):
        raise ValueError("the log10 and ln transforms need targets > 0")
    return np.log10(y)


def _check_non_negative(y):
    if np.any(~(y >= 0)):
        raise ValueError("the log1p transform needs targets >= 0")
    return np.log1p(y)


def _check_below_one(y):
    if np.any(~(y < 1)):
        raise ValueError("the -log10(1 - x) transform needs targets < 1")
    return -np.log10(1.0 - y)


#: name -> (forward, inverse)
TRANSFORMS = {
    "log10": (_check_positive, lambda z: np.power(10.0, z)),
    "ln": (lambda y: _check_positive(y) * np.log(10.0), np.exp),  # ln y = log10 y * ln 10
    "log1p": (_check_non_negative, np.expm1),
    "neglog1m": (_check_below_one, lambda z: 1.0 - np.power(10.0, -z)),
}
ALIASES = {"-log10(1-x)": "neglog1m"}


def canonical(name: str | None) -> str | None:
    """The stored name of a transform (None for no transform)."""
    if name is None or name == "none":
        return None
    name = ALIASES.get(name, name)
    if name not in TRANSFORMS:
        raise ValueError(f"unknown target transform {name!r}; valid: None, {', '.join(TRANSFORMS)}, "
                         f"{', '.join(ALIASES)}")
    return name


def forward(name: str | None, y) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    name = canonical(name)
    return y if name is None else TRANSFORMS[name][0](y)


def inverse(name: str | None, z) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    name = canonical(name)
    return z if name is None else TRANSFORMS[name][1](z)


#: transforms tried by ``transform="auto"``, in order (the first of equal scores wins: no transform)
AUTO_CANDIDATES = (None, "log10", "log1p")


def candidates(y) -> list[str | None]:
    """The :data:`AUTO_CANDIDATES` that training targets ``y`` allow (log10: all > 0; log1p: all >= 0)."""
    y = np.asarray(y, dtype=float)
    allowed = {None: True, "log10": bool(np.all(y > 0)), "log1p": bool(np.all(y >= 0))}
    return [name for name in AUTO_CANDIDATES if allowed[name]]
