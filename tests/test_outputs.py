import pytest
from ase.outputs import all_outputs

from hacknip_ase.outputs import register_embedding_outputs, register_output


def test_registration_is_idempotent():
    register_embedding_outputs()
    register_embedding_outputs()
    assert all_outputs["embeddings"].shapespec == ("ndepths", "embedding_dim")
    assert all_outputs["ndepths"].dtype is int


def test_conflicting_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_output("energy", ("natoms",))
