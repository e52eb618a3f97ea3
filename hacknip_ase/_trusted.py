"""Scoped trust for checkpoints that ship inside installed packages.

e3nn 0.4.4 loads its packaged ``constants.pt`` with ``torch.load`` at import time, which torch
>= 2.6 refuses under ``weights_only=True``; ``import mace`` works around that by setting
the TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD switch for the whole process. That would make every later
``torch.load`` of an untrusted file unsafe, so we set the switch only around those imports and
restore the environment afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from types import ModuleType

_SWITCH = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def trusted_package_loads() -> Iterator[None]:
    """Allow full unpickling only inside this block, for files shipped in installed wheels."""
    previous = os.environ.get(_SWITCH)
    os.environ[_SWITCH] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_SWITCH, None)
        else:
            os.environ[_SWITCH] = previous


def import_trusted(*module_names: str) -> list[ModuleType]:
    """Import modules (e3nn, mace, sevenn) whose import loads packaged torch files."""
    with trusted_package_loads():
        return [importlib.import_module(name) for name in module_names]
