"""Request helpers of the REST API: a leaf module every resource module imports.

Handlers are thin: parse the request (``body``, ``comma_list``, ``time_window``...), call one store
function, return JSON with ``reply``. Routes ignore a trailing slash, as Knitfab's middleware
does. Responses are compact JSON with a final newline, keys in Knitfab's order; ``?pretty``
indents them. This module imports no resource module and not the factory (``app.py``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from flask import Response, current_app, request

from ..errors import BadRequest
from ..runners.protocol import Runner
from ..store.data import UploadLimits
from ..store.db import Store
from ..times import parse_duration, parse_rfc3339

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
    cache: object | None = None  # cache.ResponseCache of the list endpoints; None: every answer computed


def services() -> Services:
    return current_app.extensions["knitfab"]


def store() -> Store:
    return services().store


# -- responses ------------------------------------------------------------------------------------


def reply(body: object, status: int = 200) -> Response:
    if "pretty" in request.args:
        text = json.dumps(body, ensure_ascii=False, indent=4) + "\n"
    else:
        text = compact_json(body)
    return Response(text, status=status, content_type="application/json; charset=UTF-8")


def compact_json(body: object) -> bytes | str:
    """``json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\\n"``, UTF-8, byte for
    byte (key order, non-ASCII, escapes), 20 times faster by orjson. What orjson would write
    differently goes to json: integers beyond 64 bits, non-string keys, lone surrogates,
    dataclasses and datetimes. Bodies carry no floats (orjson writes 1e16 where json writes
    1e+16, null for NaN), and no UUID or plain Enum objects (json refuses them)."""
    try:
        return orjson.dumps(body, option=_ORJSON, default=_refuse)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n"


_ORJSON = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _refuse(value: object) -> object:
    raise TypeError(type(value).__name__)


# -- requests -------------------------------------------------------------------------------------


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
