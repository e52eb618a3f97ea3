"""benchmarks/ is in one-way layers: cli -> report -> harness -> tasks -> data, no import back up."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"
#: layer of each top-level part of benchmarks/ (higher may import lower, never the reverse)
LAYERS = {"cli": 4, "report": 3, "harness": 2, "tasks": 1, "data": 0}
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of benchmarks/ that ``path`` imports (relative imports resolved)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.update([target] + [f"{target}.{a.name}" for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("benchmarks.")}


def _layer(module: str) -> int | None:
    return LAYERS.get(module.split(".")[1]) if module.count(".") >= 1 else None


SOURCES = sorted(p for p in ROOT.rglob("*.py") if "perf" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_runs_back_up(path):
    own = _layer(_module(path))
    if own is None:
        return
    upward = [m for m in _imports(path) if (_layer(m) or 0) > own]
    assert not upward, f"{_module(path)} (layer {own}) imports {upward} from a layer above"


def test_no_module_is_long():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long
