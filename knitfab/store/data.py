"""Data in the store: find, show, tag changes and uploads (spec §3 D1–D4, §6.6, §4.1).

Public functions open their own transaction and return records (``records.py``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from knit import archive
from knit.digests import MD5, Checksum

from ..diskspace import DEFAULT_RESERVE, Reserve, size_text
from ..errors import BadRequest, KnitfabError, NotFound, PayloadTooLarge, disk_full
from ..paging import WHOLE, Page
from ..status import PROCESSING, RunStatus
from ..tags import (
    KEY_ID,
    KEY_TIMESTAMP,
    KEY_TRANSIENT,
    TRANSIENT_FAILED,
    TRANSIENT_PROCESSING,
    Tag,
    system_tags,
    user_tag,
)
from ..times import parse_rfc3339
from . import nominate, runs
from .db import Store, json_list, the_one
from .plans import UPLOADED, input_points, output_points, plan_summaries
from .records import DataDetail, PlanPoint, RunPoint

log = logging.getLogger("knitfab.upload")
_INDEX_ORDER = " ORDER BY d.timestamp NULLS LAST, d.knit_id"
_PROCESSING_SQL = ",".join(f"'{s.value}'" for s in PROCESSING)


def show_data(store: Store, knit_id: str) -> DataDetail:
    with store.read():
        return the_one(data_details(store, [knit_id]), f"data {knit_id} is not found")


def require(store: Store, knit_id: str) -> None:
    """A 404 for an unknown knitId, without building its DataDetail."""
    if store.one("SELECT 1 FROM data WHERE knit_id = ?", knit_id) is None:
        raise NotFound(f"data {knit_id} is not found")


def find_data(
    store: Store, tags: Iterable[Tag] = (), since: int | None = None, until: int | None = None, page: Page = WHOLE
) -> list[DataDetail]:
    """``GET /api/data``: Data carrying every tag (system tags too), whose time (its
    ``knit#timestamp``, else its run's ``updatedAt``) is in [since, until). Ordered by
    timestamp, untimestamped Data last, then knitId; ``page`` of that order."""
    with store.read():
        return _details(store, _find(store, tags, since, until, page))


def find_knit_ids(
    store: Store, tags: Iterable[Tag] = (), since: int | None = None, until: int | None = None
) -> list[str]:
    """The knitIds ``find_data`` describes, in its order."""
    with store.read():
        return [row[0] for row in _find(store, tags, since, until)]


def _find(store: Store, tags: Iterable[Tag], since: int | None, until: int | None, page: Page = WHOLE) -> list[tuple]:
    query = _DataQuery(store)
    for tag in tags:
        query.require(tag)
    if since is not None:
        query.where("COALESCE(d.timestamp, r.updated_at) >= ?", since)
    if until is not None:
        query.where("COALESCE(d.timestamp, r.updated_at) < ?", until)
    return query.rows(page)


class _DataQuery:
    """Builds the D1 query: user tags through the tag index, system tags as columns."""

    def __init__(self, store: Store):
        self.store = store
        self.tags: list[Tag] = []
        self.statuses: list[str] = []
        self.conditions: list[str] = []
        self.params: list = []
        self.empty = False

    def where(self, condition: str, *params) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def require(self, tag: Tag) -> None:
        if not tag.is_system:
            self.tags.append(tag)
        elif tag.key == KEY_ID:
            self.where("d.knit_id = ?", tag.value)
        elif tag.key == KEY_TIMESTAMP:
            self.where("d.timestamp = ?", parse_rfc3339(tag.value))
        elif tag.key == KEY_TRANSIENT and tag.value == TRANSIENT_PROCESSING:
            self.statuses.append(_PROCESSING_SQL)
        elif tag.key == KEY_TRANSIENT and tag.value == TRANSIENT_FAILED:
            self.statuses.append("'failed', 'invalidated'")
        else:
            self.empty = True  # an unknown system tag: nothing carries it, as in Knitfab

    def rows(self, page: Page = WHOLE) -> list[tuple]:
        """Rows of ``_COLUMNS`` of the Data found, in Knitfab's order."""
        tag_ids = self.store.tag_ids(self.tags)
        if self.empty or tag_ids is None:
            return []
        # With user tags the query starts from the rarest tag, so the status column is hidden
        # from the planner ("+"); without them, the status index is the way in.
        status = "+r.status" if tag_ids else "r.status"
        for statuses in self.statuses:
            self.where(f"{status} IN ({statuses})")
        if tag_ids:
            subquery, params = self.store.with_all_tags(tag_ids)
            self.where(f"d.knit_id IN ({subquery})", *params)
        where = " WHERE " + " AND ".join(self.conditions) if self.conditions else ""
        order = " ORDER BY d.timestamp IS NULL, d.timestamp, d.knit_id"
        if page != WHOLE:  # the same order in the words that let SQLite walk data_by_timestamp
            order = " ORDER BY d.timestamp DESC NULLS FIRST, d.knit_id DESC" if page.desc else _INDEX_ORDER
        limit, bounds = page.sql()
        sql = f"SELECT {_COLUMNS} FROM data d JOIN run r ON r.run_id = d.run_id{where}{order}{limit}"
        return self.store.all(sql, *self.params, *bounds)


def change_tags(
    store: Store, knit_id: str, add: list[Tag] = (), remove: list[Tag] = (), remove_key: list[str] = ()
) -> DataDetail:
    """Remove exact tags, then remove by key, then add (so ``remove k:v, add k:v`` keeps it),
    then re-nominate the Data (§6.6)."""
    for tag in [*add, *remove]:
        user_tag(tag)
    for key in remove_key:
        user_tag(Tag(key, ""))
    with store.write():
        if not store.one("SELECT 1 FROM data WHERE knit_id = ?", knit_id):
            raise NotFound(f"data {knit_id} is not found", reason="correspontind data is missing")
        _remove_tags(store, knit_id, remove, remove_key)
        for tag_id in store.tag_ids(add, create=True):
            store.execute("INSERT OR IGNORE INTO data_tag (tag_id, knit_id) VALUES (?, ?)", tag_id, knit_id)
        store.refresh_tag_ids([knit_id])
        nominate.nominate_data(store, knit_id)
    return show_data(store, knit_id)


def _remove_tags(store: Store, knit_id: str, remove: list[Tag], remove_key: list[str]) -> None:
    for tag in remove:
        store.execute(
            "DELETE FROM data_tag WHERE knit_id = ? AND tag_id = (SELECT id FROM tag WHERE key = ? AND value = ?)",
            knit_id, tag.key, tag.value,
        )  # fmt: skip
    for key in remove_key:
        store.execute(
            "DELETE FROM data_tag WHERE knit_id = ? AND tag_id IN (SELECT id FROM tag WHERE key = ?)",
            knit_id, key.strip(),
        )  # fmt: skip


# -- uploads (spec §4.1) ------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may take: at most ``max_size`` bytes (None: whatever fits above the
    reserve), and never the disk's last ``reserve`` bytes."""

    max_size: int | None = None
    reserve: int = DEFAULT_RESERVE


