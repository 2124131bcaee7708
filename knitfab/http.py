"""The REST API: ``create_app()`` builds the Flask application (spec §3).

Handlers are thin: parse the request, call one store function, return JSON. Every error
becomes Knitfab's body ``{"message": "..."}`` in ``_error`` and nowhere else. Routes ignore a
trailing slash, as Knitfab's middleware does. Responses are compact JSON with a final newline,
keys in Knitfab's order; ``?pretty`` indents them.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from knit.archive import ArchiveError

from .data import UploadLimits
from .errors import BadRequest, KnitfabError, ServiceUnavailable, Unauthorized, disk_full
from .runner import Runner
from .store import Store
from .times import parse_duration, parse_rfc3339

log = logging.getLogger("knitfab.http")
MAX_JSON_BODY = 16 << 20
MAX_JSON_DEPTH = 64  # a plan is 4 levels deep; deeper is an attack on the recursive checks
MAX_QUERY_VALUES = 256  # repeated parameters (tag=...): each is a join; SQLite's tree ends near 1000
PROBES = ("/api/healthz", "/api/readyz")


@dataclass
class Services:
    """What the handlers use: the store, the runner (for live logs) and the engine's wake-up."""

    store: Store
    runner: Runner | None = None
    wake: Callable[[], None] = field(default=lambda: None)
    token: str | None = None
    ready: Callable[[], bool] = field(default=lambda: True)
    turns: threading.Semaphore = field(default_factory=lambda: threading.BoundedSemaphore(max(2, os.cpu_count() or 2)))
    public: str | None = None  # --public: the directory of another static console to serve at /
    upload_limits: UploadLimits = field(default_factory=UploadLimits)


