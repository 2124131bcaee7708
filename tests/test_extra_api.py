"""Extra API (§10.2): operator routes proxied to a real upstream server on loopback."""

import http.client
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from fake_runner import FakeRunner

from knitfab.api.extra import config_fields
from knitfab.server import Config, KnitfabServer
from knitfab.store.layout import Layout

DEADLINE = 10


class Upstream:
    """Answers every request with what it received, as JSON; ``/base/slow`` streams two chunks
    with a pause the test controls, ``/base/sink`` reads a known-length body piece by piece."""

    def __init__(self):
        self.first_piece = threading.Event()  # /sink has read the first piece of the body
        self.go_on = threading.Event()  # /slow may send its second chunk
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                if self.path == "/base/slow":
                    return self.slow()
                if self.path == "/base/sink":
                    return self.sink()
                seen = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                        "body": self.body().decode()}  # fmt: skip
                data = json.dumps(seen).encode()
                self.send_response(201 if self.command == "POST" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Upstream", "yes")
                self.send_header("Set-Cookie", "a=1")
                self.send_header("Set-Cookie", "b=2")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def body(self) -> bytes:
                if self.headers.get("Transfer-Encoding") != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = b""
                while size := int(self.rfile.readline(), 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return data

            def slow(self):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"6\r\nfirst\n\r\n")
                self.wfile.flush()
                upstream.go_on.wait(DEADLINE)
                self.wfile.write(b"7\r\nsecond\n\r\n0\r\n\r\n")

            def sink(self):
                length = int(self.headers["Content-Length"])
                got = len(self.rfile.read(1000))
                upstream.first_piece.set()
                got += len(self.rfile.read(length - got))
                data = str(got).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = handle_one

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.go_on.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.close()


def start(tmp_path, routes, **config) -> KnitfabServer:
    data_dir = tmp_path / "kf"
    server = KnitfabServer(Config(port=0, data_dir=data_dir, extra_api=routes, **config), FakeRunner(Layout(data_dir)))
    server.start()
    return server


@pytest.fixture
def proxied(tmp_path, upstream):
    server = start(tmp_path, {"/ext": f"{upstream.url}/base"})
    yield server.url.removesuffix("/api")
    server.stop()


def test_every_method_path_and_query_reaches_the_upstream(proxied, upstream):
    resp = requests.get(f"{proxied}/ext/a/b%20c?x=1&y=2", headers={"X-Custom": "mine"}, timeout=DEADLINE)
    seen = resp.json()
    assert seen["method"] == "GET" and seen["path"] == "/base/a/b%20c?x=1&y=2"
    assert seen["headers"]["X-Custom"] == "mine" and seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["headers"]["Host"] == upstream.url.removeprefix("http://")
    assert seen["headers"]["X-Forwarded-Host"] == proxied.removeprefix("http://")
    assert resp.headers["X-Upstream"] == "yes" and resp.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        resp = requests.request(method, f"{proxied}/ext/thing", data=b"payload", timeout=DEADLINE)
        assert resp.json()["method"] == method and resp.json()["body"] == "payload"
    assert requests.post(f"{proxied}/ext", data=b"x", timeout=DEADLINE).status_code == 201
    assert requests.get(f"{proxied}/ext", timeout=DEADLINE).json()["path"] == "/base"
    head = requests.head(f"{proxied}/ext/x", timeout=DEADLINE)
    assert head.status_code == 200 and head.headers["X-Upstream"] == "yes"


def test_only_the_path_and_below_are_proxied_and_api_stays_knitfabs(proxied):
    assert requests.get(f"{proxied}/extra", timeout=DEADLINE).status_code == 404
    assert requests.get(f"{proxied}/api/data", timeout=DEADLINE).json() == []


def test_responses_stream_as_they_come(proxied, upstream):
    with requests.get(f"{proxied}/ext/slow", stream=True, timeout=DEADLINE) as resp:
        pieces = resp.iter_content(chunk_size=None)
        assert next(pieces) == b"first\n"  # arrives while the upstream is still waiting
        upstream.go_on.set()
        assert b"".join(pieces) == b"second\n"


def test_request_bodies_stream_as_they_come(proxied, upstream):
    host, port = proxied.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=DEADLINE)
    conn.putrequest("POST", "/ext/sink")
    conn.putheader("Content-Length", str(1 << 20))
    conn.endheaders()
    conn.send(b"x" * (128 << 10))  # two of the proxy's pieces
    assert upstream.first_piece.wait(DEADLINE)  # the upstream reads before the client has sent it all
    conn.send(b"x" * ((1 << 20) - (128 << 10)))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == str(1 << 20).encode()
    conn.close()


def test_a_chunked_request_body_goes_on_chunked(proxied):
    seen = requests.post(f"{proxied}/ext/up", data=iter([b"one ", b"two"]), timeout=DEADLINE).json()
    assert seen["body"] == "one two" and seen["headers"]["Transfer-Encoding"] == "chunked"


def test_the_same_token_guards_the_extra_api_and_is_not_passed_on(tmp_path, upstream):
    token = tmp_path / "token"
    token.write_text("s3cret")
    server = start(tmp_path, {"/ext": f"{upstream.url}/base"}, token_file=token)
    root = server.url.removesuffix("/api")
    try:
        assert requests.get(f"{root}/ext/x", timeout=DEADLINE).status_code == 401
        seen = requests.get(f"{root}/ext/x", headers={"Authorization": "Bearer s3cret"}, timeout=DEADLINE).json()
        assert seen["path"] == "/base/x" and "Authorization" not in seen["headers"]
    finally:
        server.stop()


def test_an_unreachable_upstream_is_a_502(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    server = start(tmp_path, {"/ext": dead})
    try:
        resp = requests.get(server.url.removesuffix("/api") + "/ext/x", timeout=DEADLINE)
        assert resp.status_code == 502 and resp.json()["message"].startswith("bad gateway")
    finally:
        server.stop()


@pytest.mark.parametrize(
    "path, proxy_to, words",
    [
        ("/api", "http://x", "is reserved"),
        ("/api/ext", "http://x", "is reserved"),
        ("/", "http://x", "absolute, clean path"),
        ("/a/../b", "http://x", "absolute, clean path"),
        ("/a/", "http://x", "absolute, clean path"),
        ("relative", "http://x", "absolute, clean path"),
        ("/ext", "ftp://x", "must be an http(s) URL"),
        ("/ext", None, "must be an http(s) URL"),
    ],
)
def test_bad_routes_are_refused_at_start(path, proxy_to, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        config_fields({"extraApi": {"endpoints": [{"path": path, "proxy_to": proxy_to}]}})
