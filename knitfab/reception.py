"""The server's front door: no worker thread meets a client before its request head is complete.

cheroot hands a connection to a worker as soon as it is accepted (and, with TLS, after a
handshake in the accepting thread); the worker then blocks reading the request line and headers.
So one idle TLS client stalls every accept, a few slow clients hold every worker, and a header
line of any length is read into memory. ``Reception`` replaces cheroot's connection manager and,
in its one selector thread, with non-blocking sockets:

- does each TLS handshake, under the same deadline as the head;
- collects the request head (request line and headers) up to ``max_header_size`` bytes (else a
  431) within ``head_timeout`` seconds (else a 408); idle keep-alive connections are closed after
  the server's ``timeout``;
- then hands the connection to a worker, the bytes read so far put back in front of its reader
  (or answers 503 when the server's bounded queue of requests waiting for a worker is full).
  ``GET /api/healthz`` and ``/api/readyz`` go to their own two threads (``ProbeWorkers``), so
  probes answer even while streams hold every worker of the pool.

Every connection that waits for its head costs at most ``max_header_size`` + 64 KiB of memory,
and at most ``MAX_WAITING`` connections wait: past that the one that waited longest is dropped.
"""

from __future__ import annotations

import _pyio
import errno
import json
import logging
import queue
import re
import selectors
import socket
import ssl
import threading
import time
from contextlib import suppress

from cheroot.connections import ConnectionManager, prevent_socket_inheritance
from cheroot.makefile import StreamReader, StreamWriter

log = logging.getLogger("knitfab.reception")
MAX_WAITING = 1024
READ_SIZE = 1 << 16
DRAIN_SECONDS, DRAIN_BYTES = 2.0, 1 << 20  # after an error, read what the client still sends
END_OF_HEAD = b"\r\n\r\n"
_PROBE = re.compile(rb"(?:\r\n)?(?:GET|HEAD) /api/(?:healthz|readyz)/?(?:\?\S*)? HTTP/")


class PrefixedSocketIO(socket.SocketIO):
    """A socket's raw stream that first gives back bytes already read from it."""

    def __init__(self, sock: socket.socket, mode: str):
        super().__init__(sock, mode)
        self.prefix = b""

    def readinto(self, b) -> int:
        if not self.prefix:
            return super().readinto(b)
        n = min(len(b), len(self.prefix))
        b[:n] = self.prefix[:n]
        self.prefix = self.prefix[n:]
        return n


class PrefixedReader(StreamReader):
    """cheroot's socket reader over a ``PrefixedSocketIO``."""

    def __init__(self, sock: socket.socket, mode: str = "rb", bufsize: int = _pyio.DEFAULT_BUFFER_SIZE):
        _pyio.BufferedReader.__init__(self, PrefixedSocketIO(sock, mode), bufsize)
        self.bytes_read = 0

    def has_data(self) -> bool:
        return super().has_data() or bool(self.raw.prefix)

    def readline(self, size: int | None = -1) -> bytes:
        """A line (at most ``size`` bytes), cut from the buffer by one search per fill: the head's
        lines are all in it (``Reception`` read the head). _pyio's readline, which cheroot's
        reader is, peeks and reads again for every line, in Python, and may return up to twice
        ``size`` when a line spans two fills."""
        limit = -1 if size is None else size
        line = b""
        while limit < 0 or len(line) < limit:
            if self._read_pos >= len(self._read_buf) and not self.peek(1):  # one read of the socket
                break
            with self._read_lock:
                buf, pos = self._read_buf, self._read_pos
                end = buf.find(b"\n", pos) + 1 or len(buf)
                if limit >= 0:
                    end = min(end, pos + limit - len(line))
                self._read_pos = end
            self.bytes_read += end - pos
            line += buf[pos:end]
            if line.endswith(b"\n"):
                break
        return line

    def buffered(self) -> int:
        """How many bytes can be read without reading the socket."""
        return len(self._read_buf) - self._read_pos + len(self.raw.prefix)

    def unread(self, data: bytes) -> None:
        """Put ``data`` in front of what is still to read (the buffer is empty: see ``leftover``)."""
        self.raw.prefix = data + self.raw.prefix

    def leftover(self) -> bytes:
        """What was read from the socket and not yet consumed (a pipelined request), taken out."""
        parts = []
        while self.has_data():
            parts.append(self.read1(READ_SIZE))
        return b"".join(parts)


