"""``Store.generation()`` moves after every commit, whoever made it, and only then (store/changes.py)."""

from __future__ import annotations

import sqlite3
import threading

from helpers import push

from knitfab.store.db import Store


def in_thread(fn) -> None:
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_it_stays_while_nothing_is_committed(store):
    push(store, "a:b")
    first = store.generation()
    with store.read():
        store.all("SELECT * FROM data")
    assert store.generation() == first == store.generation()


def test_a_write_of_this_thread_moves_it(store):
    before = store.generation()
    push(store, "a:b")
    assert store.generation() != before


def test_a_row_changed_outside_write_moves_it(store):
    before = store.generation()
    store.execute("INSERT INTO tag (key, value) VALUES ('k', 'v')")  # autocommit, no write()
    assert store.generation() != before


def test_a_commit_of_another_thread_moves_it(store):
    """As the engine's or another request's, each on its own connection."""
    before = store.generation()
    in_thread(lambda: push(store, "a:b"))
    assert store.generation() != before


def test_a_commit_of_another_process_moves_it(store):
    """As ``knitfab import`` or a second server on the same file do."""
    Store(store.layout.root).close()
    before = store.generation()
    other = sqlite3.connect(store.layout.db)
    other.execute("INSERT INTO tag (key, value) VALUES ('k', 'v')")
    other.commit()
    other.close()
    assert store.generation() != before


def test_every_thread_sees_a_commit_once(store):
    """A commit seen by one thread moves it for all; then it stays for every one of them."""
    seen = {}
    in_thread(lambda: seen.setdefault("t1", store.generation()))
    push(store, "a:b")
    in_thread(lambda: seen.setdefault("t2", store.generation()))
    later = store.generation()
    assert seen["t2"] != seen["t1"] and store.generation() == later