def receive_upload(
    store: Store,
    stream: BinaryIO,
    compressed: bool,
    limits: UploadLimits = UploadLimits(),
    length: int | None = None,
    claimed: Callable[[], str | None] = lambda: None,
    checksum: Checksum = MD5,
) -> DataDetail:
    """``POST /api/data``: the whole life of an upload, as one pseudo run of ``knit#uploaded``.

    The archive is unpacked into staging while it arrives (limits checked as it grows), then
    checked against its declared ``length`` and the hex digest of the ``checksum`` the client
    claims (asked once the body is read: it may come in a trailer), and published as one
    rename; the run is then done. On any failure the staging directory goes and the run fails
    with the reason, so nothing partial is ever seen; the error is raised again
    (``ArchiveError`` for a bad archive)."""
    reserve = Reserve(store.layout.root, limits.reserve)
    reserve.check()  # a full disk refuses before anything is recorded
    run_id, knit_id = begin_upload(store)
    staging = store.layout.staging(knit_id)
    received = [0]
    body = archive.CountingReader(stream, lambda n: received.__setitem__(0, received[0] + n))
    try:
        staging.mkdir(parents=True)
        digest = archive.unpack(body, staging, compressed, _Room(limits, reserve), checksum)
        _check_body(received[0], length, checksum.label, digest, claimed())
        store.layout.publish(knit_id)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        error = _as_error(e)
        log.warning("upload %s failed: %s", knit_id, _message(error))
        end_upload(store, run_id, ok=False, message=_message(error).replace("\n", ": "))
        raise error from None
    end_upload(store, run_id, ok=True)
    return show_data(store, knit_id)


