"""Invariant channels of equivariant (e3nn) node features, shared by SevenNet and MACE."""

from __future__ import annotations

import torch

from ..errors import CorruptWeightsError


def scalar_index(irreps) -> torch.Tensor:
    """Positions of the invariant ``0e`` channels in a flat e3nn feature vector."""
    parts = [torch.arange(s.start, s.stop) for (_, ir), s in zip(irreps, irreps.slices(), strict=True)
             if ir.l == 0 and ir.p == 1]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def uniform_width(indices, *, model: str) -> int:
    """The one 0e width shared by every depth (BackboneInfo has a single ``dim``)."""
    widths = [len(index) for index in indices]
    if len(set(widths)) != 1 or widths[0] == 0:
        raise CorruptWeightsError(f"{model}: scalar (0e) widths differ between depths ({widths}); one width is needed")
    return widths[0]
