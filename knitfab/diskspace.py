"""Free disk space, and the reserve kept free for the database and the server's own files.

An upload or a run output that would take the disk holding the data directory below the
reserve is refused with ``InsufficientStorage`` (507), so the database can always commit, the
failure can be recorded and the server keeps serving::

    reserve = Reserve(layout.root, config.disk_reserve)
    reserve.check()                 # is there room above the reserve at all?
    reserve.check(extra=size)       # ... for ``size`` more bytes?
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InsufficientStorage

DEFAULT_RESERVE = 1 << 30


def free_bytes(path: Path | str) -> int:
    """Bytes an unprivileged user may still write on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def size_text(amount: int) -> str:
    """``1.5 GiB``: a byte count as people read it."""
    value, unit = float(amount), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{amount} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


class Reserve:
    """``bytes`` that must stay free on the file system holding ``path``."""

    def __init__(self, path: Path | str, bytes: int = DEFAULT_RESERVE):
        self.path = path
        self.bytes = bytes

    def room(self) -> int:
        """What may still be written above the reserve (negative when already below it)."""
        return free_bytes(self.path) - self.bytes

    def check(self, extra: int = 0) -> None:
        """Raise ``InsufficientStorage`` unless ``extra`` more bytes leave the reserve free."""
        room = self.room()
        if extra > room:
            free = size_text(room + self.bytes)
            raise InsufficientStorage(
                f"the server's disk has {free} free and keeps {size_text(self.bytes)} in reserve"
                f" (--disk-reserve): no room for {size_text(extra)} more" if extra else
                f"the server's disk has {free} free, less than its reserve of {size_text(self.bytes)}"
                " (--disk-reserve); ask the operator to free space"
            )  # fmt: skip
