"""One thread that reaps every worker the local runner started, instead of one per run.

Each worker is watched through a pidfd (Linux 5.3+): the thread polls them all at once, with a
pipe to be told of new ones, and reaps a worker (``Popen.poll``) the moment its pidfd says it
ended, then calls ``on_exit``. Starting a run thus costs no thread start (a thread's creation and
its first turn at the GIL, on the engine's thread, for every run). Where pidfds are missing, each
worker gets a waiting thread of its own, as before.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
from collections.abc import Callable

log = logging.getLogger("knitfab.local")
IDLE = 30.0  # seconds the thread waits with no worker to watch before it ends


class Reaper:
    def __init__(self, on_exit: Callable[[], Callable[[], None] | None]):
        self._on_exit = on_exit  # asked at each exit: the runner's on_exit may be set after start
        self._lock = threading.Lock()
        self._added: list[tuple[int, subprocess.Popen]] = []
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1

    def watch(self, proc: subprocess.Popen) -> None:
        """Reap ``proc`` when it ends, then call ``on_exit``."""
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfds here (or it is gone already): a thread of its own
            threading.Thread(target=self._wait, args=(proc,), daemon=True).start()
            return
        with self._lock:
            self._added.append((pidfd, proc))
            if self._thread is None:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_w, False)
                self._thread = threading.Thread(target=self._loop, name="knitfab-reaper", daemon=True)
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

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        watched: dict[int, subprocess.Popen] = {}
        idle = False
        while True:
            with self._lock:
                added, self._added = self._added, []
                if not added and not watched and idle:
                    os.close(self._wake_r)  # nothing to watch for a while: end; watch() starts a new one
                    os.close(self._wake_w)
                    self._thread = None
                    return
            for pidfd, proc in added:
                watched[pidfd] = proc
                poller.register(pidfd, select.POLLIN)
            ready = poller.poll(IDLE * 1000 if not watched else None)
            idle = not ready
            for fd, _ in ready:
                if fd == self._wake_r:
                    os.read(fd, 4096)
                    continue
                poller.unregister(fd)
                os.close(fd)
                self._reap(watched.pop(fd))

    def _reap(self, proc: subprocess.Popen) -> None:
        try:
            proc.wait()  # it has ended: this returns at once and sets returncode
            self._ended()
        except Exception:  # this thread reaps every worker: it must outlive anything
            log.exception("reaping worker %d", proc.pid)
