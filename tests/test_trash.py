"""Directories removed off the engine thread: taken away at once, deleted in the background,
and what a killed server left half-deleted is finished when the data directory is opened again."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import wait_for

from knitfab import trash
from knitfab.store.layout import Layout


def tree(root, files=50):
    (root / "deep").mkdir(parents=True)
    for i in range(files):
        (root / "deep" / f"f{i}").write_text("x")
    (root / "link").symlink_to("/etc/passwd")
    return root


def test_a_discarded_directory_leaves_its_place_at_once_and_is_deleted_in_the_background(tmp_path):
    layout = Layout(tmp_path / "knitfab")
    layout.create()
    bin = trash.for_layout(layout)
    worker = tree(layout.worker("run-1"))
    bin.discard(worker)
    assert not worker.exists()  # gone from workers/ the moment discard returns
    wait_for(lambda: not bin.pending())
    assert (tmp_path / "knitfab" / "trash").is_dir()
    assert Path("/etc/passwd").read_text()  # a link is removed, never followed


def test_discarding_what_does_not_exist_is_nothing(tmp_path):
    layout = Layout(tmp_path / "knitfab")
    trash.for_layout(layout).discard(layout.data("never-was"))
    assert trash.for_layout(layout).pending() == []


KILLED_WHILE_DELETING = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from knitfab import trash
    from knitfab.store.layout import Layout
    layout = Layout(sys.argv[1])
    bin = trash.for_layout(layout)
    bin._wake = lambda: None  # the background deleter has not got far...
    bin.discard(layout.worker("run-1"))
    (entry,) = bin.pending()
    for f in sorted((entry / "deep").iterdir())[:10]:
        f.unlink()  # ...a tenth of the way
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_removal_cut_short_by_kill_9_is_finished_when_the_data_directory_is_opened_again(tmp_path):
    root = tmp_path / "knitfab"
    Layout(root).create()
    tree(Layout(root).worker("run-1"))
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_DELETING, str(root)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    (left,) = (root / "trash").iterdir()
    assert left.name.startswith("run-1.") and not Layout(root).worker("run-1").exists()  # never in workers/
    trash._BINS.clear()  # a new server process: nothing of the killed one's state
    bin = trash.for_layout(Layout(root))
    wait_for(lambda: not bin.pending())


def test_one_thread_deletes_what_keeps_coming(tmp_path):
    # Not a thread started for each discarded directory (the engine discards one per run).
    layout = Layout(tmp_path / "knitfab")
    layout.create()
    bin = trash.for_layout(layout)
    threads = set()
    for i in range(3):
        bin.discard(tree(layout.worker(f"run-{i}"), files=3))
        wait_for(lambda: not bin.pending())
        threads.add(bin._thread)
    assert len(threads) == 1 and None not in threads
