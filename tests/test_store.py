import sqlite3
import threading

import pytest
from peewee import SqliteDatabase

from knitfab.errors import SchemaTooNew
from knitfab.store.db import Store
from knitfab.store.migrations import LATEST, current_version, migrate
from knitfab.tags import Tag


def test_a_new_store_is_at_the_latest_schema_with_wal_and_foreign_keys(store):
    assert current_version(store.db) == LATEST
    assert store.one("PRAGMA journal_mode")[0] == "wal"
    assert store.one("PRAGMA foreign_keys")[0] == 1
    assert store.one("SELECT name FROM plan WHERE name = 'knit#uploaded'")


def test_an_older_database_is_upgraded_keeping_its_rows(tmp_path):
    root = tmp_path / "kf"
    root.mkdir()
    old = SqliteDatabase(str(root / "knitfab.db"))
    assert migrate(old, target=1) == [1]
    old.execute_sql("INSERT INTO tag (key, value) VALUES ('kept', 'yes')")
    old.close()

    store = Store(root)
    assert current_version(store.db) == LATEST
    assert store.one("SELECT value FROM tag WHERE key = 'kept'") == ("yes",)
    assert store.all("PRAGMA table_info(plan_annotation)")  # added by version 2
    store.close()


def test_version_3_keeps_each_datas_tag_ids_from_its_tags(tmp_path):
    root = tmp_path / "kf"
    root.mkdir()
    old = SqliteDatabase(str(root / "knitfab.db"))
    assert migrate(old, target=2) == [1, 2]
    (upload,) = old.execute_sql("SELECT id FROM output WHERE path = '/upload'").fetchone()
    old.execute_sql("INSERT INTO plan (plan_id, hash, name, active) VALUES ('p', 'h', 'x', 1)")
    old.execute_sql("INSERT INTO run (run_id, plan_id, status, updated_at) VALUES ('r', 'p', 'done', 0)")
    for knit_id in ("tagged", "bare"):
        old.execute_sql("INSERT INTO data (knit_id, run_id, output_id) VALUES (?, 'r', ?)", (knit_id, upload))
    old.execute_sql("INSERT INTO tag (id, key, value) VALUES (7, 'a', '1'), (9, 'b', '2')")
    old.execute_sql("INSERT INTO data_tag (tag_id, knit_id) VALUES (7, 'tagged'), (9, 'tagged')")
    old.close()

    store = Store(root)
    kept = dict(store.all("SELECT knit_id, tag_ids FROM data"))
    assert {k: set(v.split(",")) - {""} for k, v in kept.items()} == {"tagged": {"7", "9"}, "bare": set()}
    store.close()


def test_a_database_from_a_newer_knitfab_is_refused(tmp_path):
    root = tmp_path / "kf"
    Store(root).close()
    db = sqlite3.connect(root / "knitfab.db")
    db.execute("INSERT INTO schema_version VALUES (?)", (LATEST + 1,))
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {LATEST + 1}.*upgrade knitfab"):
        Store(root)


def test_migrations_apply_once_when_two_processes_start_together(tmp_path):
    root = tmp_path / "kf"
    errors = []

    def start():
        try:
            Store(root).close()
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = Store(root)
    assert store.column("SELECT version FROM schema_version") == [LATEST]
    assert store.one("SELECT COUNT(*) FROM plan WHERE name = 'knit#uploaded'") == (1,)
    store.close()


def test_writes_must_be_the_outermost_transaction(store):
    with store.write():
        with pytest.raises(RuntimeError, match="outermost"):
            with store.write():
                pass


def test_a_failed_write_leaves_nothing_behind(store):
    with pytest.raises(RuntimeError, match="crash"):
        with store.write():
            store.execute("INSERT INTO tag (key, value) VALUES ('half', 'written')")
            raise RuntimeError("crash halfway")
    assert store.one("SELECT 1 FROM tag WHERE key = 'half'") is None


def test_publish_moves_staging_into_place(store):
    staging = store.layout.staging("k1")
    staging.mkdir(parents=True)
    (staging / "f").write_text("x")
    store.layout.publish("k1")
    store.layout.publish("k1")  # again, as after a crash: harmless
    assert (store.layout.data("k1") / "f").read_text() == "x"
    assert not staging.exists()
    store.layout.publish("empty")
    assert store.layout.data("empty").is_dir()


