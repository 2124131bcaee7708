"""The REST API's factory: ``create_app()`` builds the Flask application (spec §3).

It registers one blueprint per resource, the request hooks (token, bounded queries, turns) and
the error handlers: every error becomes Knitfab's body ``{"message": "..."}`` in ``_error`` and
nowhere else. Nothing imports this module but the server that assembles the process.
"""

from __future__ import annotations

import hmac
import logging
import re

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from knit.archive import ArchiveError

from .. import console
from ..errors import BadRequest, KnitfabError, ServiceUnavailable, Unauthorized, disk_full
from . import cache, data, openapi, plans, runs
from .web import MAX_QUERY_VALUES, PROBES, Services, reply, services

log = logging.getLogger("knitfab.http")


def create_app(services: Services) -> Flask:

    app = Flask("knitfab", static_folder=None)  # /static/... is the console's (Knitfab's has /static/js)
    app.config["MAX_CONTENT_LENGTH"] = None  # uploads are unbounded; JSON bodies are checked in body()
    app.url_map.strict_slashes = False
    app.extensions["knitfab"] = services
    app.register_blueprint(data.bp)
    app.register_blueprint(plans.bp)
    app.register_blueprint(runs.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(console.bp)
    app.add_url_rule("/api/healthz", "healthz", lambda: reply({"status": "ok"}))
    app.add_url_rule("/api/readyz", "readyz", _readyz)
    app.before_request(_authenticate)
    app.before_request(_bounded_query)
    app.before_request(cache.from_cache)  # a kept answer needs no turn
    app.before_request(_take_a_turn)
    app.after_request(_wake_the_engine)
    app.after_request(cache.keep)
    app.teardown_request(_end_turn)
    app.register_error_handler(KnitfabError, _error)
    app.register_error_handler(ArchiveError, lambda e: _error(BadRequest(str(e))))  # a bad upload: 400
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


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


WRITES = {"POST", "PUT", "DELETE", "PATCH"}


def _wake_the_engine(response: Response) -> Response:
    """Every write that succeeded may change matching (new Data, tags, plans, runs): the engine
    looks at once instead of at its next poll."""
    if request.method in WRITES and response.status_code < 400:
        services().wake()
    return response


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
    # is checked where the trailers are read, in front.py).
    md5 = request.headers.get("x-checksum-md5")
    if md5 is not None and not re.fullmatch(r"\s*[0-9a-fA-F]{32}\s*", md5):
        raise BadRequest("the x-checksum-md5 header is not an MD5 (32 hexadecimal digits)")


def _readyz() -> Response:
    """Readiness for Kubernetes probes: the store is open and the engine thread is alive."""
    if not services().ready():
        raise ServiceUnavailable("the server is starting or stopping; please retry later")
    return reply({"status": "ready"})
