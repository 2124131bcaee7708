"""HTTP bodies with trailers, which ``requests`` cannot send nor read.

Knitfab moves Data as a chunked tar.gz stream followed by an ``x-checksum-md5`` trailer (the
MD5 of the bytes sent), both ways. ``send_chunked`` writes such a request with
``http.client``; ``TrailerResponse`` reads a response and keeps its trailer fields, which
``http.client`` would otherwise read and throw away.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit


class TrailerResponse(http.client.HTTPResponse):
    """An ``HTTPResponse`` whose ``trailers`` hold the trailer fields once the body is read."""

    trailers: dict[str, str]

    def _read_and_discard_trailer(self) -> None:
        # http.client's hook for the end of a chunked body: keep the fields instead of dropping them.
        self.trailers = {}
        while True:
            line = self.fp.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                return
            name, _, value = line.decode("latin-1").partition(":")
            self.trailers[name.strip().lower()] = value.strip()


class Unreachable(Exception):
    """The server could not be reached, or the connection to it broke: raised by the network
    calls of a ``connect(..., guarded=True)`` connection and its response, never for a local
    file's error (a full disk while pulling is the disk's, not the server's)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.reason = getattr(error, "reason", None) or error


def _network(method):
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(e) from e

    return guarded


class GuardedResponse(TrailerResponse):
    """A ``TrailerResponse`` whose reads raise ``Unreachable`` when the connection breaks."""

    read = _network(TrailerResponse.read)
    readinto = _network(TrailerResponse.readinto)
    read1 = _network(TrailerResponse.read1)
    readline = _network(TrailerResponse.readline)


def _guarded(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
    names = ("connect", "putrequest", "putheader", "endheaders", "send", "getresponse")
    return type(f"Guarded{base.__name__}", (base,), {name: _network(getattr(base, name)) for name in names})


GUARDED = {http.client.HTTPConnection: _guarded(http.client.HTTPConnection)}
GUARDED[http.client.HTTPSConnection] = _guarded(http.client.HTTPSConnection)


def connect(
    url: str, ssl_context: ssl.SSLContext | None = None, timeout: float = 60, guarded: bool = False
) -> http.client.HTTPConnection:
    """A connection to ``url``'s host; ``guarded``: its network errors are ``Unreachable``."""
    parts = urlsplit(url)
    base = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kind = GUARDED[base] if guarded else base
    extra = {"context": ssl_context} if parts.scheme == "https" else {}
    conn = kind(parts.hostname, parts.port, timeout=timeout, **extra)
    conn.response_class = GuardedResponse if guarded else TrailerResponse
    return conn


def send_chunked(
    conn: http.client.HTTPConnection, method: str, path: str, chunks: Iterable[bytes], headers: dict[str, str]
) -> TrailerResponse:
    """Send ``chunks`` as a chunked body with the ``x-checksum-md5`` trailer; the response."""
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in {**headers, "Transfer-Encoding": "chunked", "Trailer": "x-checksum-md5"}.items():
        conn.putheader(name, value)
    conn.endheaders()
    # An archive (knit.archive.Archive) hashes its bytes as it makes them (plain tar in a second
    # thread, while they are sent): they are hashed once, and its views are sent as they are.
    archive = hasattr(chunks, "views")
    md5 = None
    if not archive:
        import hashlib  # here: the API calls that share this module need no OpenSSL digest

        md5 = hashlib.md5()
    for chunk in chunks.views() if archive else chunks:
        if chunk:
            if md5 is not None:
                md5.update(chunk)
            conn.send(b"%x\r\n" % len(chunk))
            conn.send(chunk)  # not joined with its framing: a copy of every MiB saved
            conn.send(b"\r\n")
    digest = (chunks.md5 if archive else md5).hexdigest()
    conn.send(b"0\r\nx-checksum-md5: %s\r\n\r\n" % digest.encode())
    return conn.getresponse()