class SocketWriter(StreamWriter):
    """cheroot's socket writer, except that a large write goes to the socket as it is: cheroot's
    copies its buffer twice for every ``send()`` and then moves what is left (a 1 MiB chunk of a
    download cost many copies of itself)."""

    def __init__(self, sock: socket.socket, mode: str = "w", bufsize: int = _pyio.DEFAULT_BUFFER_SIZE):
        super().__init__(sock, mode, bufsize)
        self.sock = sock

    def write(self, data) -> int:
        if len(data) < LARGE_WRITE:
            return super().write(data)
        with self._write_lock:
            self._flush_unlocked()  # what smaller writes left, first
            view = memoryview(data)
            while view:  # send() by send(), not sendall(): the timeout is per step, not for the whole
                view = view[self.sock.send(view) :]
        self.bytes_written += len(data)
        return len(data)


LARGE_WRITE = 1 << 16


def makefile(sock: socket.socket, mode: str = "r", bufsize: int = _pyio.DEFAULT_BUFFER_SIZE):
    return PrefixedReader(sock, mode, bufsize) if "r" in mode else SocketWriter(sock, mode, bufsize)


class Waiting:
    """A connection whose request head is not complete yet."""

    def __init__(self, conn, head: bytes, deadline: float, handshaken: bool = True):
        self.conn, self.head, self.deadline, self.handshaken = conn, bytearray(head), deadline, handshaken
        self.fd = conn.socket.fileno()  # kept: a closed socket's fileno() is -1
        self.draining = 0  # bytes still to discard before closing, once an error was answered
        self.events = selectors.EVENT_READ

    def close(self) -> None:
        with suppress(OSError):
            self.conn.close()


