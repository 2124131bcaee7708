"""File ownership on Kubernetes (knitfab/ownership.py): a worker writes as whatever user its image
runs as, with its own umask; the server (root with only CHOWN, DAC_OVERRIDE and FOWNER, as the
manifest runs it) must still serve and delete it, and the next run, as yet another user, read it.

The writer and reader are real processes of other UIDs; the server's side runs in a process whose
capabilities are cut to the manifest's set by ``setpriv`` (and, to show the test can fail, to none)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from knitfab.store.db import Store

WORKER, NEXT_WORKER = 12345, 23456
MANIFEST_CAPS = "-all,+chown,+dac_override,+fowner"  # manifests/: the server container's capabilities

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"),
]


def as_user(uid: int, code: str) -> subprocess.CompletedProcess:
    prelude = f"import os, pathlib; os.setgroups([]); os.setgid({uid}); os.setuid({uid}); os.umask(0o077)\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True)


def as_server(caps: str, code: str) -> subprocess.CompletedProcess:
    command = ["setpriv", f"--bounding-set={caps}", "--inh-caps=-all", sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": os.getcwd()})


@pytest.fixture
def store():
    root = Path(tempfile.mkdtemp(prefix="knitfab-ownership-"))
    root.chmod(0o755)  # other users must reach the data directory, as on a volume
    s = Store(root / "data")
    s.layout.root.chmod(0o755)
    yield s
    s.close()
    shutil.rmtree(root)


def written_by_a_worker(store: Store, knit_id: str) -> Path:
    """An output directory as ``prepare`` makes it, filled by a worker of another UID (umask 077)."""
    out = store.layout.staging(knit_id)
    out.mkdir(parents=True)
    out.chmod(0o777)
    done = as_user(
        WORKER,
        f"""
        out = pathlib.Path({str(out)!r})
        (out / "model" / "layers").mkdir(parents=True)
        (out / "model" / "layers" / "w.bin").write_bytes(b"weights")
        (out / "secret.txt").write_text("0600")
        (out / "link").symlink_to("/etc/shadow")
    """,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "model").stat().st_mode & 0o777 == 0o700 and (out / "model").stat().st_uid == WORKER
    return out


def test_published_outputs_of_one_user_are_readable_by_the_next_runs_user(store):
    written_by_a_worker(store, "out-1")
    assert as_user(NEXT_WORKER, f"open({str(store.layout.staging('out-1') / 'secret.txt')!r}).read()").returncode
    store.layout.publish("out-1")
    final = store.layout.data("out-1")
    read = as_user(
        NEXT_WORKER,
        f"""
        root = pathlib.Path({str(final)!r})
        print(sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink()))
        print((root / "model" / "layers" / "w.bin").read_bytes().decode(), (root / "secret.txt").read_text())
    """,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines() == ["['model/layers/w.bin', 'secret.txt']", "weights 0600"]
    assert Path("/etc/shadow").stat().st_mode & 0o004 == 0, "a link's target is never opened up"


GC = """
    import logging, sys
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    from knitfab.engine import Engine
    from knitfab.store.db import Store
    store = Store({root!r})
    Engine(store, None).collect_garbage()
    print(store.column("SELECT knit_id FROM garbage"))
"""


def test_the_servers_capabilities_let_gc_remove_what_a_worker_wrote_and_without_them_gc_retries(store):
    out = written_by_a_worker(store, "out-2")
    store.layout.publish("out-2")
    (store.layout.data("out-2") / "model").chmod(0o700)  # a worker may also leave it closed
    with store.write():
        store.execute("INSERT INTO garbage (knit_id) VALUES ('out-2')")
    gc = GC.format(root=str(store.layout.root))

    powerless = as_server("-all", gc)  # root, but without DAC_OVERRIDE: as a non-root server would be
    assert powerless.stdout.strip() == "['out-2']", "a failed removal stays queued"
    assert "cannot remove the files of dropped Data out-2 (will try again)" in powerless.stderr
    assert store.layout.data("out-2").exists()

    manifest = as_server(MANIFEST_CAPS, gc)
    assert manifest.stdout.strip() == "[]", manifest.stderr
    assert not store.layout.data("out-2").exists() and not out.exists()


DOWNLOAD = """
    import io, tarfile
    from pathlib import Path
    from knit import archive
    tar = tarfile.open(fileobj=io.BytesIO(b"".join(archive.pack(Path({root!r})))), mode="r:gz")
    print(sorted(m.name for m in tar.getmembers() if m.isfile()))
"""


def test_downloads_serve_what_a_worker_wrote_left_closed(store):
    written_by_a_worker(store, "out-3")
    store.layout.publish("out-3")
    (store.layout.data("out-3") / "secret.txt").chmod(0o000)  # not even its owner may read it
    download = DOWNLOAD.format(root=str(store.layout.data("out-3")))
    served = as_server(MANIFEST_CAPS, download)  # the server's download path (dataapi: archive.pack)
    assert served.stdout.strip() == "['model/layers/w.bin', 'secret.txt']", served.stderr
    assert as_server("-all", download).returncode != 0, "without DAC_OVERRIDE the download fails"
