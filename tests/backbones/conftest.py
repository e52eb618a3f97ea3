"""Every adapter is checked against one contract (test_contract.py).

Each ``build_<name>.py`` beside this file gives ``build(tmp_path) -> Backbone`` (real shipped
weights, or a random-weight architecture saved to ``tmp_path`` and loaded through the same
local-path code users use), ``native_calculator(backbone)`` (the NIP's own ASE calculator on
the same parameters) and ``UNSUPPORTED_Z`` (an element the model does not cover).
"""

import importlib

import pytest

BACKBONE_NAMES = ["chgnet", "sevennet", "orb", "mace"]


def builder(name):
    return importlib.import_module(f"tests.backbones.build_{name}")


@pytest.fixture(scope="session", params=BACKBONE_NAMES)
def backbone_name(request):
    return request.param


@pytest.fixture(scope="session")
def built(backbone_name, tmp_path_factory):
    """(backbone, builder module) for each registered adapter, built once per session."""
    module = builder(backbone_name)
    return module.build(tmp_path_factory.mktemp(backbone_name)), module


@pytest.fixture(scope="session")
def backbone(built):
    return built[0]
