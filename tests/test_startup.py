"""Start-up: the command lines import no torch or NIP package to show their help."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "chgnet", "sevenn", "mace", "orb_models", "tensorflow", "sklearn", "rdkit", "pymatgen")


@pytest.mark.parametrize("module", ["hacknip_ase.cli", "benchmarks.cli"])
def test_help_imports_nothing_heavy(module):
    code = (f"import sys\nfrom {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_package_import_is_lazy_but_complete():
    code = ("import sys, hacknip_ase\nassert 'torch' not in sys.modules\n"
            "from hacknip_ase import EmbeddingCalculator, featurize, FeatureSet, get_backbone, errors\n"
            "print(hacknip_ase.__version__, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.1.0", "True"]


def test_bench_cli_choices_match_the_registries():
    from hacknip_ase.choices import HEAD_NAMES as HEAD_CHOICES
    from hacknip_ase.choices import RELAX_RECIPES as RELAX_CHOICES
    from hacknip_ase.molecules import RECIPES
    from hacknip_ase.heads import HEADS

    assert HEAD_CHOICES == tuple(HEADS)
    assert RELAX_CHOICES == tuple(sorted(RECIPES))
