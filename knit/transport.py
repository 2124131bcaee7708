"""Connections to the API server for the bodies ``requests`` cannot send nor read: trailers.

Knitfab moves Data as a chunked tar.gz stream followed by an ``x-checksum-md5`` trailer (the MD5
of the bytes sent), both ways (our own ends: SHA-256 in ``Content-Digest``,
``knit/digests.py``). ``send_chunked`` writes such a request; the response
(``knit.http1.Response``) keeps the trailer fields it reads in ``trailers``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .http1 import Connection, ProtocolError, Response

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable


class Unreachable(Exception):
    """The server could not be reached, or the connection to it broke (or its answer breaks
    HTTP): raised by the network calls of a ``connect(..., guarded=True)`` connection and its
    response, never for a local file's error (a full disk while pulling is the disk's, not the
    server's)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.reason = getattr(error, "reason", None) or error


def _network(method):
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (OSError, ProtocolError) as e:
            raise Unreachable(e) from e

    return guarded


class GuardedResponse(Response):
    """A ``Response`` whose reads raise ``Unreachable`` when the connection breaks."""

    read = _network(Response.read)
    readinto = _network(Response.readinto)
    read1 = _network(Response.read1)


class GuardedConnection(Connection):
    """A ``Connection`` whose network errors are ``Unreachable``."""

    connect = _network(Connection.connect)
    endheaders = _network(Connection.endheaders)
    send = _network(Connection.send)
    getresponse = _network(Connection.getresponse)
    response_class = GuardedResponse


def connect(
    url: str, ssl_context: ssl.SSLContext | None = None, timeout: float | None = 60, guarded: bool = False
) -> Connection:
    """A connection to ``url``'s host (opened by its first request); ``guarded``: its network
    errors are ``Unreachable``. ``ssl_context`` serves an https URL (the default one if None)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and ssl_context is None:
        import ssl

        ssl_context = ssl.create_default_context()
    context = ssl_context if parts.scheme == "https" else None
    return (GuardedConnection if guarded else Connection)(parts.hostname, parts.port, timeout, context)


def send_chunked(
    conn: Connection, method: str, path: str, chunks: Iterable[bytes], headers: dict[str, str]
) -> Response:
    """Send ``chunks`` as a chunked body with its checksum trailer (an archive's ``checksum``,
    else ``x-checksum-md5``); the response."""
    # An archive (knit.archive.Archive) hashes its bytes as it makes them (plain tar in a second
    # thread, while they are sent): they are hashed once, and its views are sent as they are.
    archive = hasattr(chunks, "views")
    if archive:
        checksum, hasher = chunks.checksum, None
    else:
        from .digests import MD5  # here: the API calls that share this module need no OpenSSL digest

        checksum, hasher = MD5, MD5.new()
    conn.putrequest(method, path)
    for name, value in {**headers, "Transfer-Encoding": "chunked", "Trailer": checksum.field}.items():
        conn.putheader(name, value)
    conn.endheaders()
    for chunk in chunks.views() if archive else chunks:
        if chunk:
            if hasher is not None:
                hasher.update(chunk)
            conn.send(b"%x\r\n" % len(chunk))
            conn.send(chunk)  # not joined with its framing: a copy of every MiB saved
            conn.send(b"\r\n")
    field = f"{checksum.field}: {checksum.value((chunks.hasher if archive else hasher).hexdigest())}"
    conn.send(b"0\r\n%s\r\n\r\n" % field.encode())
    return conn.getresponse()
