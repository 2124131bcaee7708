"""Custom data import (Knitfab §10.4, adapted to directories): ``knitfab import DIR``.

Knitfab lets an administrator bind an existing volume as a Data's PVC instead of uploading it.
Here a Data is a directory under ``<data-dir>/data/``, so an administrator registers a directory
already on the server's disk (or on the data PVC) by *moving* it there: a rename, no copy and
nothing through the API. ``--copy`` copies it instead, for a directory on another filesystem.

Like an upload, an import is a run of a pseudo plan, ``knit#imported`` (output ``/imported``),
which is its upstream in lineage: it is created ``running`` with one output Data, and ends
``done`` (timestamped, tagged, nominated: plans take it at once) or, when the directory cannot
be a Data, ``failed`` with no Data left and the directory where it was. A directory may hold
regular files, directories and symlinks that stay inside it; devices, fifos and sockets are
refused, as uploads refuse them.

The pseudo plan is created on the first import (no schema change: older servers ignore it).
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

from ..errors import BadRequest
from ..status import RunStatus
from ..tags import Tag, parse_tag, user_tag
from . import data, runs
from .db import Store
from .records import DataDetail

IMPORTED = "knit#imported"
OUTPUT = "/imported"


def import_directory(store: Store, source: Path | str, tags: list[str] = (), copy: bool = False) -> DataDetail:
    """Register ``source`` as a new Data tagged ``tags``; its ``DataDetail``."""
    source = Path(source).absolute()
    parsed = [user_tag(parse_tag(t)) for t in tags]
    check_tree(source)
    run_id, knit_id = begin(store)
    try:
        staging = store.layout.staging(knit_id)
        staging.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copytree(source, staging, symlinks=True)
        else:
            _move(source, staging)
        store.layout.publish(knit_id)
    except BaseException as e:
        end(store, run_id, [], ok=False, message=f"import failed: {e}")
        raise
    end(store, run_id, parsed, ok=True)
    return data.show_data(store, knit_id)


def check_tree(root: Path) -> None:
    """A directory that can be a Data: regular files, directories and links inside it only."""
    if root.is_symlink() or not root.is_dir():
        raise BadRequest(f"{root} is not a directory", reason="cannot import")
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            mode = path.lstat().st_mode
            rel = path.relative_to(root)
            if stat.S_ISLNK(mode):
                _check_link(rel, os.readlink(path))
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise BadRequest(f"{rel} is a device, fifo or socket: a Data cannot hold it", reason="cannot import")


def _check_link(rel: Path, target: str) -> None:
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
        raise BadRequest(f"symlink {rel} points outside the directory ({target})", reason="cannot import")


def _move(source: Path, staging: Path) -> None:
    try:
        os.rename(source, staging)
    except OSError as e:
        if e.errno == 18:  # EXDEV
            raise BadRequest(
                f"{source} is on another filesystem than the data directory: import it with --copy",
                reason="cannot import",
            ) from None
        raise


# -- the pseudo plan's run (store) -----------------------------------------------------------------


def begin(store: Store) -> tuple[str, str]:
    """A running run of ``knit#imported`` and its one output Data: (runId, knitId)."""
    with store.write():
        run_id = runs.create_run(store, _imported_plan(store), {}, RunStatus.RUNNING)
        return run_id, runs.outputs_of(store, run_id)[0]


def end(store: Store, run_id: str, tags: list[Tag], ok: bool, message: str = "") -> None:
    """done, tagged and nominated; or failed, its Data dropped (the garbage collector removes
    any directory left in staging)."""
    new, exit = (RunStatus.COMPLETING, None) if ok else (RunStatus.ABORTING, (1, message))
    with store.write():
        runs.set_status(store, run_id, new, exit, only_from=frozenset({RunStatus.RUNNING}))
        (knit_id,) = runs.outputs_of(store, run_id)
        if ok:
            for tag_id in store.tag_ids(tags, create=True):
                store.execute("INSERT OR IGNORE INTO data_tag (tag_id, knit_id) VALUES (?, ?)", tag_id, knit_id)
            store.refresh_tag_ids([knit_id])
        else:
            runs.drop_outputs(store, run_id)
        runs.finish(store, run_id)


def _imported_plan(store: Store) -> str:
    row = store.one("SELECT plan_id FROM plan WHERE name = ?", IMPORTED)
    if row:
        return row[0]
    plan_id = str(uuid.uuid4())
    store.execute(
        "INSERT INTO plan (plan_id, hash, name, active) VALUES (?, ?, ?, 1)", plan_id, f"pseudo:{IMPORTED}", IMPORTED
    )
    store.execute("INSERT INTO output (plan_id, path) VALUES (?, ?)", plan_id, OUTPUT)
    return plan_id
