"""A full data volume wedges nothing (issue 9.9): a real server, real sandboxed runs, and a
small tmpfs as the data directory that the runs (or the test) fill to the last byte."""

import os
import subprocess

import pytest
from apiclient import Api, make_tar, upload
from helpers import plan_doc, wait_for

from knitfab.runners.local import exit_code_in
from knitfab.server import Config, KnitfabServer

pytestmark = pytest.mark.slow
SIZE = 32 << 20
TAR_GZ = {"Content-Type": "application/tar+gzip"}


@pytest.fixture
def volume(tmp_path):
    """A 32 MiB tmpfs mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "volume"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


def serve(volume, reserve: int):
    server = KnitfabServer(Config(port=0, data_dir=volume / "knitfab", poll=0.05, disk_reserve=reserve))
    server.start()
    return server, Api(server.url.removesuffix("/api"))


def fill_plan(api: Api, script: str) -> dict:
    doc = plan_doc({"/in": ["type:trigger"]}, {"/out": ["type:filled"]}, entrypoint=["sh", "-c", script], args=[])
    return api.json("POST", "/api/plans", json={**doc, "log": {"tags": ["type:log"]}})


def runs_of(api: Api, plan: dict) -> list[dict]:
    return api.json("GET", f"/api/runs?plan={plan['planId']}")


def finished(api: Api, plan: dict) -> dict | None:
    found = runs_of(api, plan)
    return found[0] if found and found[0]["status"] in ("done", "failed") else None


def free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_run_filling_the_volume_past_the_reserve_fails_and_the_server_goes_on(volume, tmp_path):
    host_file = tmp_path / "host-secret"
    host_file.write_text("keep me")
    server, api = serve(volume, reserve=4 << 20)
    try:
        # The link is resolved on the host when the outputs are discarded: it must not be followed.
        plan = fill_plan(api, f"ln -s {host_file} /out/link; cat /dev/zero > /out/fill; sleep 60")
        api.push({"go": "1"}, "type:trigger")
        run = wait_for(lambda: finished(api, plan), timeout=30)
        assert run["status"] == "failed" and run["exit"]["code"] == 255
        assert "the data volume is full" in run["exit"]["message"], run["exit"]
        assert "below the reserve of 4194304 bytes" in run["exit"]["message"]
        assert free(volume) > 4 << 20  # its outputs were discarded: the space is back
        assert host_file.read_text() == "keep me"
        out = run["outputs"][0]["knitId"]
        assert api.call("GET", f"/api/data/{out}").status_code == 200  # an empty Data, served
        api.json("DELETE", f"/api/runs/{run['runId']}", expect=204)  # not stuck: it can go
        again = fill_plan(api, "echo small > /out/ok")
        api.push({"go": "2"}, "type:trigger")
        assert wait_for(lambda: finished(api, again), timeout=30)["status"] == "done"
    finally:
        server.stop()


def test_the_exit_code_of_a_run_survives_a_full_volume(volume):
    server, api = serve(volume, reserve=0)  # no reserve: the run fills the volume to the last page
    try:
        plan = fill_plan(api, "cat /dev/zero > /out/fill; exit 7")
        api.push({"go": "1"}, "type:trigger")
        staging = volume / "knitfab" / "staging"
        exit_file = wait_for(lambda: next(server.runner.workdir.folder.glob("*/exit"), None))
        wait_for(lambda: exit_code_in(exit_file.read_text()) == 7, timeout=30)
        assert free(volume) == 0, "the run should have filled the volume to the last block"
        for fill in staging.glob("*/fill"):
            fill.unlink()  # an operator frees the space
        run = wait_for(lambda: finished(api, plan), timeout=30)
        assert run["status"] == "failed" and run["exit"] == {"code": 7, "message": "(container main) Error"}
    finally:
        server.stop()


def test_writes_on_a_full_volume_are_507_reads_go_on_and_it_recovers_once_space_is_free(volume):
    server, api = serve(volume, reserve=0)
    try:
        data = api.push({"a": "1"}, "type:dataset")
        server.store.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no room left in the WAL either
        filler = volume / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        assert api.call("GET", "/api/data").status_code == 200
        assert api.call("GET", f"/api/data/{data['knitId']}").status_code == 200
        tagged = api.call("PUT", f"/api/data/{data['knitId']}", json={"add": ["more:tag"]})
        assert tagged.status_code == 507, tagged.text
        assert tagged.json()["message"].startswith("insufficient storage\n")
        # Refused before its body is read: sent in one piece, so no byte is left for the server
        # to close on (a chunked client may see the closed connection before the answer).
        refused = api.call("POST", "/api/data/", data=make_tar({"small": "1"}), headers=TAR_GZ)
        assert refused.status_code == 507, refused.text
        filler.unlink()
        api.json("PUT", f"/api/data/{data['knitId']}", json={"add": ["more:tag"]})
        status, body = upload(api.url, make_tar({"big": os.urandom(1 << 20)}))
        assert status == 200, body
    finally:
        server.stop()
