"""Lazy structure readers: CIF folder, extxyz, ase.db, Matbench json.gz."""

import gzip
import json

import numpy as np
import pytest
from ase.build import bulk
from ase.db import connect
from ase.io import write
from pymatgen.io.ase import AseAtomsAdaptor

from hacknip_ase import errors
from hacknip_ase.readers import StructureFile, detect_format, read_structures

from .featurize_support import small_structures


def same(a, b):
    """Same crystal up to a rotation (CIF stores lattice parameters, not the cell matrix)."""
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    np.testing.assert_allclose(a.cell.cellpar(), b.cell.cellpar(), atol=1e-4)
    np.testing.assert_allclose(a.get_all_distances(mic=True), b.get_all_distances(mic=True), atol=1e-4)


def test_cif_folder_yields_sorted_file_stems(tmp_path):
    structures = small_structures(3)
    for name, atoms in zip(["b", "a", "c"], structures, strict=True):
        write(tmp_path / f"{name}.cif", atoms)
    (tmp_path / "notes.txt").write_text("not a CIF")
    source = read_structures(tmp_path)
    assert source.format == "cif" and len(source) == 3
    read = list(source)
    assert [sid for sid, _ in read] == ["a", "b", "c"]
    same(read[0][1], structures[1])


def test_unparsable_cif_names_the_file(tmp_path):
    write(tmp_path / "good.cif", bulk("Si"))
    (tmp_path / "broken.cif").write_text("data_x\n_cell_length_a 5\nloop_\n_atom_site_label\n")
    with pytest.raises(errors.StructureParseError, match="broken.cif"):
        list(read_structures(tmp_path))


def test_extxyz_uses_frame_ids_and_counts_frames(tmp_path):
    structures = small_structures(3)
    structures[1].info["id"] = "second"
    write(tmp_path / "set.extxyz", structures, format="extxyz")
    source = read_structures(tmp_path / "set.extxyz")
    assert source.format == "extxyz" and len(source) == 3
    read = list(source)
    assert [sid for sid, _ in read] == ["set-0", "second", "set-2"]
    same(read[2][1], structures[2])


def test_ase_db_uses_name_or_row_id(tmp_path):
    structures = small_structures(2)
    with connect(tmp_path / "set.db") as db:
        db.write(structures[0], name="first")
        db.write(structures[1])
    source = read_structures(tmp_path / "set.db")
    assert len(source) == 2
    read = list(source)
    assert [sid for sid, _ in read] == ["first", "2"]
    same(read[1][1], structures[1])


def test_matbench_json_gz_uses_official_ids(tmp_path):
    structures = small_structures(12)
    table = {
        "index": list(range(12)),
        "columns": ["structure", "fake_target"],
        "data": [[AseAtomsAdaptor.get_structure(a).as_dict(), float(i)] for i, a in enumerate(structures)],
    }
    path = tmp_path / "matbench_log_fake.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump(table, handle)
    source = read_structures(path)
    assert source.format == "matbench" and len(source) == 12
    read = list(source)
    assert read[0][0] == "mb-log-fake-01" and read[11][0] == "mb-log-fake-12"  # padded to the row count
    same(read[5][1], structures[5])


def test_matbench_without_structures_is_refused(tmp_path):
    path = tmp_path / "matbench_x.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump({"index": [0], "columns": ["composition", "y"], "data": [["Si", 1.0]]}, handle)
    with pytest.raises(errors.StructureParseError, match="structure"):
        len(read_structures(path))


def test_format_detection(tmp_path):
    assert detect_format(tmp_path) == "cif"
    assert detect_format(tmp_path / "a.json.gz") == "matbench"
    assert detect_format(tmp_path / "a.xyz") == "extxyz"
    assert detect_format(tmp_path / "a.db") == "db"
    assert detect_format(tmp_path / "one.cif") == "cif"  # a single CIF file is a source of one
    with pytest.raises(errors.UnknownFormatError, match="format"):
        detect_format(tmp_path / "a.pdb")
    with pytest.raises(errors.InputNotFoundError, match="missing.db"):
        read_structures(tmp_path / "missing.db")


def test_entries_yield_parse_errors_in_place_and_iteration_raises(tmp_path):
    from ase.build import bulk

    for name in ("a", "c"):
        write(tmp_path / f"{name}.cif", bulk("Si"))
    (tmp_path / "b.cif").write_text("data_broken\n_cell_length_a oops\n")
    source = read_structures(tmp_path)
    entries = list(source.entries())
    assert [sid for sid, _ in entries] == ["a", "b", "c"]
    with pytest.raises(errors.StructureParseError, match="b.cif"):
        entries[1][1].load()
    with pytest.raises(errors.StructureParseError, match="b.cif"):
        list(source)
    single = read_structures(tmp_path / "a.cif")
    assert len(single) == 1 and [sid for sid, _ in single] == ["a"]


