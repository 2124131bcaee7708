"""A server as Knitfab v1.6.1 is to ``knit``: ours behind a real loopback proxy that has none of
our extensions (``/api/x/...`` answers 404) and ignores what a client asks for with Accept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@contextmanager
def without_extensions(api_url: str) -> Iterator[str]:
    """The API URL of a proxy of GET requests to ``api_url`` (ours), extensions removed."""
    upstream = api_url.removesuffix("/api")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.startswith("/api/x/"):
                body, status, ctype = b'{"message":"not found"}', 404, "application/json"
            else:
                answer = requests.get(upstream + self.path, timeout=30)
                body, status, ctype = answer.content, answer.status_code, answer.headers["Content-Type"]
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}/api"
    finally:
        proxy.shutdown()
        proxy.server_close()
