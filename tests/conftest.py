"""Session-wide test settings."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """Keep weights and embedding caches written by tests out of the user's home cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HACKNIP_CACHE_DIR", str(tmp_path_factory.mktemp("hacknip_cache")))
    yield
    mp.undo()