def common_and_rare(store: Store, on_every: int, on_some: int) -> tuple[int, int]:
    """The ids of a tag on ``on_every`` Data and of one on the first ``on_some`` of them."""
    (plan_id,) = store.one("SELECT plan_id FROM plan WHERE name = 'knit#uploaded'")
    (output_id,) = store.one("SELECT id FROM output WHERE plan_id = ?", plan_id)
    with store.write():
        common, rare = store.tag_ids([Tag("type", "dataset"), Tag("batch", "b1")], create=True)
        conn = store.db.connection()
        conn.execute("INSERT INTO run (run_id, plan_id, status, updated_at) VALUES ('r', ?, 'done', 0)", (plan_id,))
        conn.executemany("INSERT INTO data (knit_id, run_id, output_id) VALUES (?, 'r', ?)",
                         [(f"k{i:05d}", output_id) for i in range(on_every)])  # fmt: skip
        conn.executemany("INSERT INTO data_tag (tag_id, knit_id) VALUES (?, ?)",
                         [(common, f"k{i:05d}") for i in range(on_every)] +
                         [(rare, f"k{i:05d}") for i in range(on_some)])  # fmt: skip
    return common, rare


def test_the_rarest_tag_leads_even_when_both_are_past_the_first_count(store):
    """A tag on 1,500 Data and a tag on every one of 12,000 both pass the first capped count
    (1,000); the query must still start from the rarer, whatever order they were asked in."""
    common, rare = common_and_rare(store, on_every=12_000, on_some=1_500)
    assert store.with_all_tags([common, rare])[1] == [rare, common]
    assert store.with_all_tags([rare, common])[1] == [rare, common]
    sql, params = store.with_all_tags([common, rare])
    assert len(store.column(sql, *params)) == 1_500


def tag_new_data(store: Store, knit_id: str, text: str) -> None:
    """Inside a write: a Data row carrying one tag (the tag created if new)."""
    (plan_id, output_id) = store.one("SELECT p.plan_id, o.id FROM plan p JOIN output o USING (plan_id) LIMIT 1")
    store.execute("INSERT OR IGNORE INTO run (run_id, plan_id, status, updated_at) VALUES ('r', ?, 'done', 1)", plan_id)
    store.execute("INSERT INTO data (knit_id, run_id, output_id) VALUES (?, 'r', ?)", knit_id, output_id)
    (tag_id,) = store.tag_ids([Tag(*text.split(":"))], create=True)
    store.execute("INSERT INTO data_tag (tag_id, knit_id) VALUES (?, ?)", tag_id, knit_id)


def tagged(store: Store, knit_id: str, text: str) -> None:
    with store.write():
        tag_new_data(store, knit_id, text)


def test_tags_are_answered_from_the_cache_of_committed_tags(store):
    tagged(store, "k1", "a:1")
    assert store.tags_of("data_tag", "knit_id", ["k1"]) == {"k1": [Tag("a", "1")]}
    store.execute("UPDATE tag SET value = 'changed behind its back'")  # never done: tags are immutable
    assert store.tags_of("data_tag", "knit_id", ["k1"]) == {"k1": [Tag("a", "1")]}


def test_a_tag_read_inside_a_write_that_rolls_back_is_not_remembered(store):
    with pytest.raises(RuntimeError), store.write():
        tag_new_data(store, "k0", "x:gone")
        assert store.tags_of("data_tag", "knit_id", ["k0"]) == {"k0": [Tag("x", "gone")]}
        raise RuntimeError("roll back")
    tagged(store, "k1", "b:2")  # the rolled-back tag's id is given again
    assert store.tags_of("data_tag", "knit_id", ["k1"]) == {"k1": [Tag("b", "2")]}


def test_past_its_bound_the_tag_cache_starts_over_and_answers_stay_right(store, monkeypatch):
    monkeypatch.setattr("knitfab.store.db.TAG_CACHE", 3)
    for n in range(10):
        tagged(store, f"k{n}", f"t:{n}")
        assert store.tags_of("data_tag", "knit_id", ["k0", f"k{n}"]) == {
            "k0": [Tag("t", "0")],
            f"k{n}": [Tag("t", str(n))],
        }
    assert len(store._tag_cache) <= 3


def test_a_tag_on_exactly_a_thousand_data_is_counted_once(store):
    """1,000 hits next to a tag on every Data: one capped count tells them apart."""
    common, rare = common_and_rare(store, on_every=3_000, on_some=1_000)
    statements = []
    store.db.connection().set_trace_callback(statements.append)
    assert store.with_all_tags([common, rare])[1] == [rare, common]
    store.db.connection().set_trace_callback(None)
    assert len([s for s in statements if "COUNT(*)" in s]) == 1


def test_only_short_tags_are_kept(store):
    tagged(store, "k1", "short:yes")
    tagged(store, "k2", "long:" + "x" * 1000)
    assert [str(t) for t in store.tags_of("data_tag", "knit_id", ["k2"])["k2"]] == ["long:" + "x" * 1000]
    store.tags_of("data_tag", "knit_id", ["k1"])
    assert sorted(tag.key for tag in store._tag_cache.values()) == ["short"]