def create_app(services: Services) -> Flask:
    from . import console, dataapi, openapi, planapi, runapi

    app = Flask("knitfab", static_folder=None)  # /static/... is the console's (Knitfab's has /static/js)
    app.config["MAX_CONTENT_LENGTH"] = None  # uploads are unbounded; JSON bodies are checked in body()
    app.url_map.strict_slashes = False
    app.extensions["knitfab"] = services
    app.register_blueprint(dataapi.bp)
    app.register_blueprint(planapi.bp)
    app.register_blueprint(runapi.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(console.bp)
    app.add_url_rule("/api/healthz", "healthz", lambda: reply({"status": "ok"}))
    app.add_url_rule("/api/readyz", "readyz", _readyz)
    app.before_request(_authenticate)
    app.before_request(_bounded_query)
    app.before_request(_take_a_turn)
    app.teardown_request(_end_turn)
    app.register_error_handler(KnitfabError, _error)
    app.register_error_handler(ArchiveError, lambda e: _error(BadRequest(str(e))))  # a bad upload: 400
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


def services() -> Services:
    return current_app.extensions["knitfab"]


def store() -> Store:
    return services().store


# -- responses ------------------------------------------------------------------------------------


def reply(body: object, status: int = 200) -> Response:
    indent = 4 if "pretty" in request.args else None
    text = json.dumps(body, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"))
    return Response(text + "\n", status=status, content_type="application/json; charset=UTF-8")


def _error(e: KnitfabError) -> Response:
    return reply({"message": e.message}, e.status)


def _http_error(e: HTTPException) -> Response:
    # Werkzeug's own errors (unknown route, wrong method, body too large) in Knitfab's shape,
    # keeping their headers (a 405's Allow).
    resp = reply({"message": e.name}, e.code or 500)
    for name, value in e.get_headers():
        if name.lower() != "content-type":
            resp.headers[name] = value
    return resp


def _unexpected(e: Exception) -> Response:
    full = disk_full(e)
    if full is not None:
        log.warning("%s %s: %s", request.method, request.path, full.advice)
        return _error(full)
    log.exception("unexpected error in %s %s", request.method, request.path)
    return reply({"message": "unexpected error"}, 500)


# -- requests -------------------------------------------------------------------------------------

# Streams hold their thread for as long as the client reads or writes; they do not take turns.
STREAMING = {"data.upload", "data.download", "runs.log", "extra_api"}


def _take_a_turn() -> None:
    """At most a few JSON handlers run at once. Each releases the GIL at every SQLite call and
    must win it back; with many threads runnable that costs more than the work (measured: 16
    threads at once serve 40% fewer requests per second than 2). Streams keep their threads."""
    if request.endpoint not in STREAMING and request.path not in PROBES:
        services().turns.acquire()
        g.turn = True


def _end_turn(_exc: BaseException | None) -> None:
    if g.pop("turn", False):
        services().turns.release()


def _authenticate() -> None:
    token = services().token
    if not token or request.path in PROBES or request.endpoint == "console.static_file":  # no data in it
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("send the token of your knitprofile: Authorization: Bearer <token>")


def _bounded_query() -> None:
    for name, values in request.args.lists():
        if len(values) > MAX_QUERY_VALUES:
            raise BadRequest(f"at most {MAX_QUERY_VALUES} {name}= parameters in one query")
    # Its value is quoted back when it disagrees with the body: only ever an MD5 (the trailer's
    # is checked where the trailers are read, in server.py).
    md5 = request.headers.get("x-checksum-md5")
    if md5 is not None and not re.fullmatch(r"\s*[0-9a-fA-F]{32}\s*", md5):
        raise BadRequest("the x-checksum-md5 header is not an MD5 (32 hexadecimal digits)")


def body(fields: set[str], reason: str = "bad request") -> dict:
    """The JSON object of the request; unknown fields are refused as Knitfab does."""
    if request.mimetype != "application/json":
        raise BadRequest(f"Content-Type must be application/json, not {request.mimetype or 'missing'}", reason)
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise BadRequest(f"the JSON body is larger than {MAX_JSON_BODY} bytes", reason)
    raw = read_at_most(request.stream, MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise BadRequest(f"the JSON body is larger than {MAX_JSON_BODY} bytes", reason)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not JSON: {e}", reason) from None
    except RecursionError:  # nested deeper than the decoder's own stack
        raise BadRequest(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels", reason) from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise BadRequest(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels", reason)
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object", reason)
    if not _encodable(doc):
        raise BadRequest("the body has strings that are not valid Unicode (lone surrogates)", reason)
    unknown = set(doc) - fields
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}", reason)
    return doc


def _depth(doc: object) -> int:
    """How deeply lists and objects nest in ``doc``, without recursion."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                todo.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _encodable(value: object) -> bool:
    """JSON can carry lone surrogates ("\\ud800"); no UTF-8 store can hold them."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


def read_at_most(stream, limit: int) -> bytes:
    """Read to the end, or ``limit`` bytes; streams may return less than asked per read."""
    parts, size = [], 0
    while size < limit and (part := stream.read(min(65536, limit - size))):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def string_list(doc: dict, key: str, reason: str = "bad request") -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{key} must be a list", reason)
    return value


def comma_list(name: str) -> list[str]:
    """``a,b&name=c`` → [a, b, c]: Knitfab's comma lists, repeated parameters too."""
    return [item.strip() for value in request.args.getlist(name) for item in value.split(",") if item.strip()]


def time_window() -> tuple[int | None, int | None]:
    """``since`` and ``duration`` as [since, until) in microseconds."""
    # Empty values are absent, as in Knitfab (its console sends "duration=").
    since, duration = request.args.get("since") or None, request.args.get("duration") or None
    if duration is not None and since is None:
        # Knitfab's handler crashes here (§14.10); a clear 400 is what a user needs.
        raise BadRequest("duration needs since")
    start = parse_rfc3339(since) if since is not None else None
    if duration is None:
        return start, None
    return start, start + parse_duration(duration)


def _readyz() -> Response:
    """Readiness for Kubernetes probes: the store is open and the engine thread is alive."""
    if not services().ready():
        raise ServiceUnavailable("the server is starting or stopping; please retry later")
    return reply({"status": "ready"})
