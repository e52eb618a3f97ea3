"""The NaN-aware column standardization shared by the heads and the applicability domain.

One definition, so a head's inputs and the domain distance it reports are scaled alike.
"""

from __future__ import annotations

import warnings

import numpy as np


def standardization(X) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales of ``X`` ignoring NaN (missing); an all-NaN column gets mean 0 and
    a constant one scale 1, so both pass as zeros."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, scale = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    return np.where(np.isfinite(mean), mean, 0.0), np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
