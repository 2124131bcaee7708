"""A small HTTP/1.1 client over ``socket``: what ``knit`` needs of the protocol, nothing more.

Why not a library: the standard library's ``http.client`` costs ~30 ms of ``knit`` start-up
through the ``email`` package it parses headers with (more than the < 100 ms target leaves), and
imports ``ssl`` even for a plain-http server; requests and urllib3 wrap ``http.client``; h11
takes ~60 ms to import here; pycurl is callback-based and would redesign the block transfers.
A plain-http connection is made with ``_socket`` (``socket``'s enums cost ~8 ms more); ``ssl``
is imported by the caller for an https server only.

Requests: a bytes body (with Content-Length) or a body the caller sends itself after the head
(``putrequest``/``putheader``/``endheaders``/``send``: a chunked upload). Responses: framed by
Content-Length, chunked (trailer fields kept in ``trailers``) or read until the server closes;
none for HEAD, 1xx, 204 and 304. A response whose framing is malformed, or whose status line or
header fields exceed the bounds below, raises ``ProtocolError``; a body shorter than its
Content-Length (or a chunked body cut short) raises ``IncompleteBody``. Nothing is read into
memory beyond the bounded head, except a body the caller asks for whole (``read()``).
"""

from __future__ import annotations

import _socket  # the C module: ``socket``'s enums and ``selectors`` cost ~8 ms of start-up

MAX_LINE = 65536  # a status line, header or trailer field
MAX_FIELDS = 100  # header fields of a response, and trailer fields
MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions
MAX_INTERIM = 16  # 1xx responses before the final one
RECV = 65536
NO_BODY = frozenset((204, 304))
EXPECTS_BODY = frozenset(("POST", "PUT", "PATCH"))


class ProtocolError(Exception):
    """The server's answer breaks HTTP/1.1 (or a bound of this client), or it closed the
    connection before answering."""


class IncompleteBody(ProtocolError):
    """The connection ended before the body did."""