class Reception(ConnectionManager):
    """cheroot's connection manager, completing each TLS handshake and request head first."""

    def __init__(self, server, max_header_size: int, head_timeout: float, probes: ProbeWorkers):
        super().__init__(server)
        self.max_header_size, self.head_timeout, self.probes = max_header_size, head_timeout, probes
        self.waiting: dict[int, Waiting] = {}  # by fd, oldest first
        self.lock = threading.Lock()

    # -- entries: a new connection, or one a worker is done with ---------------------------------

    def put(self, conn) -> None:
        """A worker finished a request and keeps the connection: wait for the next head."""
        conn.last_used = time.time()
        head = conn.rfile.leftover()
        waiting = Waiting(conn, head, conn.last_used + (self.head_timeout if head else self.server.timeout))
        if not self._maybe_dispatch(waiting):
            conn.socket.setblocking(False)
            self._wait(waiting)

    def _accept(self) -> None:
        try:
            sock, addr = self.server.socket.accept()
        except OSError as e:  # the client left already, or a signal: the next select tells
            if e.errno in (errno.EMFILE, errno.ENFILE) and self.waiting:  # out of descriptors
                with self.lock:
                    self._drop(next(iter(self.waiting.values())))
            return
        prevent_socket_inheritance(sock)
        sock.setblocking(False)
        tls = self.server.ssl_adapter
        if tls is not None:
            sock = tls.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        conn = self.server.ConnectionClass(self.server, sock, makefile)
        conn.remote_addr, conn.remote_port = (addr[0], addr[1]) if isinstance(addr, tuple) else ("", 0)
        conn.ssl_env = {}
        self._wait(Waiting(conn, b"", time.time() + self.head_timeout, handshaken=tls is None))

    def _wait(self, waiting: Waiting) -> None:
        with self.lock:
            if len(self.waiting) >= MAX_WAITING:
                self._drop(next(iter(self.waiting.values())))
            self.waiting[waiting.fd] = waiting
            self._selector.register(waiting.fd, waiting.events, data=waiting)

    def _drop(self, waiting: Waiting) -> None:
        """Forget ``waiting`` and close it (the caller holds the lock)."""
        if self.waiting.pop(waiting.fd, None) is not None:
            with suppress(KeyError, ValueError):
                self._selector.unregister(waiting.fd)
        waiting.close()

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self, expiration_interval: float) -> None:
        while not self._stop_requested:
            try:
                ready = list(self._selector.select(timeout=min(expiration_interval, 0.25)))
            except OSError:
                self._remove_invalid_sockets()
                continue
            for _fd, item in ready:
                if item is self.server:
                    self._accept()
                else:
                    self._progress(item)
            self._expire_waiting(time.time())

    def _expire_waiting(self, now: float) -> None:
        with self.lock:
            late = [w for w in self.waiting.values() if w.deadline < now]
            for waiting in late:
                if waiting.head.strip() and not waiting.draining:
                    self._answer(waiting, 408, "the request head did not arrive in time")
                self._drop(waiting)

    def _progress(self, waiting: Waiting) -> None:
        try:
            if waiting.draining:
                return self._drain(waiting)
            if not waiting.handshaken:
                self._handshake(waiting)
            self._read_head(waiting)
        except (ssl.SSLWantReadError, BlockingIOError):
            self._watch(waiting, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._watch(waiting, selectors.EVENT_WRITE)
        except (OSError, EOFError):  # the client left, or sent no TLS: nothing to answer
            with self.lock:
                self._drop(waiting)

    def _handshake(self, waiting: Waiting) -> None:
        sock = waiting.conn.socket
        sock.do_handshake()
        waiting.handshaken = True
        waiting.conn.ssl_env = self.server.ssl_adapter.get_environ(sock)

    def _read_head(self, waiting: Waiting) -> None:
        if self._maybe_dispatch(waiting):
            return
        while True:
            piece = waiting.conn.socket.recv(READ_SIZE)
            if not piece:
                raise EOFError
            if not waiting.head:  # the first byte after an idle keep-alive: the head's deadline starts
                waiting.deadline = min(waiting.deadline, time.time() + self.head_timeout)
            waiting.head += piece
            if self._maybe_dispatch(waiting):
                return

    def _maybe_dispatch(self, waiting: Waiting) -> bool:
        """Hand ``waiting`` to a worker if its head is complete; answer 431 if it cannot be."""
        head = waiting.head
        end = head.find(END_OF_HEAD, 0, self.max_header_size + len(END_OF_HEAD))
        if end < 0:
            if len(head) > self.max_header_size:
                self._refuse(waiting, 431, f"the request head is larger than {self.max_header_size} bytes")
                return True
            return False
        with self.lock:
            if self.waiting.pop(waiting.fd, None) is not None:
                self._selector.unregister(waiting.fd)
        conn = waiting.conn
        conn.socket.settimeout(self.server.timeout)  # blocking again, for the worker
        conn.rfile.unread(bytes(head))
        conn.last_used = time.time()
        if _PROBE.match(head):
            self.probes.put(conn)
            return True
        try:
            self.server.requests.put(conn)  # the server's queue is bounded, and never waits
        except queue.Full:
            self._refuse(waiting, 503, "the server is busy; please retry later")
        return True

    def _watch(self, waiting: Waiting, events: int) -> None:
        if waiting.events != events:
            waiting.events = events
            with self.lock:
                if waiting.fd in self.waiting:
                    self._selector.unregister(waiting.fd)
                    self._selector.register(waiting.fd, events, data=waiting)

    # -- errors -----------------------------------------------------------------------------------

    def _refuse(self, waiting: Waiting, status: int, message: str) -> None:
        """Answer an error, then read and discard for a while what the client still sends, so
        that it can read the answer (closing with unread data would reset the connection)."""
        self._answer(waiting, status, message)
        waiting.conn.socket.setblocking(False)
        waiting.head = bytearray()
        waiting.draining = DRAIN_BYTES
        waiting.deadline = time.time() + DRAIN_SECONDS
        with suppress(OSError):
            waiting.conn.socket.shutdown(socket.SHUT_WR)
        if waiting.fd not in self.waiting:
            self._wait(waiting)

    def _drain(self, waiting: Waiting) -> None:
        while waiting.draining > 0:
            piece = waiting.conn.socket.recv(READ_SIZE)
            if not piece:
                break
            waiting.draining -= len(piece)
        with self.lock:
            self._drop(waiting)

    @staticmethod
    def _answer(waiting: Waiting, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode() + b"\n"
        reason = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        log.info("%s:%s: %s", waiting.conn.remote_addr, waiting.conn.remote_port, message)
        with suppress(OSError):  # best effort: the socket is non-blocking and the answer small
            waiting.conn.socket.send(head.encode() + body)

    def close(self) -> None:
        with self.lock:
            for waiting in list(self.waiting.values()):
                self._drop(waiting)
        super().close()


class ProbeWorkers:
    """Two threads that answer only the health probes, whatever the pool is busy with."""

    def __init__(self, server, count: int = 2):
        self.server, self.queue = server, queue.Queue(maxsize=64)
        self.threads = [threading.Thread(target=self._work, name="knitfab-probe", daemon=True) for _ in range(count)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def put(self, conn) -> None:
        try:
            self.queue.put_nowait(conn)
        except queue.Full:  # a flood of probes: these ones get no answer
            conn.close()

    def stop(self) -> None:
        for _ in self.threads:
            self.queue.put(None)

    def _work(self) -> None:
        while (conn := self.queue.get()) is not None:
            keep = False
            try:
                keep = conn.communicate()
            except Exception:
                log.exception("a probe failed")
            if keep:
                self.server.put_conn(conn)
            else:
                conn.close()
