"""Forward hooks that collect every depth's per-atom features in one pass."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class StopForward(Exception):
    """Raised by a hook to end a forward pass early (the truncated reference protocol)."""


@contextlib.contextmanager
def capture_outputs(
    modules: Sequence[nn.Module], *, stop_after: int | None = None
) -> Iterator[list[torch.Tensor | None]]:
    """Record each module's output tensor; optionally stop the pass after module ``stop_after``.

    ``modules[k]`` is the module whose output is the depth-k feature; a module that returns a
    tuple (ORB's interaction layers return ``(nodes, edges)``) contributes its first element.
    """
    captured: list[torch.Tensor | None] = [None] * len(modules)
    handles = []

    def make_hook(depth: int):
        def hook(_module, _inputs, output):
            if isinstance(output, tuple):
                output = output[0]
            captured[depth] = output.detach()
            if stop_after is not None and depth == stop_after:
                raise StopForward

        return hook

    for depth, module in enumerate(modules):
        handles.append(module.register_forward_hook(make_hook(depth)))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def run_until(modules: Sequence[nn.Module], depth: int, run) -> torch.Tensor:
    """Run ``run()`` until ``modules[depth]`` has produced its output, and return it."""
    with capture_outputs(modules, stop_after=depth) as captured:
        try:
            run()
        except StopForward:
            pass
    if captured[depth] is None:
        raise RuntimeError(f"depth {depth} was never reached in the forward pass")
    return captured[depth]
