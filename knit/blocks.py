"""Big reused buffers whose checksum a second thread computes while they are sent or written.

An MD5 of 1 GiB costs about 1.8 s of CPU here (a SHA-256 0.8 s: ``knit/digests.py``), as much as
the rest of a transfer. hashlib lets
go of the GIL on buffers of more than 2 KiB, so a thread of its own hashes each block while the
caller sends it or writes it to disk. Blocks come from a small pool and return to it once hashed
(in order): ``take()`` never hands out a block the hasher still reads. A block a caller holds is
its own until it takes the next one.

Both ends use it: ``pack`` fills blocks with the archive (``knit/archive.py``), ``Blocks`` reads a
body into them for ``unpack`` (``knit/unpack.py``).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import BinaryIO

BLOCK = 1 << 20
POOL = 3  # one being hashed, one being used, one to spare; at most 3 MiB per transfer


class HashPool:
    """A pool of ``count`` blocks of ``size`` bytes and the thread hashing them into ``hasher``
    (a hashlib object: MD5 unless given); ``close()`` it (``hexdigest()`` does) so that the thread ends."""

    def __init__(self, size: int = BLOCK, count: int = POOL, hasher=None):
        self.hasher = hasher if hasher is not None else hashlib.md5()
        self.size, self.left = size, count  # blocks are made when needed: a small body takes one
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self.jobs: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def take(self) -> bytearray:
        """A block that is hashed already (or never was), waiting for the hasher if need be."""
        try:
            return self.free.get_nowait()
        except queue.Empty:
            if not self.left:
                return self.free.get()
            self.left -= 1
            return bytearray(self.size)

    def hash(self, block: bytearray, length: int) -> None:
        """Hash the first ``length`` bytes of ``block`` (after those given before); the block
        returns to the pool once hashed. The caller may still read it until its next ``take()``."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="knit-hash", daemon=True)
            self.thread.start()
        self.jobs.put((block, length))

    def hexdigest(self) -> str:
        """The digest of everything given to ``hash()``, once the hasher is through."""
        self.close()
        return self.hasher.hexdigest()

    def close(self) -> None:
        if self.thread is not None:
            self.jobs.put(None)
            self.thread.join()
            self.thread = None

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            block, length = job
            self.hasher.update(memoryview(block)[:length])
            self.free.put(block)


class Blocks:
    """A body read from ``raw`` in blocks of a ``HashPool`` (``readinto`` when ``raw`` has it: no
    copy), its checksum computed on the side. ``read1`` gives a view into the current block, valid
    until the next read; ``read`` gives bytes. ``close()`` ends the hashing thread."""

    def __init__(self, raw: BinaryIO, pool: HashPool | None = None):
        self.raw = raw
        self.pool = pool or HashPool()
        self.view = memoryview(b"")
        self.eof = False

    def read1(self, size: int) -> memoryview:
        """Up to ``size`` bytes (at least one unless the body ended)."""
        if not self.view and not self.eof:
            self._fill()
        piece, self.view = self.view[:size], self.view[size:]
        return piece

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, fewer only where the body ends."""
        return read_exactly(self.read1, size)

    def hexdigest(self) -> str:
        return self.pool.hexdigest()

    def close(self) -> None:
        self.pool.close()

    def _fill(self) -> None:
        block = self.pool.take()
        length = _fill(self.raw, block)
        self.eof = length == 0
        if length:
            self.pool.hash(block, length)
        else:
            self.pool.free.put(block)
        self.view = memoryview(block)[:length]


def _fill(raw: BinaryIO, block: bytearray) -> int:
    """Read into ``block`` until it is full or the body ends: few big blocks, whatever size the
    pieces come in."""
    view, filled = memoryview(block), 0
    readinto = getattr(raw, "readinto", None)
    while filled < len(block):
        if readinto is not None:
            n = readinto(view[filled:])
        else:
            data = raw.read(len(block) - filled)
            n = len(data)
            view[filled : filled + n] = data
        if not n:
            break
        filled += n
    return filled


def read_exactly(read1, size: int) -> bytes:
    """``size`` bytes from a ``read1`` that gives up to what it is asked; fewer only at the end."""
    first = read1(size)
    if len(first) == size or not first:
        return bytes(first)
    parts, got = [bytes(first)], len(first)
    while got < size and (piece := read1(size - got)):
        parts.append(bytes(piece))
        got += len(piece)
    return b"".join(parts)
