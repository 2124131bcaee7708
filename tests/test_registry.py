"""The image registry of ``knitfab serve``, driven by real clients (skopeo, podman) and raw HTTP."""

import hashlib
import json
import socket

import pytest
import requests
from oci_helpers import have, oci_layout, podman, push_layout, skopeo

from knitfab.server import Config, KnitfabServer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have("skopeo"), reason="needs skopeo (make install)")]
BLOB = b"a blob of bytes\n" * 1000
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from fake_runner import FakeRunner

    from knitfab.store.layout import Layout

    data_dir = tmp_path_factory.mktemp("registry") / "data"
    srv = KnitfabServer(Config(port=0, registry_port=0, data_dir=data_dir), runner=FakeRunner(Layout(data_dir)))
    srv.start()
    yield srv
    srv.stop()


def url(srv, path):
    return f"http://{srv.registry_host}/v2/{path}"


def visible_blobs(srv):
    return sorted(p.name for p in (srv.images.root / "blobs" / "sha256").iterdir())


def test_skopeo_copies_an_image_in_and_out_unchanged(registry, tmp_path):
    layout = oci_layout(tmp_path / "in")
    assert push_layout(layout, registry.registry_host, "team/app").returncode == 0
    back = skopeo(
        "copy", "--src-tls-verify=false", f"docker://{registry.registry_host}/team/app:v1", f"oci:{tmp_path}/out:v1"
    )
    assert back.returncode == 0, back.stderr
    sent = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    got = json.loads((tmp_path / "out" / "index.json").read_text())["manifests"][0]["digest"]
    assert got == sent
    tags = requests.get(url(registry, "team/app/tags/list"), timeout=10).json()
    assert tags == {"name": "team/app", "tags": ["v1"]}


@pytest.mark.skipif(not have("podman", "runc"), reason="needs podman and runc")
def test_podman_pulls_and_pushes(registry, tmp_path):
    push_layout(oci_layout(tmp_path / "in"), registry.registry_host, "pod/src")
    src, dst = f"{registry.registry_host}/pod/src:v1", f"{registry.registry_host}/pod/dst:v2"
    assert podman(tmp_path, "pull", "--tls-verify=false", src).returncode == 0
    assert podman(tmp_path, "tag", src, dst).returncode == 0
    pushed = podman(tmp_path, "push", "--tls-verify=false", dst)
    assert pushed.returncode == 0, pushed.stderr
    inspect = skopeo("inspect", "--tls-verify=false", f"docker://{dst}")
    assert json.loads(inspect.stdout)["Env"] == ["PATH=/bin", "GREETING=hello"]


def test_a_wrong_digest_is_refused_and_nothing_is_stored(registry):
    before = visible_blobs(registry)
    wrong = "sha256:" + "0" * 64
    response = requests.post(url(registry, "x/blobs/uploads/"), params={"digest": wrong}, data=BLOB, timeout=10)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert requests.head(url(registry, f"x/blobs/{wrong}"), timeout=10).status_code == 404
    assert visible_blobs(registry) == before


def test_a_chunked_upload_is_assembled_in_order(registry):
    start = requests.post(url(registry, "chunks/blobs/uploads/"), timeout=10)
    assert start.status_code == 202
    location = f"http://{registry.registry_host}{start.headers['Location']}"
    first = requests.patch(location, data=BLOB[:7000], headers={"Content-Range": "0-6999"}, timeout=10)
    assert first.status_code == 202 and first.headers["Range"] == "0-6999"
    stale = requests.patch(location, data=BLOB[:10], headers={"Content-Range": "0-9"}, timeout=10)
    assert stale.status_code == 416  # a chunk must start where the upload is
    assert requests.head(url(registry, f"chunks/blobs/{DIGEST}"), timeout=10).status_code == 404
    done = requests.put(location, params={"digest": DIGEST}, data=BLOB[7000:], timeout=10)
    assert done.status_code == 201 and done.headers["Docker-Content-Digest"] == DIGEST
    assert requests.get(url(registry, f"chunks/blobs/{DIGEST}"), timeout=10).content == BLOB


def test_an_interrupted_upload_leaves_nothing_visible(registry):
    digest = "sha256:" + hashlib.sha256(b"z" * 100_000).hexdigest()
    host, port = registry.registry_host.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        head = f"POST /v2/cut/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        conn.sendall(head.encode() + b"z" * 40_000)
    assert requests.head(url(registry, f"cut/blobs/{digest}"), timeout=10).status_code == 404
    assert digest.removeprefix("sha256:") not in visible_blobs(registry)


def test_a_manifest_naming_a_missing_blob_is_refused(registry):
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "1" * 64, "size": 2},
        "layers": [],
    }
    headers = {"Content-Type": manifest["mediaType"]}
    response = requests.put(url(registry, "m/manifests/v1"), data=json.dumps(manifest), headers=headers, timeout=10)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert requests.get(url(registry, "m/manifests/v1"), timeout=10).status_code == 404


