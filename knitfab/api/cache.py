"""Answers of the read-only list endpoints, kept until the next commit to the database.

``GET /api/data/?tag=...`` and its like are asked again and again (dashboards, pipelines polling
for a tag) while nothing changes. Each answer is kept with the store's generation read before it
was computed (``Store.generation()``, ``store/changes.py``), and given again only while the
generation is unchanged: any commit, by this server's threads, its engine or another process,
moves it. So a kept answer is never older than the database.

Kept by request target (path and raw query string, ``?pretty`` included), least recently used
first out, at most ``max_bytes`` in all; an answer larger than an eighth of that is not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from flask import Response, g, request

from .web import services

CACHED = {"data.find", "runs.find", "plans.find"}  # endpoints that read nothing but the store


class ResponseCache:
    def __init__(self, max_bytes: int):
        self.max_bytes, self.size = max_bytes, 0
        self.entries: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: bytes, generation: int) -> bytes | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry[0] != generation:
                self.misses += 1
                return None
            self.entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: bytes, generation: int, body: bytes) -> None:
        cost = _cost(key, body)
        if cost > self.max_bytes // 8:
            return
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.size -= _cost(key, old[1])
            self.entries[key] = (generation, body)
            self.size += cost
            while self.size > self.max_bytes:
                gone, (_, gone_body) = self.entries.popitem(last=False)
                self.size -= _cost(gone, gone_body)


ENTRY_OVERHEAD = 256  # bytes of Python objects around each entry (two bytes objects, a tuple, a slot)


def _cost(key: bytes, body: bytes) -> int:
    return len(key) + len(body) + ENTRY_OVERHEAD


def from_cache() -> Response | None:
    """A ``before_request`` hook (after the token check): the kept answer, if still current."""
    cache = services().cache
    if cache is None or request.method != "GET" or request.endpoint not in CACHED:
        return None
    key = request.path.encode() + b"?" + request.query_string
    generation = services().store.generation()  # before the handler's reads: see changes.py
    body = cache.get(key, generation)
    if body is not None:
        return Response(body, content_type="application/json; charset=UTF-8")
    g.cache_slot = (key, generation)
    return None


def keep(response: Response) -> Response:
    """An ``after_request`` hook: keep a successful answer computed after ``from_cache``."""
    slot = g.pop("cache_slot", None)
    if slot is not None and response.status_code == 200 and not response.is_streamed:
        services().cache.put(*slot, response.get_data())
    return response
