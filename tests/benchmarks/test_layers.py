"""benchmarks/ is in one-way layers: cli -> report -> harness -> tasks -> data, no import back up."""

import pytest

from ..import_graph import ROOT, graph, module_name, sources

#: layer of each top-level part of benchmarks/ (higher may import lower, never the reverse)
LAYERS = {"cli": 4, "report": 3, "harness": 2, "tasks": 1, "data": 0}
MAX_LINES = 400
SOURCES = [p for p in sources("benchmarks") if "perf" not in p.parts]


def _layer(module: str) -> int | None:
    return LAYERS.get(module.split(".")[1]) if module.count(".") >= 1 else None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT / "benchmarks")))
def test_no_import_runs_back_up(path):
    own = _layer(module_name(path))
    if own is None:
        return
    upward = [m for m in graph(("benchmarks",))[module_name(path)] if (_layer(m) or 0) > own]
    assert not upward, f"{module_name(path)} (layer {own}) imports {upward} from a layer above"


def test_no_module_is_long():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long
