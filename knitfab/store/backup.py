"""``knitfab backup`` and ``knitfab restore``: a data directory copied while the server runs.

A backup is a folder::

    DEST/knitfab.db       the database, copied in one step by SQLite's online backup API: a
                          consistent snapshot, whatever the server writes meanwhile
    DEST/data/<knitId>/   the contents of every Data published in that snapshot
    DEST/manifest.json    written last: what is in the backup, with the SHA-256 of every file

Data directories are immutable once published, so copying them after the snapshot gives what
they held at the snapshot. Data still being made (uploads in flight, running runs) are in the
snapshot as processing, without contents; after a restore their runs fail as a run whose
worker vanished does (254), and an upload in flight fails as at any restart.

A restore builds the new data directory beside the target, checking every file against its
checksum as it copies, and renames it into place at the end: a damaged backup or a failed
restore leaves nothing behind. The next
``knitfab serve`` (or ``knitfab migrate``) upgrades an older schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path, PurePosixPath

from ..errors import KnitfabError
from .db import Store
from .layout import Layout

FORMAT = "knitfab-backup/1"
MANIFEST = "manifest.json"
DB = "knitfab.db"


class BackupError(KnitfabError):
    status = 400
    reason = "cannot back up or restore"


def backup(data_dir: Path | str, dest: Path | str) -> dict:
    """Back up a data directory (its server may be running) into ``dest``, which must be empty
    or not exist. Returns the manifest."""
    layout, dest = Layout(data_dir), Path(dest)
    if not layout.db.is_file():
        raise BackupError(f"{layout.root} is not a Knitfab data directory: no {DB}")
    _require_empty(dest)
    dest.mkdir(parents=True, exist_ok=True)
    knit_ids, schema = snapshot(layout.db, dest / DB)
    files: dict[str, dict] = {DB: _file_entry(dest / DB)}
    for knit_id in knit_ids:
        source = layout.data(knit_id)
        if not source.is_dir():
            raise BackupError(f"Data {knit_id} was deleted while it was being backed up: back up again")
        files.update(_copy_tree(source, dest, f"data/{knit_id}"))
    manifest = {"format": FORMAT, "created": time.time(), "schema_version": schema, "data": knit_ids, "files": files}
    _write_json(dest / MANIFEST, manifest)
    return manifest


def snapshot(db_path: Path, target: Path) -> tuple[list[str], int]:
    """Copy the database in one step (one read transaction: a consistent snapshot) and return
    the Data published in it and its schema version."""
    source = sqlite3.connect(db_path, timeout=60)  # only read; read-only opens of WAL files can fail
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # pages=-1: all pages in one step, under one read lock
        copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
        (schema,) = copy.execute("SELECT MAX(version) FROM schema_version").fetchone()
        published = copy.execute("SELECT knit_id FROM data WHERE timestamp IS NOT NULL ORDER BY knit_id").fetchall()
    finally:
        copy.close()
        source.close()
    return [row[0] for row in published], schema


def restore(src: Path | str, data_dir: Path | str) -> dict:
    """Restore the backup in ``src`` into ``data_dir``, which must be empty or not exist.
    The new directory is built beside it, each file checked against its checksum as it is
    copied, and renamed into place at the end; the schema is upgraded on the way."""
    src, target = Path(src), Path(data_dir).absolute()
    manifest = read_manifest(src)
    _require_empty(target)
    building = target.with_name(f".{target.name}.restoring-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        for rel, entry in manifest["files"].items():
            _place(src, building, rel, entry)
        for knit_id in manifest["data"]:
            (building / "data" / knit_id).mkdir(parents=True, exist_ok=True)  # a Data with no files
        Store(building).close()  # creates the rest of the layout and upgrades an older schema
        if target.exists():
            target.rmdir()
        os.rename(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return manifest


def read_manifest(src: Path) -> dict:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BackupError(f"{src} is not a complete Knitfab backup: {MANIFEST}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{src}/{MANIFEST} is not a {FORMAT} manifest")
    for rel in manifest["files"]:
        _safe(rel)
    return manifest


# -- files ----------------------------------------------------------------------------------------


def _copy_tree(source: Path, dest: Path, prefix: str) -> dict[str, dict]:
    """Copy a Data directory (files, symlinks as links, empty directories) and describe it."""
    entries: dict[str, dict] = {}
    for folder, dirs, names in os.walk(source):
        here = Path(folder)
        rel_dir = PurePosixPath(prefix, here.relative_to(source).as_posix())
        (dest / rel_dir).mkdir(parents=True, exist_ok=True)
        if not dirs and not names:
            entries[f"{rel_dir}/"] = {"type": "dir"}
        for name in sorted(names) + sorted(d for d in dirs if (here / d).is_symlink()):
            rel = str(rel_dir / name)
            if (here / name).is_symlink():
                os.symlink(os.readlink(here / name), dest / rel)
                entries[rel] = {"type": "link", "target": os.readlink(here / name)}
            else:
                shutil.copy2(here / name, dest / rel)
                entries[rel] = _file_entry(dest / rel)
    return entries


def _file_entry(path: Path) -> dict:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"type": "file", "size": path.stat().st_size, "sha256": digest, "mode": path.stat().st_mode & 0o7777}


def _place(src: Path, building: Path, rel: str, entry: dict) -> None:
    source, target = src / rel, building / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry["type"] == "dir":
        target.mkdir(parents=True, exist_ok=True)
    elif entry["type"] == "link":
        if not (source.is_symlink() and os.readlink(source) == entry["target"]):
            raise BackupError(f"the backup is damaged: {rel} is not the link it was")
        os.symlink(entry["target"], target)
    else:
        if source.is_symlink() or not source.is_file():
            raise BackupError(f"the backup is damaged: {rel} is missing")
        with open(source, "rb") as f, open(target, "xb") as out:
            digest = hashlib.sha256()
            while piece := f.read(1 << 20):
                digest.update(piece)
                out.write(piece)
        if digest.hexdigest() != entry["sha256"]:
            raise BackupError(f"the backup is damaged: {rel} does not match its checksum")
        os.chmod(target, entry.get("mode", 0o644) & 0o777)


def _safe(rel: str) -> None:
    """Paths in a manifest stay inside the backup and the data directory."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not (rel == DB or path.parts[:1] == ("data",)):
        raise BackupError(f"the manifest names a path outside the backup: {rel!r}")


def _require_empty(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} must be an empty directory or not exist yet")


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)
