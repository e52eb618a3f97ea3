"""The layout the README describes: no import circle, the package never imports the benchmarks,
no module of the package over ~400 lines (benchmarks/: tests/benchmarks/test_layers.py)."""

from .import_graph import ROOT, cycles, graph, sources

MAX_LINES = 400


def test_cycles_finds_a_circle_and_only_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    assert cycles(graph()) == []


def test_package_never_imports_the_benchmarks():
    upward = {m: sorted(t for t in targets if t.startswith("benchmarks"))
              for m, targets in graph().items() if m.startswith("hacknip_ase")}
    assert not {m: t for m, t in upward.items() if t}


def test_no_package_module_is_long():
    long = {str(p.relative_to(ROOT)): n for p in sources("hacknip_ase")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long
