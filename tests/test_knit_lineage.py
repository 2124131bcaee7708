"""``knit data lineage`` in one request against our server (``/api/x/lineage?format=json``), and
Knitfab's one-request-per-node walk against a server without it; the DOT is the same either way."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from console_history import served
from test_knit_graphs import tokyo  # noqa: F401  (autouse: the client draws in its own zone, not the server's)

import knit
from knit.graphs import data_lineage

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
        self.http.hooks["response"].append(lambda resp, **_: self.paths.append(resp.request.path_url))


@pytest.fixture(scope="module")
def knitfab_like(history):
    """A real HTTP server in front of ours that has no ``/api/x/``, as Knitfab v1.6.1 has none."""
    upstream = history.server.url.removesuffix("/api")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.startswith("/api/x/"):
                body, status = b'{"message":"not found"}', 404
            else:
                answer = requests.get(upstream + self.path, timeout=10)
                body, status = answer.content, answer.status_code
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}/api"
    proxy.shutdown()
    proxy.server_close()


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
