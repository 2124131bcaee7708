"""Worker logs copied into the log Data as they are written, and the rest fetched at the end.

The kubelet keeps a container's log in files it rotates (10 MiB by default with containerd): a log
read once at the end loses its start. So while a worker runs, a ``LogFollower`` thread of the
server follows its log (``follow``, ``timestamps``) and appends each line, without its timestamp,
to the log Data's file ``log``. When the stream breaks (an API server restart, a timeout, a 5xx)
it reconnects from the last line's time (``sinceSeconds``: the Python client has no
``sinceTime``) and skips the lines it has already written, by their nanosecond timestamps.

Where it is in the log is kept beside the run (``Layout.worker(runId)/log.position``), so a
restarted server carries on where the last one stopped instead of writing the log twice.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from .k8sstatus import main_state

log = logging.getLogger("knitfab.k8s")
CONTAINER = "main"
SKEW = 10  # seconds more than needed when resuming: the node's clock may be ahead of the server's


@dataclass
class Position:
    """The last line written (its timestamp in ns, and how many lines had that timestamp) and the
    log file's size after it."""

    ns: int = 0
    same: int = 0
    size: int = 0

    @classmethod
    def load(cls, path: Path) -> Position:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        tmp.replace(path)


def timestamp_ns(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 timestamp with up to 9 decimals, as the kubelet
    writes them (``2024-05-01T10:00:00.123456789Z``); None when it is not one."""
    try:
        seconds, _, fraction = text.rstrip("Z").partition(".")
        whole = datetime.fromisoformat(seconds + "+00:00").timestamp()
        return int(whole) * 10**9 + int((fraction or "0").ljust(9, "0")[:9])
    except ValueError:
        return None


class LogCopy:
    """Appends timestamped log lines to ``path``, each at most once across reconnects and restarts."""

    def __init__(self, path: Path, position_path: Path):
        self.path = path
        self.position_path = position_path
        self.position = Position.load(position_path)
        self._pending = b""
        self._seen = 0  # lines at the position's timestamp seen again in this stream
        with open(path, "ab") as f:
            if f.tell() < self.position.size:  # not this file's position (a new attempt): start afresh
                self.position = Position()
            f.truncate(self.position.size)  # drop what was written after the last saved position

    def since_seconds(self, now: float) -> int | None:
        """``sinceSeconds`` that reaches back to the last line written (None: from the start)."""
        if not self.position.ns:
            return None
        return max(1, math.ceil(now - self.position.ns / 1e9) + SKEW)

    def new_stream(self) -> None:
        self._pending, self._seen = b"", 0

    def feed(self, chunks: Iterable[bytes], flush: bool) -> None:
        """Write the complete lines of ``chunks``; with ``flush`` (the log ended), the last,
        unterminated one too."""
        for chunk in chunks:
            self._write(self._lines(chunk))
        if flush and self._pending:
            rest, self._pending = self._pending, b""
            self._write([rest])

    def _lines(self, chunk: bytes) -> list[bytes]:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        return [line + b"\n" for line in lines]

    def _write(self, lines: list[bytes]) -> None:
        out = [text for text in map(self._fresh, lines) if text is not None]
        if not out:
            return
        with open(self.path, "ab") as f:
            f.write(b"".join(out))
            f.flush()
            os.fsync(f.fileno())
            self.position.size = f.tell()
        self.position.save(self.position_path)

    def _fresh(self, line: bytes) -> bytes | None:
        """The line without its timestamp, or None when it was written before."""
        stamp, _, text = line.partition(b" ")
        ns = timestamp_ns(stamp.decode("ascii", "replace"))
        if ns is None:
            return line  # not timestamped (should not happen): keep it as it is
        if ns < self.position.ns:
            return None
        if ns == self.position.ns:
            self._seen += 1
            if self._seen <= self.position.same:
                return None
            self.position.same += 1
        else:
            self.position.ns, self.position.same, self._seen = ns, 1, 1
        return text


class LogFollower(threading.Thread):
    """Follows the ``main`` container of one pod until ``ended()`` says it has ended and the log
    has been read to its end, or ``stop()``.

    ``open_log(since_seconds, follow)`` returns the streaming response of the pod's log (or None
    when it has none: the pod is gone); errors are retried after ``retry`` seconds."""

    def __init__(
        self,
        copy: LogCopy,
        open_log: Callable[[int | None, bool], object],
        ended: Callable[[], bool],
        clock: Callable[[], float],
        retry: float = 1.0,
    ):
        super().__init__(daemon=True, name="knitfab-log")
        self.copy = copy
        self.open_log = open_log
        self.ended = ended
        self.clock = clock
        self.retry = retry
        self.complete = threading.Event()  # the whole log is in the file
        self.error: str | None = None  # the last failure, for the log's end
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.is_set():
            over = self.ended()  # asked before reading: what the stream then shows is all there is
            if self.read(follow=not over) and over:
                self.complete.set()
                return
            self._halt.wait(self.retry)

    def read(self, follow: bool) -> bool:
        """Read the log from where the file stops; True when the stream ended normally."""
        try:
            response = self.open_log(self.copy.since_seconds(self.clock()), follow)
            if response is None:
                return True
            self.copy.new_stream()
            with response:
                self.copy.feed(self._chunks(response), flush=not follow)
            return not self._halt.is_set()
        except Exception as e:  # a broken stream, a timeout, a 5xx: try again from the last line
            self.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.info("log of %s: %s (retrying)", self.copy.path.parent.name, self.error)
            return False

    def _chunks(self, response):
        for chunk in response.stream(65536):
            yield chunk
            if self._halt.is_set():
                return


class WorkerLogs:
    """The log followers of a runner's workers, one per run, and the end of each log.

    ``cluster`` gives ``open_log(pod, since_seconds, follow)``, ``pods_listed(runId)`` (its last
    snapshot) and ``status(job)``; ``wait`` bounds how long finishing a run keeps trying to fetch
    the rest of its log."""

    def __init__(self, cluster, layout, clock: Callable[[], float], poll: float, wait: float):
        self.cluster = cluster
        self.layout = layout
        self.clock = clock
        self.poll = poll
        self.wait = wait
        self.followers: dict[str, LogFollower] = {}
        self._failing: dict[str, float] = {}  # runId -> when fetching the rest of its log first failed
        self._lock = threading.Lock()

    def follow(self, job, pod: str) -> None:
        """Start following the pod's log into the log Data, once."""
        with self._lock:
            if not job.log or job.run_id in self.followers:
                return
            follower = LogFollower(
                self._copy(job), partial(self.cluster.open_log, pod), partial(self._pod_ended, job.run_id, pod),
                self.clock, retry=self.poll,
            )  # fmt: skip
            self.followers[job.run_id] = follower
        follower.start()

    def settle(self, job) -> None:
        """A worker that has ended: let its follower write the last lines (briefly)."""
        follower = self.followers.get(job.run_id)
        if follower and follower.ended():
            follower.join(2 * self.poll + 1)

    def ended(self, job, status) -> bool:
        """Whether the log is all written: its follower is done, or the worker is not running."""
        follower = self.followers.get(job.run_id)
        if follower is not None:
            return not follower.is_alive()
        return status(job).state not in ("starting", "running")  # a status that runs starts the follower

    def complete(self, job, pod) -> None:
        """Let the follower read the log to its end (or read what it missed), for a bounded time:
        past ``wait`` seconds of failures, the run finishes with the log it has."""
        follower = self.followers.get(job.run_id)
        if follower:
            follower.join(2 * self.poll + 1)
            if follower.complete.is_set():
                return
            follower.stop()
            follower.join(10)
        if pod is None:
            return  # gone with its log: what the follower wrote is all there is
        catch_up = LogFollower(self._copy(job), partial(self.cluster.open_log, pod.metadata.name), bool, self.clock)
        if catch_up.read(follow=False):
            return
        first = self._failing.setdefault(job.run_id, self.clock())
        if self.clock() - first < self.wait:
            raise RuntimeError(f"the log of run {job.run_id} cannot be read yet ({catch_up.error}): trying again")
        log.warning("run %s finishes without the rest of its log: %s", job.run_id, catch_up.error)

    def forget(self, job) -> None:
        follower = self.followers.pop(job.run_id, None)
        if follower:
            follower.stop()
        self._failing.pop(job.run_id, None)
        (self.layout.worker(job.run_id) / "log.position").unlink(missing_ok=True)

    def _copy(self, job) -> LogCopy:
        return LogCopy(self.layout.staging(job.log) / "log", self.layout.worker(job.run_id) / "log.position")

    def _pod_ended(self, run_id: str, pod: str) -> bool:
        """Whether the last snapshot shows the pod gone or its ``main`` container ended."""
        found = next((p for p in self.cluster.pods_listed(run_id) if p.metadata.name == pod), None)
        state = main_state(found) if found else None
        return found is None or bool(state and state.terminated)
