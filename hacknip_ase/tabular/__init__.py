"""Your own data: a table of SMILES or structure files (or an extxyz / ase .db) -> a saved
:class:`~hacknip_ase.heads.Predictor`, and predictions for new rows.

Inputs (:func:`read_inputs`):

- a CSV / TSV / Parquet table with a SMILES column (``smiles=``) or a column of structure file
  paths (``structures=``; CIF, POSCAR, extxyz, anything ``ase.io.read`` reads; relative paths
  are relative to the table); the target is a column of it;
- an extxyz file or an ase ``.db``: the target is an ``info`` key (extxyz) or a key-value pair
  (db) of each structure.

Every row comes back: with a structure, or with the reason it has none (bad SMILES, a file that
cannot be read, a 3D build that failed, an element the backbone does not cover, overlapping
atoms). :func:`fit_table` trains through :meth:`Predictor.fit`, the path the benchmark harness
uses too; :func:`predict_table` writes one output row per input row.
"""

from .commands import add_data_commands
from .fit_predict import fit_table, predict_table
from .inputs import Inputs, embed_inputs, read_inputs
from .report import FitReport, held_out_scores

__all__ = ["FitReport", "Inputs", "add_data_commands", "embed_inputs", "fit_table", "held_out_scores",
           "predict_table", "read_inputs"]
