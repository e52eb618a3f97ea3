import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from pymatgen.core import Lattice, Structure

from hacknip_ase import errors
from hacknip_ase.structures import as_atoms, box_in_vacuum, supercell_repeats, validate


def test_pymatgen_structure_is_converted():
    structure = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    atoms = as_atoms(structure)
    assert atoms.get_chemical_formula() == "ClNa" and atoms.pbc.all()


def test_other_types_are_refused():
    with pytest.raises(TypeError):
        as_atoms("Si")


def test_box_keeps_periodic_images_beyond_cutoff():
    boxed = box_in_vacuum(molecule("C6H6"), cutoff=6.0)
    assert boxed.pbc.all()
    extent = np.ptp(boxed.positions, axis=0)
    assert np.all(boxed.cell.lengths() - extent >= 2 * 6.0)


def test_supercell_repeats_make_every_vector_longer_than_cutoff():
    atoms = bulk("Si")  # primitive vectors 3.84 A
    repeats = supercell_repeats(atoms, cutoff=6.0)
    assert repeats == (2, 2, 2)
    assert np.all(atoms.repeat(repeats).cell.lengths() > 6.0)
    slab = Atoms("Si", cell=[3, 3, 20], pbc=[True, True, False])
    assert supercell_repeats(slab, 6.0) == (3, 3, 1)


def test_two_dimensional_cells_are_accepted():
    validate(Atoms("C2", positions=[[0, 0, 0], [1.42, 0, 0]], cell=[[2.46, 0, 0], [-1.23, 2.13, 0], [0, 0, 0]],
                   pbc=[True, True, False]), model="m")


def test_atom_too_close_to_its_own_image():
    with pytest.raises(errors.OverlappingAtomsError, match="periodic image"):
        validate(Atoms("H", cell=[0.3, 5, 5], pbc=True), model="m")


def test_errors_are_value_errors():
    for error in (errors.EmptyStructureError, errors.UnsupportedElementError, errors.DownloadError,
                  errors.DataNotFoundError, errors.PredictorMismatchError):
        assert issubclass(error, ValueError)
