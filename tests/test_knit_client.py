"""``knit.KnitClient``, the Python client, against a real server; and what ``knit`` must not import."""

import io
import os
import socket
import subprocess
import sys
import threading

import pytest
from helpers import wait_for
from knit_helpers import knit

from knit import KnitClient, KnitError
from knit.client import ChecksumMismatch
from knitfab.store.jobs import load_job

pytestmark = pytest.mark.slow


@pytest.fixture
def client(server):
    c = KnitClient(server.url)
    yield c
    c.close()


def folder(tmp_path, name, files):
    root = tmp_path / name
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_flow_of_a_script(server, client, tmp_path):
    plan = client.apply_plan(
        {
            "image": "example.com/train:v1",
            "entrypoint": ["fake"],
            "args": ["succeed"],
            "inputs": [{"path": "/in/dataset", "tags": ["type:dataset"]}],
            "outputs": [{"path": "/out/model", "tags": ["type:model"]}],
        }
    )
    data = client.push_dir(folder(tmp_path, "ds", {"x.csv": "1\n"}), ["type:dataset", "mode:training"])
    assert "mode:training" in data["tags"]
    assert [d["knitId"] for d in client.find_data(["mode:training"])] == [client.get_data(data["knitId"])["knitId"]]
    runs = wait_for(lambda: client.find_runs(plan_ids=[plan["planId"]]))
    run = client.wait_run(runs[0]["runId"], timeout=30, poll=0.05)
    assert run["status"] == "done"
    model = run["outputs"][0]["knitId"]
    target = client.pull(model, tmp_path / "pulled", extract=True)
    assert (target / "result").read_text().startswith("made by")
    assert client.pull(model, tmp_path / "archives").name == f"{model}.tar.gz"
    dot = client.lineage(model)
    assert dot.startswith("digraph G {") and f'"d{model}"' in dot and f'"r{run["runId"]}"' in dot


def test_errors_carry_a_summary_and_the_servers_message(client):
    with pytest.raises(KnitError) as e:
        client.get_run("no-such-run")
    assert e.value.summary == "runId:no-such-run is not found"
    assert e.value.status == 404 and "not found" in e.value.detail
    with pytest.raises(KnitError) as e:
        client.apply_plan({"image": "x:1", "inputs": []})
    assert e.value.summary == "invalid request" and "no inputs" in e.value.detail
    with pytest.raises(KnitError, match="data not found: nope"):
        client.get_data("nope")


def test_an_unreachable_server(tmp_path):
    client = KnitClient("http://127.0.0.1:9/api")
    with pytest.raises(KnitError, match=r"cannot connect to http://127.0.0.1:9/api: is the server running\?"):
        client.find_data()
    with pytest.raises(KnitError, match="is the server running"):
        client.push_dir(folder(tmp_path, "d", {"a": "b"}))


def test_a_wrong_checksum_trailer_is_reported_after_saving(tmp_path):
    body = b"\x1f\x8b" + b"not really gzip"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/tar+gzip\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: x-checksum-md5\r\n\r\n%x\r\n%b\r\n0\r\nx-checksum-md5: %s\r\n\r\n" % (len(body), body, b"0" * 32)
        )
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    client = KnitClient(f"http://127.0.0.1:{server.getsockname()[1]}/api")
    with pytest.raises(ChecksumMismatch, match="checksum unmatch: Your Data is saved"):
        client.pull("some-id", tmp_path)
    thread.join()
    server.close()
    assert (tmp_path / "some-id.tar.gz").read_bytes() == body


def test_push_shows_progress_on_a_terminal_only(server, tmp_path, monkeypatch):
    from knit_helpers import ok

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    ok("init", str(server.store.layout.handout / "knitprofile"))
    folder(tmp_path, "big", {"blob.bin": "x" * 300_000})

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    err = Terminal()
    from knit.cli import main

    out = io.TextIOWrapper(io.BytesIO(), write_through=True)
    assert main(["data", "push", "big"], out, err) == 0
    assert "push big" in err.getvalue() and "293k" in err.getvalue()
    assert "push big" not in knit("data", "push", "big").err


def test_ctrl_c_during_a_push_leaves_no_data(server, tmp_path, monkeypatch):
    from knit_helpers import ok

    from knit import archive

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    ok("init", str(server.store.layout.handout / "knitprofile"))
    folder(tmp_path, "big", {f"f{i}.bin": os.urandom(100_000).hex() for i in range(30)})
    real_pack = archive.pack

    def interrupted(*args, **kwargs):
        def chunks():
            for n, chunk in enumerate(real_pack(*args, **kwargs)):
                if n == 1:
                    raise KeyboardInterrupt
                yield chunk

        return chunks()

    monkeypatch.setattr(archive, "pack", interrupted)
    result = knit("data", "push", "-t", "a:b", "big")
    assert result.rc == 130 and "interrupted" in result.err
    monkeypatch.undo()
    client = KnitClient(server.url)
    from helpers import wait_for

    wait_for(lambda: client.find_runs(statuses=["failed"]))
    assert client.find_data() == []


def test_knit_imports_no_server_libraries():
    code = (
        "import sys, knit, knit.cli, knit.client, knit.datacmds, knit.plancmds, knit.runcmds\n"
        "knit.cli.build_parser()\n"
        "bad = [m for m in ('flask', 'peewee', 'kubernetes', 'knitfab', 'cheroot') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_log_of_a_finished_run_through_the_client(server, client, tmp_path):
    client.apply_plan(
        {
            "image": "x:1",
            "entrypoint": ["fake"],
            "args": ["succeed"],
            "inputs": [{"path": "/in", "tags": ["t:1"]}],
            "log": {"tags": ["type:log"]},
        }
    )
    client.push_dir(folder(tmp_path, "d", {"a": "b"}), ["t:1"])
    runs = wait_for(lambda: [r for r in client.find_runs(statuses=["done"]) if r["log"]])
    assert b"".join(client.run_log(runs[0]["runId"])) == f"run {runs[0]['runId']} exits 0\n".encode()
    assert load_job(server.store, runs[0]["runId"]).log == runs[0]["log"]["knitId"]