def test_bad_names_and_references_get_clear_errors(registry):
    assert requests.get(url(registry, "UPPER/tags/list"), timeout=10).json()["errors"][0]["code"] == "NAME_INVALID"
    assert requests.get(url(registry, "a/blobs/sha256:xyz"), timeout=10).status_code == 400
    assert requests.get(url(registry, "nobody/manifests/latest"), timeout=10).status_code == 404


def test_the_token_is_required_when_the_server_has_one(tmp_path):
    from fake_runner import FakeRunner

    from knitfab.store.layout import Layout

    (tmp_path / "token").write_text("s3cret\n")
    config = Config(port=0, registry_port=0, data_dir=tmp_path / "data", token_file=tmp_path / "token")
    srv = KnitfabServer(config, runner=FakeRunner(Layout(tmp_path / "data")))
    srv.start()
    try:
        refused = requests.get(url(srv, ""), timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
        layout = oci_layout(tmp_path / "in")
        assert push_layout(layout, srv.registry_host, "secret").returncode != 0
        assert push_layout(layout, srv.registry_host, "secret", "v1", "--dest-creds", "knit:s3cret").returncode == 0
        bearer = {"Authorization": "Bearer s3cret"}
        assert requests.get(url(srv, "secret/tags/list"), headers=bearer, timeout=10).json()["tags"] == ["v1"]
    finally:
        srv.stop()


def test_docker_schema_2_manifests_and_oci_indexes_are_kept_as_sent(registry, tmp_path):
    layout = oci_layout(tmp_path / "in")
    assert push_layout(layout, registry.registry_host, "formats", "v1", "--format", "v2s2").returncode == 0
    docker = requests.get(url(registry, "formats/manifests/v1"), timeout=10)
    assert docker.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": docker.headers["Content-Type"], "digest": docker.headers["Docker-Content-Digest"],
                       "size": len(docker.content), "platform": {"os": "linux", "architecture": "amd64"}}],
    }  # fmt: skip
    raw = json.dumps(index).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    headers = {"Content-Type": index["mediaType"]}
    put = requests.put(url(registry, f"formats/manifests/{digest}"), data=raw, headers=headers, timeout=10)
    assert put.status_code == 201 and put.headers["Docker-Content-Digest"] == digest
    got = requests.get(url(registry, f"formats/manifests/{digest}"), timeout=10)
    assert got.content == raw and got.headers["Content-Type"] == index["mediaType"]
    wrong = requests.put(url(registry, f"formats/manifests/sha256:{'2' * 64}"), data=raw, headers=headers, timeout=10)
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["code"] == "DIGEST_INVALID"


def _docker_engine() -> bool:
    import subprocess

    return have("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _docker_engine(), reason="no Docker engine on this machine")
def test_the_docker_cli_pushes_where_an_engine_exists(registry, tmp_path):
    import subprocess

    push_layout(oci_layout(tmp_path / "in"), registry.registry_host, "dock/src")
    src, dst = f"{registry.registry_host}/dock/src:v1", f"{registry.registry_host}/dock/dst:v1"
    for cmd in (["pull", src], ["tag", src, dst], ["push", dst]):
        assert subprocess.run(["docker", *cmd], capture_output=True, timeout=120).returncode == 0
    assert requests.get(url(registry, "dock/dst/tags/list"), timeout=10).json()["tags"] == ["v1"]


def test_an_upload_that_would_eat_the_disk_reserve_is_refused(registry):
    before, reserve = visible_blobs(registry), registry.images.reserve
    registry.images.reserve = 1 << 62  # more than any disk has free
    try:
        response = requests.post(url(registry, "full/blobs/uploads/"), params={"digest": DIGEST}, data=BLOB, timeout=10)
    finally:
        registry.images.reserve = reserve
    assert response.status_code == 507 and "disk is full" in response.json()["errors"][0]["message"]
    assert visible_blobs(registry) == before


@pytest.mark.skipif(not have("openssl"), reason="openssl is not installed")
def test_the_registry_speaks_tls_with_the_apis_certificate(tmp_path):
    from fake_runner import FakeRunner
    from helpers import self_signed_cert

    from knitfab.store.layout import Layout

    cert, key = self_signed_cert(tmp_path)
    certs = tmp_path / "certs"  # skopeo's --dest-cert-dir: a folder with ca.crt
    certs.mkdir()
    (certs / "ca.crt").write_bytes(cert.read_bytes())
    config = Config(port=0, registry_port=0, data_dir=tmp_path / "data", cert=cert, key=key)
    srv = KnitfabServer(config, runner=FakeRunner(Layout(tmp_path / "data")))
    srv.start()
    try:
        layout = oci_layout(tmp_path / "in")
        target = f"docker://{srv.registry_host}/tls:v1"
        pushed = skopeo("copy", "--dest-cert-dir", str(certs), f"oci:{layout}:v1", target)
        assert pushed.returncode == 0, pushed.stderr
        assert skopeo("inspect", target).returncode != 0  # the system's CAs do not know our certificate
        assert requests.get(f"https://{srv.registry_host}/v2/", verify=str(cert), timeout=10).status_code == 200
    finally:
        srv.stop()
