"""One thread that reaps every worker the local runner started, instead of one per run.

Each worker is watched through a pidfd (Linux 5.3+): the thread polls them all at once, with a
pipe to be told of new ones, and reaps a worker (``Popen.poll``) the moment its pidfd says it
ended, then calls ``on_exit``. Starting a run thus costs no thread start (a thread's creation and
its first turn at the GIL, on the engine's thread, for every run). Where pidfds are missing, each
worker gets a waiting thread of its own, as before. The same thread reads what a worker's sandbox
says when it exists (``watch_info``: see ``gate``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable

log = logging.getLogger("knitfab.local")
IDLE = 30.0  # seconds the thread waits with nothing to watch before it ends
Handler = Callable[[int], bool]  # called when its fd is readable; True: done with it (it is closed)


class Reaper:
    def __init__(self, on_exit: Callable[[], Callable[[], None] | None]):
        self._on_exit = on_exit  # asked at each exit: the runner's on_exit may be set after start
        self._lock = threading.Lock()
        self._added: list[tuple[int, Handler]] = []
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1

    def watch(self, proc: subprocess.Popen, also: Handler | None = None) -> None:
        """Reap ``proc`` when it ends, then call ``on_exit``; stop watching ``also`` (what
        ``watch_info`` returned for it) then, whatever it said."""
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfds here (or it is gone already): a thread of its own
            threading.Thread(target=self._wait, args=(proc,), daemon=True).start()
            return
        self._add(pidfd, lambda fd: self._reap(proc, also))

    def watch_info(self, fd: int, on_pid: Callable[[int | None], None], parse: Callable[[bytes], int | None]):
        """Read ``fd`` until ``parse`` finds a pid in what came (or it ends: None), then ``on_pid``."""
        got = bytearray()

        def readable(fd: int) -> bool:
            chunk = os.read(fd, 4096)
            got.extend(chunk)
            pid = parse(bytes(got))
            if pid is None and chunk:
                return False
            on_pid(pid)
            return True

        self._add(fd, readable)
        return readable

    def _add(self, fd: int, handler: Handler) -> None:
        with self._lock:
            self._added.append((fd, handler))
            if self._thread is None:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_w, False)
                self._thread = threading.Thread(target=self._run, name="knitfab-reaper", daemon=True)
                self._thread.start()
            else:
                try:
                    os.write(self._wake_w, b"x")
                except BlockingIOError:
                    pass  # the pipe is full of wake-ups the thread has yet to read: it will look

    def _wait(self, proc: subprocess.Popen) -> None:
        proc.wait()
        self._ended()

    def _ended(self) -> None:
        callback = self._on_exit()
        if callback:
            callback()

    def _run(self) -> None:
        """The loop, started over with what it watched should anything in it fail: a dead
        reaper would leave every later worker unreaped, and their runs running forever."""
        while True:
            try:
                return self._loop()
            except Exception:
                log.exception("the reaper failed: it starts over")
                with self._lock:
                    self._added = [*getattr(self, "_watched", {}).items(), *self._added]
                time.sleep(0.1)  # a failure that repeats must not spin

    def _loop(self) -> None:
        self._poller = poller = select.poll()  # these two: only this thread's
        poller.register(self._wake_r, select.POLLIN)
        self._watched = watched = {}
        idle = False
        while True:
            with self._lock:
                added, self._added = self._added, []
                if not added and not watched and idle:
                    os.close(self._wake_r)  # nothing to watch for a while: end; the next watch starts one
                    os.close(self._wake_w)
                    self._thread = None
                    return
            for fd, handler in added:
                watched[fd] = handler
                poller.register(fd, select.POLLIN)
            ready = poller.poll(IDLE * 1000 if not watched else None)
            idle = not ready
            for fd, _ in ready:
                if fd == self._wake_r:
                    os.read(fd, 4096)
                elif fd in watched and self._handle(fd, watched[fd]):
                    self._forget(fd)

    def _forget(self, fd: int) -> None:
        del self._watched[fd]
        with contextlib.suppress(KeyError, OSError):
            self._poller.unregister(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _forget_handler(self, handler: Handler | None) -> None:
        """Stop watching ``handler``'s fd if it still does (by identity: fd numbers are reused)."""
        for fd, watching in list(self._watched.items()):
            if watching is handler:
                self._forget(fd)

    def _handle(self, fd: int, handler: Handler) -> bool:
        try:
            return handler(fd)
        except Exception:  # this thread reaps every worker: it must outlive anything
            log.exception("watching fd %d of a worker", fd)
            return True

    def _reap(self, proc: subprocess.Popen, also: Handler | None) -> bool:
        proc.wait()  # it has ended: this returns at once and sets returncode
        if also is not None:
            self._forget_handler(also)
        self._ended()
        return True
