"""The data directory's layout: where Data contents, staging, workers and the database live.

A leaf module (no database): runners take their paths from here. Data contents live in
``<data-dir>/data/<knitId>/``; a run writes its outputs under ``<data-dir>/staging/<knitId>/`` and
they are moved into place when the run finishes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..ownership import open_to_readers


class Layout:
    """Where things live under the data directory; nothing is written outside it."""

    def __init__(self, root: Path | str, db: Path | str | None = None):
        self.root = Path(root).resolve()
        self.db = Path(db).resolve() if db else self.root / "knitfab.db"  # --db: SQLite on a disk of its own
        self.handout = self.root / "handout"

    def data(self, knit_id: str) -> Path:
        return self.root / "data" / knit_id

    def staging(self, knit_id: str) -> Path:
        return self.root / "staging" / knit_id

    def worker(self, run_id: str) -> Path:
        return self.root / "workers" / run_id

    def current(self, knit_id: str) -> Path:
        """Where a Data's contents are now: ``data/`` once published, ``staging/`` before."""
        final = self.data(knit_id)
        return final if final.exists() else self.staging(knit_id)

    def publish(self, knit_id: str) -> None:
        """Move a Data's contents from staging into ``data/``: a rename, so a Data directory is
        never seen half-written. Safe to repeat after a crash; a Data that wrote nothing gets an
        empty directory."""
        staging, final = self.staging(knit_id), self.data(knit_id)
        if staging.exists():
            if final.exists():
                shutil.rmtree(final)
            os.rename(staging, final)
        final.mkdir(parents=True, exist_ok=True)
        open_to_readers(final)  # any user a later run's image runs as may read it

    def create(self) -> None:
        for sub in ("data", "staging", "workers", "handout"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