class _Room:
    """The check ``archive.unpack`` asks as a Data grows: the size limit on every entry, the
    disk (one ``statvfs``) once the Data has grown by ``EVERY`` bytes or for a big entry."""

    EVERY = 4 << 20

    def __init__(self, limits: UploadLimits, reserve: Reserve):
        self.limit, self.reserve = limits.max_size, reserve
        self.checked = 0

    def __call__(self, total: int, coming: int) -> None:
        if self.limit is not None and total > self.limit:
            raise PayloadTooLarge(
                f"the Data is larger than this server accepts: at most {size_text(self.limit)} (--max-data-size)"
            )
        if coming >= self.EVERY or total - self.checked >= self.EVERY:
            self.reserve.check(coming)
            self.checked = total


def _check_body(received: int, length: int | None, label: str, digest: str, claimed: str | None) -> None:
    if length is not None and received != length:
        raise BadRequest(f"the body ended after {received} bytes, but its Content-Length is {length}")
    if claimed and claimed.strip().lower() != digest:
        said = claimed.strip()
        raise BadRequest(f"the body's {label} is {digest}, the client said {said}", reason="hash is not match.")


def _as_error(e: BaseException) -> BaseException:
    """What the client is told: disk errors in words (507 for a full disk), the rest as raised."""
    full = disk_full(e)
    if full is not None:
        return full
    if isinstance(e, OSError) and e.errno is not None:
        return KnitfabError(f"cannot store the Data: {e.strerror}", reason="unexpected error")
    return e


def _message(e: BaseException) -> str:
    if isinstance(e, KnitfabError):
        return e.message
    if isinstance(e, archive.ArchiveError):
        return f"{BadRequest.reason}\n{e}"
    return f"upload failed: {type(e).__name__}: {e}"


def begin_upload(store: Store) -> tuple[str, str]:
    """A running run of the pseudo plan ``knit#uploaded`` and its one output Data:
    (runId, knitId). The caller fills ``layout.staging(knitId)`` then calls ``end_upload``."""
    with store.write():
        (plan_id,) = store.one("SELECT plan_id FROM plan WHERE name = ?", UPLOADED)
        run_id = runs.create_run(store, plan_id, {}, RunStatus.RUNNING)
        return run_id, runs.outputs_of(store, run_id)[0]


def end_upload(store: Store, run_id: str, ok: bool, message: str = "") -> None:
    """Finish a running upload: done (timestamped and nominated) when its contents are in
    place; otherwise failed, and its half-received Data is dropped, so nothing partial is ever
    seen. An upload that is not running any more is left as it is."""
    # A done upload carries no exit, as in Knitfab; a failed one says why.
    new, exit = (RunStatus.COMPLETING, None) if ok else (RunStatus.ABORTING, (1, message or "upload failed"))
    with store.write():
        if not runs.set_status(store, run_id, new, exit, only_from=frozenset({RunStatus.RUNNING})):
            return
        if not ok:
            runs.drop_outputs(store, run_id)
        runs.finish(store, run_id)


def recover_uploads(store: Store) -> None:
    """At start-up, before serving: uploads (runs of pseudo plans) that were in flight when the
    server died can never complete, so they fail, and their half-received Data go."""
    orphans = store.column(
        "SELECT r.run_id FROM run r JOIN plan p ON p.plan_id = r.plan_id"
        " WHERE +p.name IS NOT NULL AND r.status = 'running'"
    )
    for run_id in orphans:
        log.warning("upload run %s was interrupted by a restart: failing it", run_id)
        end_upload(store, run_id, ok=False, message="the server stopped during the upload")