class Reader:
    """Buffered reads of a socket: lines (bounded) for the framing, the body's bytes straight
    into the caller's buffer when nothing is buffered."""

    def __init__(self, sock: _socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def buffered(self) -> int:
        pending = getattr(self.sock, "pending", None)  # TLS: records decrypted but not yet read
        return len(self.buf) + (pending() if pending else 0)

    def readline(self, limit: int, what: str) -> bytes:
        """A line with its end (b"" at end of file); ``ProtocolError`` when longer than ``limit``."""
        start = 0
        while (end := self.buf.find(b"\n", start, limit)) < 0:
            if len(self.buf) >= limit:
                raise ProtocolError(f"{what} longer than {limit} bytes")
            start = len(self.buf)
            data = self.sock.recv(RECV)
            if not data:
                line, self.buf = bytes(self.buf), bytearray()
                return line
            self.buf += data
        line = bytes(self.buf[: end + 1])
        del self.buf[: end + 1]
        return line

    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes (0 at end of file), without a copy when none are buffered."""
        if self.buf:
            n = min(len(view), len(self.buf))
            view[:n] = self.buf[:n]
            del self.buf[:n]
            return n
        return self.sock.recv_into(view)

    def read1(self, size: int) -> bytes:
        if self.buf:
            data = bytes(self.buf[:size])
            del self.buf[:size]
            return data
        return self.sock.recv(min(size, 1 << 20))


class Response:
    """The answer to a request: ``status``, ``reason``, ``getheader``, the body by ``read``,
    ``read1``, ``readinto``; ``trailers`` once a chunked body is read; ``will_close`` when the
    connection cannot take another request."""

    def __init__(self, conn: Connection, method: str):
        self.conn, self.reader, self.trailers = conn, conn.reader, {}
        self.version, self.status, self.reason, self.headers = _final_head(self.reader)
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        self.will_close = "close" in tokens or (self.version == "HTTP/1.0" and "keep-alive" not in tokens)
        self.length: int | None = None  # bytes left of a Content-Length body
        self.chunk_left: int | None = None  # of the current chunk; None: at a chunk-size line
        self.chunked, self.done = False, False
        self._framing(method)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def read(self, size: int | None = -1) -> bytes:
        """The rest of the body (``size`` < 0 or None), or ``size`` bytes, fewer only at its end."""
        if size is not None and size >= 0:
            buf = bytearray(size)
            view, got = memoryview(buf), 0
            while got < size and (n := self.readinto(view[got:])):
                got += n
            return bytes(buf[:got]) if got < size else bytes(buf)
        parts = []
        while piece := self.read1(1 << 20):
            parts.append(piece)
        return b"".join(parts)

    def read1(self, size: int = 65536) -> bytes:
        """Up to ``size`` bytes of the body as they arrive (b"" at its end)."""
        if not self._ready(size):
            return b""
        data = self.reader.read1(self._cap(size))
        self._consumed(len(data))
        return data

    def readinto(self, buffer) -> int:
        """Fill the start of ``buffer`` with what arrives of the body (0 at its end): read straight
        into it, no copy of a big pull."""
        view = memoryview(buffer).cast("B")
        if not self._ready(len(view)):
            return 0
        n = self.reader.readinto(view[: self._cap(len(view))])
        self._consumed(n)
        return n

    def isclosed(self) -> bool:
        return self.done

    def close(self) -> None:
        """Done with it: a body not read to its end leaves the connection unusable, so it is closed."""
        if not self.done:
            self.done = True
            self.conn.close()

    def _framing(self, method: str) -> None:
        encoding = self.headers.get("transfer-encoding")
        lengths = self.headers.get("content-length")
        if method == "HEAD" or self.status in NO_BODY or self.status < 200:
            self.done = True
            if self.status == 101:  # the connection now speaks another protocol: never reused
                self.will_close = True
        elif encoding is not None:
            if lengths is not None:
                raise ProtocolError("both Transfer-Encoding and Content-Length")
            if encoding.strip().lower() != "chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {encoding!r}")
            self.chunked = True
        elif lengths is not None:
            self.length = _content_length(lengths)
            self.done = self.length == 0
        else:
            self.will_close = True  # the body ends where the connection does
        if self.done:
            self._finished()

    def _ready(self, size: int) -> bool:
        """Whether there are body bytes to read (reading the next chunk's size if need be)."""
        if self.done or size <= 0:
            return False
        if self.chunked and not self.chunk_left:
            self._next_chunk()
        return not self.done

    def _cap(self, size: int) -> int:
        left = self.chunk_left if self.chunked else self.length
        return size if left is None else min(size, left)

    def _consumed(self, n: int) -> None:
        if self.chunked or self.length is not None:
            if not n:
                raise IncompleteBody("the connection closed before the end of the body")
            if self.chunked:
                self.chunk_left -= n
            else:
                self.length -= n
                if not self.length:
                    self._finished()
        elif not n:
            self._finished()

    def _next_chunk(self) -> None:
        if self.chunk_left == 0 and self.reader.readline(MAX_CHUNK_LINE, "chunk end") not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk does not end with CRLF")
        line = self.reader.readline(MAX_CHUNK_LINE, "chunk-size line")
        if not line.endswith(b"\n"):
            raise IncompleteBody("the connection closed before the end of the chunked body")
        size = line.split(b";", 1)[0].strip()
        if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError(f"bad chunk size {size[:40]!r}")
        self.chunk_left = int(size, 16)
        if not self.chunk_left:
            self.trailers = _fields(self.reader, "trailer field")
            self._finished()

    def _finished(self) -> None:
        self.done = True
        if self.will_close:
            self.conn.close()


class Connection:
    """One connection to ``host:port`` (TLS with ``ssl_context`` when given), opened on first use
    and kept for the next request until ``close()``. One request at a time: read a response
    whole before the next request."""

    response_class = Response

    def __init__(self, host: str, port: int | None, timeout: float | None = 60, ssl_context=None):
        default = 443 if ssl_context is not None else 80
        self.host, self.port, self.timeout, self.ssl_context = host, port or default, timeout, ssl_context
        name = f"[{host}]" if ":" in host else host
        self.authority = name if self.port == default else f"{name}:{self.port}"
        self.sock: _socket.socket | None = None
        self.reader: Reader | None = None
        self._head: list[bytes] = []
        self.method = "GET"

    def connect(self) -> None:
        sock = tcp_connection(self.host, self.port, self.timeout)
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)  # a trailer is not held back
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock, self.reader = sock, Reader(sock)

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> None:
        """Send a request whose body (if any) is ``body``, with its Content-Length."""
        self.putrequest(method, path)
        for name, value in (headers or {}).items():
            self.putheader(name, value)
        if body is not None or method in EXPECTS_BODY:
            self.putheader("Content-Length", str(len(body or b"")))
        self.endheaders(body)

    def putrequest(self, method: str, path: str) -> None:
        """Start a request's head (``Host`` is added); ``endheaders`` sends it."""
        if not method or not path or any(c <= " " or c == "\x7f" for c in method + path):
            raise ValueError(f"space or control character in {method[:20]!r} {path[:80]!r}")
        self._head = [f"{method} {path} HTTP/1.1\r\nHost: {self.authority}\r\n".encode("latin-1")]
        self.method = method

    def putheader(self, name: str, value: str) -> None:
        _check_text(name, value)
        if not name or ":" in name or " " in name:
            raise ValueError(f"invalid header name {name!r}")
        self._head.append(f"{name}: {value}\r\n".encode("latin-1"))

    def endheaders(self, body: bytes | None = None) -> None:
        """Send the head (and ``body``, in the same write when it is small)."""
        head, self._head = b"".join(self._head) + b"\r\n", []
        if self.sock is None:
            self.connect()
        if body and len(body) <= RECV:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            if body:
                self.sock.sendall(body)

    def send(self, data) -> None:
        """Send bytes of a body (a bytes-like object: a view is sent as it is, not copied)."""
        if self.sock is None:
            raise ProtocolError("not connected: send the request's head first")
        self.sock.sendall(data)

    def getresponse(self) -> Response:
        """The response to the request sent, its head read, its body not yet."""
        if self.reader is None:
            raise ProtocolError("no request was sent")
        try:
            return self.response_class(self, self.method)
        except ProtocolError:
            self.close()  # what follows on the connection cannot be trusted
            raise

    def idle_and_open(self) -> bool:
        """Whether a kept connection can take a request: nothing left to read on it (a closed
        connection reads as end of file), as urllib3 checks a pooled connection."""
        if self.sock is None or self.reader.buffered():
            return False
        import select

        try:
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        sock, self.sock, self.reader = self.sock, None, None
        if sock is not None:
            sock.close()


def tcp_connection(host: str, port: int, timeout: float | None) -> _socket.socket:
    """``socket.create_connection`` without the ``socket`` module: the first address of ``host``
    that accepts."""
    # An ASCII name as bytes: getaddrinfo would encode a str with the idna codec (4 ms of imports).
    name = host.encode("ascii") if host.isascii() else host
    error: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error or OSError(f"no address for {host}")


def _final_head(reader: Reader) -> tuple[str, int, str, dict[str, str]]:
    """The status line and header fields of the response, past any interim (1xx) ones."""
    for _ in range(MAX_INTERIM + 1):
        version, status, reason = _status_line(reader)
        headers = _fields(reader, "header field")
        if not (100 <= status < 200) or status == 101:
            return version, status, reason, headers
    raise ProtocolError(f"more than {MAX_INTERIM} interim (1xx) responses")


def _status_line(reader: Reader) -> tuple[str, int, str]:
    line = reader.readline(MAX_LINE, "status line")
    if not line:
        raise ProtocolError("the server closed the connection without answering")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"bad status line {line[:80]!r}")
    return version, int(code), reason.strip()


