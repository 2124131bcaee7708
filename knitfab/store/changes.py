"""A number that moves whenever the database may have changed: what a cache of answers keys on.

``Changes.generation(conn)`` is asked on the calling thread's connection before it reads. It is
bumped when that connection sees a commit it has not seen yet:

* ``PRAGMA data_version`` changes on a connection whenever **another** connection committed
  (another thread of this server, the engine, ``knitfab import`` in another process);
* ``total_changes`` counts the rows the connection **itself** inserted, updated or deleted
  (schema changes count none: only migrations make them, before the server serves).

So every commit is seen by the first ``generation()`` of every thread after it, and an answer
computed from a snapshot read after ``generation()`` returned ``g`` is current while the
generation is still ``g``: a commit after ``g`` was read bumps it at the next check, on any
thread, before anyone is answered from the cache. Spurious bumps (one commit seen by several
threads) only cost a cache miss.
"""

from __future__ import annotations

import sqlite3
import threading


class Changes:
    def __init__(self):
        self._lock = threading.Lock()
        self._generation = 0
        self._seen = threading.local()  # per thread: (its connection, data_version, total_changes)

    def bump(self) -> None:
        with self._lock:
            self._generation += 1

    def generation(self, conn: sqlite3.Connection) -> int:
        """The current generation, after taking in any commit ``conn`` has not seen yet. Call
        it outside a transaction, before the reads whose result is kept."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        now = (conn, version, conn.total_changes)
        if getattr(self._seen, "last", None) != now:
            self._seen.last = now
            self.bump()
        return self._generation
