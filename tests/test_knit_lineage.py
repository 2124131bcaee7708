"""``knit data lineage`` in one request against our server (``/api/x/lineage?format=json``), and
Knitfab's one-request-per-node walk against a server without it; the DOT is the same either way."""

from __future__ import annotations

import pytest
from console_history import served
from knitfab_like import without_extensions
from test_knit_graphs import tokyo  # noqa: F401  (autouse: the client draws in its own zone, not the server's)

import knit
from knit.graphs import data_lineage
from knit.session import with_query

pytestmark = pytest.mark.slow
DEPTHS = [(True, True, None), (True, True, 1), (False, True, None), (True, False, 2)]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    with served(tmp_path_factory.mktemp("lineage") / "server") as history:
        yield history


class Counted(knit.KnitClient):
    """The real client, counting the requests it really sends."""

    def __init__(self, url: str):
        super().__init__(url)
        self.paths: list[str] = []
        send = self.session.request

        def counted(method, path, timeout, params=None, json=None):
            self.paths.append(with_query(path, params))
            return send(method, path, timeout, params, json)

        self.session.request = counted


@pytest.fixture(scope="module")
def knitfab_like(history):
    with without_extensions(history.server.url) as url:
        yield url


def walked(client: knit.KnitClient, knit_id: str, up: bool, down: bool, depth: int | None) -> str:
    """Knitfab's walk: one request per node, straight through the client."""
    return data_lineage(client, knit_id, up, down, depth)


@pytest.mark.parametrize("up, down, depth", DEPTHS)
def test_our_server_answers_the_whole_lineage_in_one_request(history, up, down, depth):
    for knit_id in history.data.values():
        client = Counted(history.server.url)
        dot = client.lineage(knit_id, up, down, depth)
        assert client.paths == [client.paths[0]] and client.paths[0].startswith("/api/x/lineage?")
        assert dot == walked(knit.KnitClient(history.server.url), knit_id, up, down, depth)


@pytest.mark.parametrize("up, down, depth", DEPTHS)
def test_a_server_without_the_extension_gets_the_walk(history, knitfab_like, up, down, depth):
    for knit_id in history.data.values():
        client = Counted(knitfab_like)
        dot = client.lineage(knit_id, up, down, depth)
        assert client.paths[0].startswith("/api/x/lineage?") and len(client.paths) >= 2
        assert not any(p.startswith("/api/x/") for p in client.paths[1:])
        assert dot == walked(knit.KnitClient(history.server.url), knit_id, up, down, depth)


def test_an_unknown_data_is_not_found_either_way(history, knitfab_like):
    for url in (history.server.url, knitfab_like):
        with pytest.raises(LookupError):
            knit.KnitClient(url).lineage("no-such-data")


def test_the_json_form_refuses_a_run_root(history):
    answer = history.api.call("GET", "/api/x/lineage", params={"run": history.runs["done"], "format": "json"})
    assert answer.status_code == 400