def test_extxyz_frames_parse_one_at_a_time(tmp_path):
    from ase.build import bulk

    path = tmp_path / "frames.extxyz"
    frames = [bulk("Si"), bulk("Cu"), bulk("NaCl", "rocksalt", a=5.6)]
    write(path, frames)
    text = path.read_text().splitlines(keepends=True)
    # break the second frame's first atom line (frame = count line, comment line, atoms)
    text[2 + 2 + 0 + 2] = "Cu not-a-number 0 0\n"
    path.write_text("".join(text))
    entries = list(read_structures(path).entries())
    assert len(entries) == 3 and len(read_structures(path)) == 3
    assert isinstance(entries[1][1], errors.StructureParseError) and "frame 1" in str(entries[1][1])
    assert entries[2][1].get_chemical_formula() == "ClNa"


def _cif_text(atoms) -> str:
    import io

    buffer = io.BytesIO()
    write(buffer, atoms, format="cif")
    return buffer.getvalue().decode()


def _structure_texts(structures) -> list[str]:
    """Every encoding a table may hold, in turn: pymatgen dict JSON, ase JSON, CIF text."""
    from ase.io.jsonio import encode

    encoders = [lambda a: json.dumps(AseAtomsAdaptor.get_structure(a).as_dict()), encode, _cif_text]
    return [encoders[i % 3](atoms) for i, atoms in enumerate(structures)]


@pytest.fixture
def tables(tmp_path):
    """The same 11 structures as CSV and as Parquet (row groups of 4), with ids."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    structures = small_structures(11, seed=7)
    texts, ids = _structure_texts(structures), [f"row{i}" for i in range(11)]
    with open(tmp_path / "set.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "structure", "note"])
        writer.writerows([sid, text, "x"] for sid, text in zip(ids, texts, strict=True))
    pq.write_table(pa.table({"id": ids, "structure": texts}), tmp_path / "set.parquet", row_group_size=4)
    return structures, ids, tmp_path


@pytest.mark.parametrize("name", ["set.csv", "set.parquet"])
def test_tables_of_structures_read_every_encoding(tables, name):
    structures, ids, folder = tables
    source = read_structures(folder / name)
    assert source.format == "table" and len(source) == 11
    read = list(source)
    assert [sid for sid, _ in read] == ids
    for (_, atoms), original in zip(read, structures, strict=True):
        same(atoms, original)
    np.testing.assert_allclose(read[1][1].positions, structures[1].positions)  # ase JSON: exact cell and positions


def test_table_without_ids_bad_cells_and_missing_column(tmp_path):
    import csv

    with open(tmp_path / "t.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["structure"])
        writer.writerows([[_cif_text(bulk("Si"))], ["{\"a\": 1}"], [""]])
    entries = list(read_structures(tmp_path / "t.csv").entries())
    assert [sid for sid, _ in entries] == ["t-0", "t-1", "t-2"]
    assert isinstance(entries[1][1], errors.StructureParseError) and "row 1" in str(entries[1][1])
    assert isinstance(entries[2][1], errors.StructureParseError) and "empty" in str(entries[2][1])
    (tmp_path / "no_structure.csv").write_text("id,smiles\na,CCO\n")
    with pytest.raises(errors.TableError, match="no 'structure' column"):
        read_structures(tmp_path / "no_structure.csv")
    assert detect_format(tmp_path / "a.parquet") == "table" and detect_format(tmp_path / "a.csv") == "table"


@pytest.mark.parametrize("size", [1, 3, 4, 11, 50])
def test_shards_cover_every_entry_once_in_order(tables, size):
    """Shards read on their own (positions, offsets, row groups) give exactly the entries, in order."""
    structures, _, folder = tables
    write(folder / "set.extxyz", structures, format="extxyz")
    with connect(folder / "set.db") as db:
        for atoms in structures:
            db.write(atoms)
    (folder / "cifs").mkdir()
    for i, atoms in enumerate(structures):
        write(folder / "cifs" / f"{i:02d}.cif", atoms)
    table = {"index": list(range(11)), "columns": ["structure"],
             "data": [[AseAtomsAdaptor.get_structure(a).as_dict()] for a in structures]}
    with gzip.open(folder / "matbench_x.json.gz", "wt") as handle:
        json.dump(table, handle)
    for name in ("set.extxyz", "set.db", "cifs", "matbench_x.json.gz", "set.csv", "set.parquet"):
        source = read_structures(folder / name)
        whole = list(source)
        shards = source.shards(size)
        assert [(s.start, s.stop) for s in shards] == [(a, min(a + size, 11)) for a in range(0, 11, size)], name
        parts = [entry for shard in reversed(shards) for entry in reversed(list(source.shard_entries(shard)))][::-1]
        assert [sid for sid, _ in parts] == [sid for sid, _ in whole], name
        for (_, atoms), (_, expected) in zip(parts, whole, strict=True):
            atoms = atoms.load() if isinstance(atoms, StructureFile) else atoms
            np.testing.assert_array_equal(atoms.positions, expected.positions)
