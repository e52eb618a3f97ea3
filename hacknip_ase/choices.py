"""Names the command lines offer as choices, kept free of heavy imports so ``--help`` stays fast.

tests/test_startup.py checks they equal the registries they name (``hacknip_ase.heads.HEADS``,
``hacknip_ase.molecules.RECIPES``).
"""

HEAD_NAMES = ("ridge", "xgboost", "mlp", "modnet")
RELAX_RECIPES = ("backbone", "etkdg", "forcefield")
#: Input formats of ``hacknip featurize`` (``hacknip_ase.readers.FORMATS`` is this tuple).
STRUCTURE_FORMATS = ("cif", "extxyz", "db", "matbench", "table")
