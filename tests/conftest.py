import pytest

from knitfab.store.db import Store

# a plugin of tests/test_k8s_*.py (pytest_plugins) that they also import from: rewritten before that import
pytest.register_assert_rewrite("k8s_helpers")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "knitfab")
    yield s
    s.close()


@pytest.fixture
def server(tmp_path):
    """A real server on an ephemeral port, with the fake runner (its workers hang until told)."""
    from fake_runner import FakeRunner

    from knitfab.server import Config, KnitfabServer
    from knitfab.store.layout import Layout

    data_dir = tmp_path / "server"
    srv = KnitfabServer(Config(port=0, data_dir=data_dir, poll=0.05), runner=FakeRunner(Layout(data_dir)))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server):
    from apiclient import Api

    client = Api(server.url.removesuffix("/api"))
    yield client
    client.http.close()
