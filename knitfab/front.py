"""The HTTP front: cheroot's WSGI server with ``Reception`` at the door (``reception.py``).

cheroot is a production threaded WSGI server that streams request bodies (an upload never sits
in memory or in a temporary file). WSGI has no HTTP trailers, so two small extensions carry them:
request trailers (the upload's ``x-checksum-md5``) are parsed by ``_ChunkedBody`` into
``environ["knitfab.request_trailers"]``, and a handler may put response trailers into
``environ["knitfab.trailers"]`` while it streams (the download's checksum).
"""

from __future__ import annotations

import re

from cheroot import wsgi
from cheroot.server import CRLF, ChunkedRFile, HTTPConnection, HTTPRequest, KnownLengthRFile

from .errors import BadRequest
from .reception import ProbeWorkers, Reception

PIECE = 1 << 16
MAX_CHUNK_LINE = 4096  # a chunk size and its extensions
MAX_TRAILERS = 16 << 10  # the whole trailer section; Knitfab sends one x-checksum-md5
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,15}")
_MD5 = re.compile(r"[0-9a-fA-F]{32}")


class Server(wsgi.Server):
    """cheroot's WSGI server with ``Reception`` at the door (knitfab/reception.py)."""

    max_header_size = 64 << 10
    head_timeout = 10.0

    def prepare(self) -> None:
        super().prepare()
        self._connections._selector.close()  # cheroot's own manager, replaced before it ever ran
        self.probes = ProbeWorkers(self)
        self.probes.start()
        self._connections = Reception(self, self.max_header_size, self.head_timeout, self.probes)

    def stop(self) -> None:
        super().stop()
        self.probes.stop()


class _ChunkedBody(ChunkedRFile):
    """cheroot's reader of chunked bodies, reading a large chunk piece by piece (constant memory,
    whatever chunk sizes a client picks) and keeping the trailer fields. Lines are bounded (a
    chunk-size line by ``MAX_CHUNK_LINE``, the trailers by ``MAX_TRAILERS``); a bad body is a
    ``BadRequest`` that never quotes what the client sent."""

    def __init__(self, rfile, maxlen):
        super().__init__(rfile, maxlen)
        self.left = 0
        self.trailers: dict[str, str] = {}

    def _fetch(self) -> None:
        if self._in_chunk():
            piece = self.rfile.read(min(self.left, PIECE))
            self._took(len(piece))
            self.buffer += piece

    def readinto(self, buffer) -> int:
        """Up to ``len(buffer)`` bytes of the body, straight from the connection into ``buffer``
        (an upload's 1 MiB blocks: no copy); 0 at its end."""
        if self.buffer:
            data = self.read(len(buffer))
            memoryview(buffer)[: len(data)] = data
            return len(data)
        if not self._in_chunk():
            return 0
        # readinto1: _pyio's readinto, which cheroot's reader is, miscounts when it refills its buffer
        n = self.rfile.readinto1(memoryview(buffer)[: min(self.left, len(buffer))])
        self._took(n)
        return n

    def _in_chunk(self) -> bool:
        """Whether body bytes follow (reading the next chunk's size if need be); False at the end."""
        if self.closed:
            return False
        if self.left == 0:
            self.left = self._chunk_size()
            if self.left == 0:
                self.closed = True
                self._read_trailers()
                return False
        return True

    def _took(self, n: int) -> None:
        if not n:
            raise BadRequest("the request body ended in the middle of a chunk")
        self.bytes_read += n
        self.left -= n
        if self.left == 0 and self.rfile.read(2) != CRLF:
            raise BadRequest("bad chunked transfer coding: a chunk does not end with CRLF")

    def _line(self, what: str, limit: int) -> bytes:
        line = self.rfile.readline(limit + 1)
        self.bytes_read += len(line)
        if len(line) > limit:
            raise BadRequest(f"bad chunked transfer coding: the {what} is longer than {limit} bytes")
        if not line.endswith(b"\n"):
            raise BadRequest("the request body ended in the middle of a chunk")
        return line

    def _chunk_size(self) -> int:
        text = self._line("chunk-size line", MAX_CHUNK_LINE).split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(text):
            raise BadRequest("bad chunked transfer coding: a chunk size is not a hexadecimal number")
        size = int(text, 16)
        if self.maxlen and self.bytes_read + size > self.maxlen:
            raise OSError("Request Entity Too Large")
        return size

    def _read_trailers(self) -> None:
        budget = MAX_TRAILERS
        while (line := self._line("trailer section", budget)) not in (CRLF, b"\n"):
            budget -= len(line)
            name, _, value = line.decode("latin-1").partition(":")
            self.trailers[name.strip().lower()] = value.strip()
        md5 = self.trailers.get("x-checksum-md5")
        if md5 is not None and not _MD5.fullmatch(md5):
            raise BadRequest("the x-checksum-md5 trailer is not an MD5 (32 hexadecimal digits)")

    def read(self, size=None) -> bytes:
        """Up to ``size`` bytes (fewer when fewer have arrived), without re-copying a buffer."""
        if size is None or size < 0:
            return super().read(size)
        while not self.buffer and not self.closed:
            self._fetch()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


class _KnownLength(KnownLengthRFile):
    """cheroot's reader of a Content-Length body, with ``readinto`` (as ``_ChunkedBody``)."""

    def readinto(self, buffer) -> int:
        n = self.rfile.readinto1(memoryview(buffer)[: min(len(buffer), self.remaining)]) if self.remaining else 0
        self.remaining -= n
        return n


class _Request(HTTPRequest):
    def respond(self) -> None:
        if self.chunked_read:
            self.rfile = _ChunkedBody(self.conn.rfile, self.server.max_request_body_size)
        else:
            self.rfile = _KnownLength(self.conn.rfile, int(self.inheaders.get(b"Content-Length", 0)))
        gateway = self.server.gateway(self)
        gateway.respond()
        if self.ready:
            self.ensure_headers_sent()
        if self.chunked_read and not self.rfile.closed:
            self.close_connection = True  # the handler left part of the body: the connection is spent
        if self.chunked_write:
            trailers = gateway.env.get("knitfab.trailers") or {}
            fields = b"".join(f"{k}: {v}".encode("latin-1") + CRLF for k, v in trailers.items())
            self.conn.wfile.write(b"0" + CRLF + fields + CRLF)

    def send_headers(self) -> None:
        # To keep the connection, cheroot reads what is left of a Content-Length body in one read(),
        # before it answers: a 401 to a 10 GB body would hold 10 GB, or a worker for as long as a
        # slow client likes. Unless the rest has arrived already, close the connection instead.
        if getattr(self.rfile, "remaining", 0) > self.conn.rfile.buffered():
            self.close_connection = True
        super().send_headers()


class Connection(HTTPConnection):
    RequestHandlerClass = _Request


class Gateway(wsgi.Gateway_10):
    def get_environ(self) -> dict:
        env = super().get_environ()
        env["knitfab.trailers"] = {}
        env["knitfab.request_trailers"] = getattr(self.req.rfile, "trailers", {})
        return env
