"""Extra API (Knitfab §10.2): operator-configured routes proxied to other HTTP services.

Each route ``path → proxy_to`` sends every method on ``path`` and ``path/...`` to ``proxy_to``
followed by the rest of the path, with the query string. ``/api`` and what is under it stay
Knitfab's: a route there is refused at start-up, as is ``/`` (the console's). Requests pass the
server's bearer token check like any other; the token itself is not passed on (it is Knitfab's,
not the upstream's). Bodies stream both ways in pieces, so neither an upload nor a download
is held in memory; end-to-end headers are copied both ways, hop-by-hop ones are not (RFC 9110
§7.6.1), and ``X-Forwarded-For``/``-Host``/``-Proto`` say where the request came from.
HTTP trailers are not relayed. An upstream that cannot be reached is a 502.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
from flask import Flask, Response, request

from ..errors import BadGateway

log = logging.getLogger("knitfab.extraapi")
ENDPOINT = "extra_api"  # http.STREAMING lists it: a proxied stream holds its thread, not a turn
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PIECE = 1 << 16
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade",
}  # fmt: skip
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "expect"}  # requests sets its own
PATH = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+")


def config_fields(doc: dict | None) -> dict:
    """``Config`` fields from ``extraApi: {endpoints: [{path: /abs/path, proxy_to: URL}]}``,
    the shape of Knitfab's Helm values."""
    section = (doc or {}).get("extraApi") or {}
    endpoints = section.get("endpoints") if isinstance(section, dict) else None
    if not isinstance(endpoints or [], list):
        raise ValueError("extraApi.endpoints must be a list of {path, proxy_to}")
    routes = {}
    for item in endpoints or []:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise ValueError(f"each extraApi endpoint needs a path and a proxy_to: {item!r}")
        routes[item["path"]] = item.get("proxy_to")
    check_routes(routes)
    return {"extra_api": routes}


def check_routes(routes: dict[str, str]) -> None:
    """Refuse what Knitfab refuses at start-up: unclean paths, ``/api``, non-HTTP upstreams."""
    for path, upstream in routes.items():
        if not PATH.fullmatch(path) or posixpath.normpath(path) != path:
            raise ValueError(f"extraApi path must be an absolute, clean path: {path!r}")
        if path == "/api" or path.startswith("/api/"):
            raise ValueError(f"extraApi path {path!r} is reserved: /api is Knitfab's")
        parts = urlsplit(upstream) if isinstance(upstream, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"extraApi proxy_to of {path} must be an http(s) URL: {upstream!r}")


def install(app: Flask, routes: dict[str, str], token: str | None) -> None:
    """Add the routes to the app, after its own (so its before-request checks apply)."""
    check_routes(routes)
    proxy = _Proxy(strip_authorization=token is not None)
    for path, upstream in routes.items():
        target = {"upstream": upstream.rstrip("/"), "base": path}
        options = {"methods": METHODS, "provide_automatic_options": False}
        app.add_url_rule(path, ENDPOINT, proxy, defaults={**target, "rest": ""}, **options)
        app.add_url_rule(f"{path}/<path:rest>", ENDPOINT, proxy, defaults=target, **options)
        log.info("extra API: %s → %s", path, upstream)


class _Proxy:
    """The one view of every extra API route."""

    def __init__(self, strip_authorization: bool):
        self.strip_authorization = strip_authorization
        self.http = requests.Session()  # thread-safe enough for independent requests; pools connections

    def __call__(self, upstream: str, base: str, rest: str) -> Response:
        url = upstream + _raw_path(base) + (f"?{request.query_string.decode()}" if request.query_string else "")
        try:
            answer = self.http.request(
                request.method, url, headers=self._headers(), data=_body(), stream=True,
                allow_redirects=False, timeout=(10, 300),
            )  # fmt: skip
        except requests.RequestException as e:
            raise BadGateway(f"the extra API upstream of {base} cannot be reached: {type(e).__name__}") from None
        headers = [(k, v) for k, v in answer.raw.headers.items() if k.lower() not in HOP_BY_HOP]
        return Response(_relay(answer), status=answer.status_code, headers=headers, direct_passthrough=True)

    def _headers(self) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        if self.strip_authorization:
            headers.pop("Authorization", None)
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {request.remote_addr}" if forwarded else str(request.remote_addr)
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        return headers


def _raw_path(base: str) -> str:
    """The request's path after ``base``, still percent-encoded as the client sent it."""
    raw = request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI") or request.full_path
    path = raw.split("?", 1)[0]
    return path[len(base) :] if path.startswith(base) else request.path[len(base) :]


def _body() -> _Body | Iterator[bytes] | bytes:
    """The request body as it arrives: with a known length passed on as such, else chunked."""
    if request.content_length is not None:
        return _Body(request.stream, request.content_length) if request.content_length else b""
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return b""
    stream = request.stream
    return iter(lambda: stream.read(PIECE), b"")


class _Body:
    """A request body of known length, read piece by piece (requests sends its length)."""

    def __init__(self, stream, length: int):
        self.stream, self.length = stream, length

    def read(self, size: int = PIECE) -> bytes:
        return self.stream.read(size)

    def __len__(self) -> int:
        return self.length


def _relay(answer: requests.Response) -> Iterator[bytes]:
    try:
        # decode_content=False: bytes go on as the upstream encoded them, with its Content-Encoding
        yield from answer.raw.stream(PIECE, decode_content=False)
    finally:
        answer.close()