def _fields(reader: Reader, what: str) -> dict[str, str]:
    """Header (or trailer) fields up to the empty line, names lower-cased; a repeated field's
    values joined with ", " (as HTTP defines them)."""
    fields: dict[str, str] = {}
    for _ in range(MAX_FIELDS + 1):
        line = reader.readline(MAX_LINE, what)
        if line in (b"\r\n", b"\n"):
            return fields
        if not line.endswith(b"\n"):
            raise IncompleteBody(f"the connection closed in the middle of a {what}")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip() or name[0] in " \t":
            raise ProtocolError(f"bad {what} {line[:80]!r}")
        name, value = name.lower(), value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    raise ProtocolError(f"more than {MAX_FIELDS} {what}s")


def _content_length(text: str) -> int:
    """Content-Length; repeated (a list) only with equal values, digits only."""
    values = {v.strip() for v in text.split(",")}
    if len(values) != 1 or not (value := values.pop()).isdigit() or not value.isascii():
        raise ProtocolError(f"bad Content-Length {text[:80]!r}")
    return int(value)


def _check_text(*parts: str) -> None:
    """No CR, LF or other control character in a header: no request splitting."""
    for part in parts:
        if any(c < " " and c != "\t" or c == "\x7f" for c in part):
            raise ValueError(f"control character in {part[:80]!r}")
