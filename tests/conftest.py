import pytest

from knitfab.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "knitfab")
    yield s
    s.close()
