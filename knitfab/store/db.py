"""The metadata store: one SQLite file through peewee, and the data directory layout.

Contract:

* ``Store.write()`` opens the **outermost** ``BEGIN IMMEDIATE`` transaction. Every
  read-then-write runs inside one, so concurrent writers queue on SQLite's write lock instead of
  failing with "database is locked" halfway through. Nesting ``write()`` is a bug and raises.
* ``Store.read()`` gives a consistent snapshot for multi-query reads (WAL readers never block).
* ``all``/``one``/``execute`` run SQL on the calling thread's connection (peewee keeps one per
  thread). Domain modules (``data``, ``planstore``, ``runs``, ``nominate``) hold the queries.
* Data contents live in ``<data-dir>/data/<knitId>/``; a run writes its outputs under
  ``<data-dir>/staging/<knitId>/`` and they are moved into place when the run finishes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import ChainMap
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

from peewee import OperationalError, SqliteDatabase

from ..errors import SQLITE_BUSY, SQLITE_LOCKED, NotFound, sqlite_code
from ..tags import Tag
from .changes import Changes
from .layout import Layout
from .migrations import migrate

TAG_CACHE = 100_000  # tags of at most SHORT_TAG characters: about 40 MB at most
SHORT_TAG = 256


class Store:
    def __init__(self, data_dir: Path | str, busy_timeout: float = 60.0, db: Path | str | None = None):
        self.layout = Layout(data_dir, db)
        self.layout.create()
        self.layout.db.parent.mkdir(parents=True, exist_ok=True)
        self.db = SqliteDatabase(
            str(self.layout.db),
            timeout=busy_timeout,
            # mmap: reads take pages from the OS page cache, shared by every thread's connection,
            # instead of a pread() into each connection's own 2 MB cache (bench/api_bench.py,
            # alternated: 100 DataDetails about 20% faster; 10 and 1,000 within the noise).
            pragmas={"journal_mode": "wal", "foreign_keys": 1, "synchronous": "full", "mmap_size": 1 << 30},
            check_same_thread=False,
        )
        self.changes = Changes()
        self._tag_cache: dict[int, Tag] = {}
        self._open(busy_timeout)

    def _open(self, patience: float) -> None:
        """Connect and migrate. Turning a new file to WAL needs it to itself, which SQLite does
        not wait for: two servers starting on one new data directory retry here."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self.db.connect(reuse_if_open=True)
                migrate(self.db)
                return
            except OperationalError as e:
                self.db.close()
                if sqlite_code(e) not in (SQLITE_BUSY, SQLITE_LOCKED) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self):
        """The one outermost ``BEGIN IMMEDIATE`` transaction of a read-then-write."""
        if self.db.in_transaction() or self.db.connection().in_transaction:
            raise RuntimeError("Store.write() must be the outermost transaction")
        try:
            with self.db.atomic("IMMEDIATE"):
                yield self
        except OperationalError as e:
            # On SQLITE_FULL (a full disk) SQLite has rolled the transaction back itself, and
            # peewee's ROLLBACK fails: report the error that matters.
            first: BaseException | None = e
            while first is not None and "no transaction is active" in str(first):
                first = first.__context__
            if first is None:
                raise
            raise first from None

    def generation(self) -> int:
        """A number that differs from any earlier one once anything was committed since
        (``changes.py``); call it before the reads of an answer that is kept."""
        return self.changes.generation(self.db.connection())

    @contextmanager
    def read(self):
        """A consistent snapshot; inside a write it is simply part of that write. (Plain
        BEGIN/COMMIT on the connection: it is on the API's hot path, and has nothing to undo.)"""
        conn = self.db.connection()
        if conn.in_transaction:
            yield self
            return
        conn.execute("BEGIN DEFERRED")
        try:
            yield self
        finally:
            conn.execute("COMMIT")

    def execute(self, sql: str, *params) -> sqlite3.Cursor:
        return self.db.execute_sql(sql, params)

    # Reads go straight to the thread's sqlite3 connection: the API's hot path runs many small
    # queries, and peewee's cursor wrapping adds little but cost there.
    def all(self, sql: str, *params) -> list[tuple]:
        return self.db.connection().execute(sql, params).fetchall()

    def one(self, sql: str, *params) -> tuple | None:
        return self.db.connection().execute(sql, params).fetchone()

    def column(self, sql: str, *params) -> list:
        return [row[0] for row in self.db.connection().execute(sql, params).fetchall()]

    # -- tags ---------------------------------------------------------------------------------

    def tag_ids(self, tags: Iterable[Tag], create: bool = False) -> list[int] | None:
        """Ids of user tags; with ``create`` missing ones are added (inside ``write()``),
        without it ``None`` says some tag is unknown, so nothing can carry them all."""
        wanted = list(dict.fromkeys(tags))
        found = {
            Tag(key, value): tag_id
            for key, value, tag_id in self.all(
                "SELECT key, value, id FROM tag WHERE (key, value) IN"
                " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
                json.dumps(wanted),
            )
        }
        for tag in wanted:
            if tag not in found and not create:
                return None
            if tag not in found:
                found[tag] = self.execute("INSERT INTO tag (key, value) VALUES (?, ?)", *tag).lastrowid
        return [found[tag] for tag in wanted]

    def with_all_tags(self, tag_ids: list[int]) -> tuple[str, list[int]]:
        """A subquery (and its parameters) of the knitIds carrying every one of ``tag_ids``
        (at least one). It starts from the rarest tag and checks the others through the
        (tag, knitId) key, so its cost follows the rarest tag, not the number of Data."""
        ordered = self._rarest_first(tag_ids)
        exists = " AND EXISTS (SELECT 1 FROM data_tag x WHERE x.tag_id = ? AND x.knit_id = t0.knit_id)"
        return "SELECT t0.knit_id FROM data_tag t0 WHERE t0.tag_id = ?" + exists * (len(ordered) - 1), ordered

    def _rarest_first(self, tag_ids: list[int]) -> list[int]:
        """``tag_ids`` by how many Data carry each, rarest first. Counting is capped, and the
        cap grows tenfold while the rarest tags tie at it: the cost follows the rarest tag
        (at most ten times its size), never the number of Data."""
        if len(tag_ids) < 2:
            return list(tag_ids)
        cap = 1000
        while True:
            # Counting one past the cap tells a tag on exactly ``cap`` Data (1,000 hits) from a
            # larger one without a second, ten times larger count.
            counts = dict(self._capped_counts(tag_ids, cap + 1))
            if min(counts.values()) <= cap:
                break  # the rarest tag's count is exact, and every other is at least as large
            cap *= 10
        return sorted(tag_ids, key=counts.__getitem__)

    def _capped_counts(self, tag_ids: list[int], cap: int) -> list[tuple[int, int]]:
        return self.all(
            "SELECT value, (SELECT COUNT(*) FROM (SELECT 1 FROM data_tag WHERE tag_id = value LIMIT ?))"
            " FROM json_each(?)",
            cap, json.dumps(tag_ids),
        )  # fmt: skip

    def refresh_tag_ids(self, knit_ids: Sequence[str]) -> None:
        """Rewrite ``data.tag_ids`` of Data whose ``data_tag`` rows changed: every writer of
        ``data_tag`` calls it in the same transaction, once per change (not per row, as a
        trigger would: a request adding 10^5 tags must not rejoin them 10^5 times)."""
        self.execute(
            "UPDATE data SET tag_ids = COALESCE((SELECT group_concat(tag_id) FROM data_tag x"
            " WHERE x.knit_id = data.knit_id), '') WHERE knit_id IN (SELECT value FROM json_each(?))",
            json.dumps(list(knit_ids)),
        )

    def tags_listed(self, lists: Iterable[str]) -> dict[str, list[Tag]]:
        """The tags of ``data.tag_ids`` values, by value (Data that share their tags share it)."""
        parsed = {text: [int(i) for i in text.split(",")] if text else [] for text in set(lists)}
        known = self._tags_by_id(set(chain.from_iterable(parsed.values())))
        return {text: [known[i] for i in ids] for text, ids in parsed.items()}

    def tags_of(self, table: str, column: str, ids: Sequence) -> dict[object, list[Tag]]:
        """User tags of many rows of ``input_tag``/``output_tag`` in one query."""
        result: dict[object, list[Tag]] = {i: [] for i in ids}
        if not result:
            return result
        # A row per owner with its tag ids joined ("3,17,40"), as data.tag_ids keeps them for
        # Data: a fifth of the rows to make.
        rows = self.all(
            f"SELECT {column}, group_concat(tag_id) FROM {table}"
            f" WHERE {column} IN (SELECT value FROM json_each(?)) GROUP BY {column}",
            json.dumps(list(result)),
        )
        lists = self.tags_listed(row[1] for row in rows)
        for owner, text in rows:
            result[owner] = list(lists[text])  # a list of its own: input_points adds system tags
        return result

    def _tags_by_id(self, tag_ids: set[int]) -> Mapping[int, Tag]:
        """Tags by id. A tag row never changes nor goes, so the committed ones are kept (up to
        ``TAG_CACHE`` of them, and only short ones: a value may be 1 MiB) and each answer builds
        no Tag; ones read inside a write may yet be rolled back, and are not kept."""
        cache = self._tag_cache
        missing = [t for t in tag_ids if t not in cache]
        if not missing:
            return cache
        found = {
            tag_id: Tag(key, value)
            for tag_id, key, value in self.all(
                "SELECT id, key, value FROM tag WHERE id IN (SELECT value FROM json_each(?))", json.dumps(missing)
            )
        }
        if self.db.in_transaction():
            return ChainMap(found, cache)
        kept = {i: tag for i, tag in found.items() if len(tag.key) + len(tag.value) <= SHORT_TAG}
        if len(cache) + len(kept) > TAG_CACHE:  # a client can make any number of tags: start over
            self._tag_cache = kept  # (a new dict: other threads may be reading the old one)
            return ChainMap(found, cache)
        cache.update(kept)
        return cache if len(kept) == len(found) else ChainMap(found, cache)


def the_one(found: list, missing: str):
    """The one record a ``show_*`` query found; ``NotFound(missing)`` when there is none."""
    if not found:
        raise NotFound(missing)
    return found[0]


def json_list(items: Iterable) -> str:
    """A JSON array parameter for ``IN (SELECT value FROM json_each(?))``: one bound
    parameter however many ids, so no query hits SQLite's variable limit."""
    return json.dumps(list(items))
