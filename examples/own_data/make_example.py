"""Write a tiny bring-your-own-data example: small molecules labelled with their molecular weight.

The label is RDKit's average molecular weight (g/mol) of each SMILES, computed here, so the
example needs no downloaded data and its "truth" is exact. It only shows the mechanics of
``hacknip fit`` / ``hacknip predict``; the embeddings know molecule size, so the fit is easy.

    python examples/own_data/make_example.py DIR   # writes DIR/mw_train.csv and DIR/mw_new.csv
"""

import csv
import sys
from pathlib import Path

from rdkit import Chem
from rdkit.Chem import Descriptors

TRAIN = ["C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC", "CCCCCCC", "CO", "CCO", "CCCO", "CCCCO", "OCCO", "CC(C)O",
         "CC(=O)O", "CCC(=O)O", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1", "CN", "CCN", "CCCN", "C1CCCCC1",
         "C1CCCC1", "CC(C)C", "CC(C)(C)C", "CCOCC", "COC", "CC=O", "CCC=O", "CC(C)=O", "ClCCl", "ClC(Cl)Cl",
         "FC(F)F", "CCCl", "CCBr", "O=C=O", "CC#N", "C=CC", "C=CC=C", "OC(=O)c1ccccc1", "CC(=O)OC", "CCOC(C)=O",
         "NC(N)=O", "CS(C)=O", "c1ccncc1", "c1ccoc1", "C1CCOC1"]
NEW = ["CCCCCCCC", "OCCCO", "Clc1ccccc1", "CCCC(=O)O", "c1ccc2ccccc2c1", "CC(C)CO", "C1CC"]  # last: invalid


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "mw_train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "smiles", "mol_weight"])
        for i, smiles in enumerate(TRAIN):
            writer.writerow([f"train-{i}", smiles, f"{Descriptors.MolWt(Chem.MolFromSmiles(smiles)):.3f}"])
    with open(out / "mw_new.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "smiles"])
        writer.writerows([f"new-{i}", smiles] for i, smiles in enumerate(NEW))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
