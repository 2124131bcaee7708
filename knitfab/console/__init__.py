"""The web console at ``/``: static files, and the graph endpoints it draws with.

The console is static HTML and ES modules (no build step) under ``static/``, calling the same
REST API at ``/api`` from the same origin. ``knitfab serve --public DIR`` serves another static
console (Knitfab's own) from DIR instead. Static files need no token: they hold no data, and
the console asks for the token when the API answers 401.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, request, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from knit import digests

from ..api.web import reply, services, store
from ..errors import BadRequest, NotFound
from .graphs import data_graph, data_nodes, plan_graph, to_svg, whole_graph

STATIC = Path(__file__).parent / "static"
bp = Blueprint("console", __name__)
# Ours only: Knitfab's console (--public) is not ours to restrict.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:;"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class _NotApi(PathConverter):
    """Any path but ``/api/...``, so that unknown API routes keep their 404 and 405 answers."""

    regex = r"(?!api(?:/|$))[^/].*?"


bp.record_once(lambda state: state.app.url_map.converters.setdefault("console", _NotApi))


@bp.get("/", defaults={"path": "index.html"})
@bp.get("/<console:path>")
def static_file(path: str) -> Response:
    public = services().public
    root = Path(public) if public else STATIC
    if path.endswith("/"):
        path += "index.html"
    try:
        response = send_from_directory(root, path, max_age=0)
    except (HTTPException, ValueError, OSError):  # not there, outside root, or not a file name
        raise NotFound(f"no such file: /{path}") from None
    if not public:
        response.headers.update(_HEADERS)
    return response


@bp.get("/api/x/lineage")
def lineage() -> Response:
    """The lineage graph of ``data=KNITID`` or ``run=RUNID``: with ``up``/``down`` (a number of
    steps or ``all``) as ``knit data lineage`` traces it; without them, the whole connected graph.
    ``format=json`` (with ``data``, ``up`` and ``down``): the nodes ``knit data lineage`` reads to
    draw it, so that it asks once instead of once per node."""
    knit_id, run_id = request.args.get("data"), request.args.get("run")
    if bool(knit_id) == bool(run_id):
        raise BadRequest("give one of data=KNITID or run=RUNID")
    if request.args.get("format") == "json":
        if not knit_id:
            raise BadRequest("format=json needs data=KNITID")
        return reply(data_nodes(store(), knit_id, _depth("up"), _depth("down")))
    if run_id or ("up" not in request.args and "down" not in request.args):
        return _graph(whole_graph(store(), knit_id, run_id))
    return _graph(data_graph(store(), knit_id, _depth("up"), _depth("down")))


@bp.get("/api/x/formats")
def formats() -> Response:
    """What ``POST /api/data`` takes besides Knitfab's tar.gz and MD5: ``knit`` sends plain tar
    with a SHA-256 ``Content-Digest`` trailer to a server listing them here (an extension: a
    Knitfab server answers 404, and gets tar.gz with ``x-checksum-md5``)."""
    return reply({"upload": ["application/x-tar", "application/tar+gzip"], "digests": digests.server_digests()})


@bp.get("/api/x/plangraph")
def plans() -> Response:
    """The plan graph of ``plan=PLANID``, ``up``/``down`` steps (default 3, ``all`` to the ends)."""
    plan_id = request.args.get("plan")
    if not plan_id:
        raise BadRequest("give plan=PLANID")
    return _graph(plan_graph(store(), plan_id, _depth("up", 3), _depth("down", 3)))


def _depth(name: str, default: int | None = 0) -> int | None:
    text = request.args.get(name)
    if text is None:
        return default
    if text == "all":
        return None
    if not text.isascii() or not text.isdigit() or int(text) > 1000:
        raise BadRequest(f"{name} must be a number of steps (0 to 1000) or all")
    return int(text)


def _graph(dot: str) -> Response:
    if request.args.get("format") == "dot":
        return Response(dot, content_type="text/vnd.graphviz; charset=UTF-8")
    return Response(to_svg(dot), content_type="image/svg+xml; charset=UTF-8")
