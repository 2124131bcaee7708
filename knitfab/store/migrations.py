"""Numbered schema migrations, applied at start-up.

``MIGRATIONS[n - 1]`` brings a database from version ``n - 1`` to ``n``. The version lives in
``schema_version``. A database from an older Knitfab is upgraded in one transaction; one from a
newer Knitfab is refused, because this code cannot know what its tables mean.
Never edit a migration that has shipped: add the next one.
"""

from __future__ import annotations

import uuid

from peewee import Database

from ..errors import SchemaTooNew

V1_CORE = """
CREATE TABLE tag (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (key, value)
);
CREATE TABLE plan (
    plan_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    image TEXT,
    version TEXT,
    name TEXT UNIQUE,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE plan_resource (
    plan_id TEXT NOT NULL REFERENCES plan (plan_id),
    type TEXT NOT NULL,
    quantity TEXT NOT NULL,
    PRIMARY KEY (plan_id, type)
);
CREATE TABLE plan_on_node (
    plan_id TEXT NOT NULL REFERENCES plan (plan_id),
    mode TEXT NOT NULL CHECK (mode IN ('may', 'prefer', 'must')),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (plan_id, mode, key, value)
);
CREATE TABLE input (
    id INTEGER PRIMARY KEY,
    plan_id TEXT NOT NULL REFERENCES plan (plan_id),
    path TEXT NOT NULL,
    knit_id TEXT,
    timestamp INTEGER,
    n_tags INTEGER NOT NULL,
    UNIQUE (plan_id, path)
);
CREATE INDEX input_by_knit_id ON input (knit_id) WHERE knit_id IS NOT NULL;
CREATE INDEX input_by_timestamp ON input (timestamp) WHERE timestamp IS NOT NULL;
CREATE TABLE input_tag (
    tag_id INTEGER NOT NULL REFERENCES tag (id),
    input_id INTEGER NOT NULL REFERENCES input (id),
    PRIMARY KEY (tag_id, input_id)
) WITHOUT ROWID;
CREATE INDEX input_tag_by_input ON input_tag (input_id);
CREATE TABLE output (
    id INTEGER PRIMARY KEY,
    plan_id TEXT NOT NULL REFERENCES plan (plan_id),
    path TEXT,
    is_log INTEGER NOT NULL DEFAULT 0,
    UNIQUE (plan_id, path)
);
CREATE TABLE output_tag (
    tag_id INTEGER NOT NULL REFERENCES tag (id),
    output_id INTEGER NOT NULL REFERENCES output (id),
    PRIMARY KEY (tag_id, output_id)
) WITHOUT ROWID;
CREATE INDEX output_tag_by_output ON output_tag (output_id);
CREATE TABLE run (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    plan_id TEXT NOT NULL REFERENCES plan (plan_id),
    status TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    exit_code INTEGER,
    exit_message TEXT,
    combination TEXT,
    worker TEXT,
    UNIQUE (plan_id, combination)
);
CREATE INDEX run_by_status ON run (status, seq);
CREATE INDEX run_by_update ON run (updated_at, run_id);
CREATE INDEX run_with_worker ON run (worker) WHERE worker IS NOT NULL;
CREATE TABLE assign (
    run_id TEXT NOT NULL REFERENCES run (run_id),
    input_id INTEGER NOT NULL REFERENCES input (id),
    knit_id TEXT NOT NULL REFERENCES data (knit_id),
    PRIMARY KEY (run_id, input_id)
);
CREATE INDEX assign_by_data ON assign (knit_id);
CREATE TABLE data (
    knit_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES run (run_id),
    output_id INTEGER NOT NULL REFERENCES output (id),
    timestamp INTEGER
);
CREATE INDEX data_by_run ON data (run_id);
CREATE INDEX data_by_timestamp ON data (timestamp, knit_id);
CREATE TABLE data_tag (
    tag_id INTEGER NOT NULL REFERENCES tag (id),
    knit_id TEXT NOT NULL REFERENCES data (knit_id),
    PRIMARY KEY (tag_id, knit_id)
) WITHOUT ROWID;
CREATE INDEX data_tag_by_data ON data_tag (knit_id);
CREATE TABLE nomination (
    input_id INTEGER NOT NULL REFERENCES input (id),
    knit_id TEXT NOT NULL REFERENCES data (knit_id),
    updated INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (input_id, knit_id)
);
CREATE INDEX nomination_by_data ON nomination (knit_id);
CREATE INDEX nomination_updated ON nomination (updated) WHERE updated = 1;
CREATE TABLE garbage (
    knit_id TEXT PRIMARY KEY
);
"""

V2_PLAN_DETAILS = """
CREATE TABLE plan_annotation (
    plan_id TEXT NOT NULL REFERENCES plan (plan_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (plan_id, key, value)
);
ALTER TABLE plan ADD COLUMN entrypoint TEXT;
ALTER TABLE plan ADD COLUMN args TEXT;
ALTER TABLE plan ADD COLUMN service_account TEXT;
"""


# data.tag_ids: the ids of a Data's user tags, joined ("3,17,40"), kept by the store with each
# change of data_tag (Store.refresh_tag_ids) so that a DataDetail reads its tags with its row.
V3_TAG_IDS = """
ALTER TABLE data ADD COLUMN tag_ids TEXT NOT NULL DEFAULT '';
UPDATE data SET tag_ids = COALESCE((SELECT group_concat(tag_id) FROM data_tag x WHERE x.knit_id = data.knit_id), '');
"""


def _v1(db: Database) -> None:
    _script(db, V1_CORE)
    # The pseudo plan of uploads: one output /upload with no tags (spec §6.4).
    plan_id = str(uuid.uuid4())
    db.execute_sql(
        "INSERT INTO plan (plan_id, hash, name, active) VALUES (?, ?, 'knit#uploaded', 1)",
        (plan_id, "pseudo:knit#uploaded"),
    )
    db.execute_sql("INSERT INTO output (plan_id, path) VALUES (?, '/upload')", (plan_id,))


def _v2(db: Database) -> None:
    _script(db, V2_PLAN_DETAILS)


def _v3(db: Database) -> None:
    _script(db, V3_TAG_IDS)


def _script(db: Database, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute_sql(statement)


MIGRATIONS = [_v1, _v2, _v3]
LATEST = len(MIGRATIONS)


def current_version(db: Database) -> int:
    db.execute_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute_sql("SELECT MAX(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(db: Database, target: int = LATEST) -> list[int]:
    """Bring the schema to ``target``; returns the versions applied. Call it inside no
    transaction: it takes the write lock itself, so concurrent starters apply it once."""
    with db.atomic("IMMEDIATE"):
        version = current_version(db)
        if version > LATEST:
            raise SchemaTooNew(
                f"the database is at schema version {version}, but this knitfab knows only up to "
                f"{LATEST}: upgrade knitfab, or point --data-dir at another directory"
            )
        applied = list(range(version + 1, target + 1))
        for n in applied:
            MIGRATIONS[n - 1](db)
        if applied:
            db.execute_sql("INSERT INTO schema_version (version) VALUES (?)", (target,))
        return applied
