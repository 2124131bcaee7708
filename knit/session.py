"""The JSON calls of ``KnitClient`` over ``knit.http1``, on keep-alive connections.

``requests`` (with urllib3, idna, charset_normalizer) costs ``knit data find`` more start-up
than the rest of the command, and so does the standard library's ``http.client`` (which urllib3
wraps): ``knit.http1`` says why. ``ssl`` is imported for an https server only. Certificates are
checked with the client's SSL context: the system's CAs (OpenSSL's store, which
$SSL_CERT_FILE/$SSL_CERT_DIR may replace) and always the profile's CA; $REQUESTS_CA_BUNDLE plays
no part. No HTTP proxy is used. The errors are the client's to word: ``Unreachable`` when the
server cannot be reached, the connection breaks or its answer breaks HTTP, ``TimeoutError`` when
it does not answer in time.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlencode

from .buildinfo import __version__
from .http1 import Connection, ProtocolError, Response
from .transport import Unreachable, connect

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator

USER_AGENT = f"knit/{__version__}"


class Session:
    """Requests to one API server; idle connections are kept for the next call (a lineage walk
    asks once per node) and dropped when the server has closed them meanwhile."""

    def __init__(self, api_root: str, ssl_context: Callable[[], ssl.SSLContext], headers: dict[str, str]):
        self.api_root, self.ssl_context = api_root, ssl_context
        self.headers = {"User-Agent": USER_AGENT, "Accept": "*/*", **headers}
        self._idle: list[Connection] = []  # list.pop/append: safe across threads

    def request(self, method: str, path: str, timeout: float, params: dict | None = None, json: object = None):
        """``(status, body)`` of a request to ``path`` (below the host); ``json``: the body."""
        body, headers = None, dict(self.headers)
        if json is not None:
            import json as _json

            body, headers["Content-Type"] = _json.dumps(json, allow_nan=False).encode(), "application/json"
        conn = self._connection(timeout)
        try:
            resp = _exchange(conn, method, with_query(path, params), body, headers)
            payload = _network(resp.read)
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            self._idle.append(conn)
        return resp.status, payload

    @contextlib.contextmanager
    def stream(self, path: str, connect_timeout: float) -> Iterator[Response]:
        """A GET whose response is read as it comes, for as long as it takes (a followed log):
        only connecting has a deadline. The connection is not kept."""
        conn = self._new(connect_timeout)
        try:
            conn.settimeout(None)
            yield _exchange(conn, "GET", path, None, dict(self.headers))
        finally:
            conn.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    __del__ = close  # a client dropped unclosed closes its connections, as urllib3's pools do

    def _connection(self, timeout: float) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.idle_and_open():
                conn.settimeout(timeout)
                return conn
            conn.close()
        return self._new(timeout)

    def _new(self, timeout: float) -> Connection:
        conn = connect(self.api_root, self.ssl_context() if self.api_root.startswith("https:") else None, timeout)
        try:
            conn.connect()
        except OSError as e:  # refused, unknown host, TLS (ssl.SSLError), or no answer in time
            raise Unreachable(e) from e
        return conn


def with_query(path: str, params: dict | None) -> str:
    """``path?query`` as requests encodes ``params``: a list repeats its key, None is left out."""
    pairs = [(k, v) for k, v in (params or {}).items() if v is not None]
    query = urlencode(pairs, doseq=True)
    return f"{path}?{query}" if query else path


def _exchange(conn, method: str, path: str, body: bytes | None, headers: dict) -> Response:
    """Send a request on a connected ``conn``; the response, its body unread."""
    _network(conn.request, method, path, body, headers)
    return _network(conn.getresponse)


def chunks(resp: Response, size: int = 65536) -> Iterator[bytes]:
    """The body as it arrives (what is there, up to ``size`` bytes at a time)."""
    while chunk := _network(resp.read1, size):
        yield chunk


def _network(call, *args):
    """``call(*args)``, its network errors as ``Unreachable`` (a timeout stays ``TimeoutError``)."""
    try:
        return call(*args)
    except TimeoutError:
        raise
    except (OSError, ProtocolError) as e:
        raise Unreachable(e) from e
