"""Directories removed off the engine thread: moved into ``<data-dir>/trash/`` at once (one
rename), then deleted by a background thread.

Removing a tree costs one system call per file; the engine must not wait for it between two
runs. ``discard(path)`` renames the directory into the trash (same file system: atomic), so it
leaves its place in ``data/``, ``staging/`` or ``workers/`` at that moment and can never be
mistaken for live data, even half-deleted; a thread then removes the trash's entries one by
one and ends when the trash is empty. A ``kill -9`` in the middle leaves a half-removed entry
in the trash, never elsewhere: ``for_layout`` (the local runner asks for it when it
starts) finishes it. ``empty()`` removes everything synchronously, for tests and one-shot use.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

log = logging.getLogger("knitfab.trash")
IDLE = 30.0  # seconds the deleting thread waits for more before it ends


class Trash:
    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._more = threading.Event()  # something was discarded since the thread last looked

    def discard(self, path: Path) -> None:
        """Take ``path`` (a directory, file or link; nothing if it does not exist) away now and
        delete it in the background."""
        try:
            os.rename(path, self.folder / f"{path.name}.{uuid.uuid4().hex}")
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            shutil.rmtree(path)  # on another file system than the trash: removed here and now
            return
        self._wake()

    def pending(self) -> list[Path]:
        return sorted(self.folder.iterdir())

    def _wake(self) -> None:
        self._more.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="knitfab-trash", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        while True:
            if not self._more.wait(IDLE):
                with self._lock:  # nothing for a while: end (a discard that comes now starts a new one)
                    if not self._more.is_set():
                        self._thread = None
                        return
                continue
            self._more.clear()  # before listing: what comes in meanwhile sets it again
            try:
                entries = self.pending()
            except OSError as e:
                log.error("cannot list the trash %s (will try again): %s", self.folder, e)
                continue
            for entry in entries:
                _delete(entry)  # what cannot be removed (logged) is tried again on the next discard


def _delete(entry: Path) -> bool:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.error("cannot remove %s (will try again): %s", entry, e)
        return False
    return True


_BINS: dict[Path, Trash] = {}
_BINS_LOCK = threading.Lock()


def for_layout(layout) -> Trash:
    """The data directory's trash (one per directory in this process), with what a killed
    server left in it being removed."""
    return at(layout.root / "trash")


def at(folder: Path) -> Trash:
    """The trash in ``folder`` (one per folder in this process), for what is discarded on that
    folder's file system, with what a killed server left in it being removed."""
    with _BINS_LOCK:
        trash = _BINS.get(folder)
        if trash is None or not folder.exists():
            trash = _BINS[folder] = Trash(folder)
    if any(folder.iterdir()):
        trash._wake()
    return trash