# -- records (rendered as spec §2.3 by api/render.py) -------------------------------------------


# A Data, its user tags' ids and its producing run, which is all an upstream run summary needs.
_COLUMNS = f"d.knit_id, d.output_id, d.timestamp, d.tag_ids, {runs.RUN_COLUMNS}"


def data_details(store: Store, knit_ids: list[str]) -> list[DataDetail]:
    """Details of many Data, in the order given."""
    rows = store.all(
        f"SELECT {_COLUMNS} FROM data d JOIN run r ON r.run_id = d.run_id"
        " WHERE d.knit_id IN (SELECT value FROM json_each(?))",
        json_list(knit_ids),
    )
    order = {knit_id: n for n, knit_id in enumerate(knit_ids)}
    return _details(store, sorted(rows, key=lambda row: order[row[0]]))


def _details(store: Store, rows: list[tuple]) -> list[DataDetail]:
    """Details of rows of ``_COLUMNS`` with a fixed number of queries, however many."""
    ids = json_list(row[0] for row in rows)
    downs = store.all(
        "SELECT a.knit_id, a.input_id, a.run_id FROM assign a JOIN run r ON r.run_id = a.run_id"
        " WHERE a.knit_id IN (SELECT value FROM json_each(?)) AND r.status != 'invalidated'"
        " ORDER BY r.updated_at, r.run_id",
        ids,
    )
    noms = store.all(
        "SELECT n.knit_id, n.input_id, i.plan_id FROM nomination n JOIN input i ON i.id = n.input_id"
        " WHERE n.knit_id IN (SELECT value FROM json_each(?)) ORDER BY i.plan_id, i.path",
        ids,
    )
    parts = _Parts(store, rows, downs, noms)
    return [parts.detail(row) for row in rows]


class _Parts:
    """The shared pieces of many DataDetails, each fetched once."""

    def __init__(self, store: Store, rows: list, downs: list, noms: list):
        self.tags = store.tags_listed(r[3] for r in rows)  # shared lists: never changed
        self.runs = runs.run_summaries(store, [d[2] for d in downs], known=[r[4:] for r in rows])
        self.outputs = output_points(store, [r[1] for r in rows])
        self.inputs = input_points(store, [d[1] for d in downs] + [n[1] for n in noms])
        self.plans = plan_summaries(store, [n[2] for n in noms])
        self.downs: dict[str, list[RunPoint]] = {}
        for knit_id, input_id, run_id in downs:
            self.downs.setdefault(knit_id, []).append(RunPoint(self.inputs[input_id], self.runs[run_id]))
        self.noms: dict[str, list[PlanPoint]] = {}
        for knit_id, input_id, plan_id in noms:
            # Knitfab returns one nomination at most, a map-overwrite bug (§14.8): all are given.
            self.noms.setdefault(knit_id, []).append(PlanPoint(self.plans[plan_id], self.inputs[input_id]))

    def detail(self, row: tuple) -> DataDetail:
        knit_id, output_id, stamp, tag_ids, run_id, status = row[:6]
        tags = self.tags[tag_ids] + system_tags(knit_id, stamp, _TRANSIENT.get(status))
        return DataDetail(
            knit_id,
            sorted(tags),  # unique already: a user tag is one row, and users cannot write system tags
            RunPoint(self.outputs[output_id][1], self.runs[run_id]),
            self.downs.get(knit_id, []),
            self.noms.get(knit_id, []),
        )


# knit#transient by the producing run's status (a table: it is asked for every Data described)
_TRANSIENT = {s.value: TRANSIENT_PROCESSING for s in PROCESSING} | {
    RunStatus.FAILED.value: TRANSIENT_FAILED,
    RunStatus.INVALIDATED.value: TRANSIENT_FAILED,
}
