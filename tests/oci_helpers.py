"""Real OCI images for tests, without a Docker engine: an OCI layout assembled from busybox-static,
and the real clients (skopeo, podman) that move them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "cat", "ls", "id", "pwd", "echo", "wc", "tr", "env", "mkdir", "sleep", "true")
RUN_SH = """#!/bin/sh
# reads every file of its input, writes their words upper-cased and who ran it
set -e
mkdir -p "$2"
cat "$1"/* | tr a-z A-Z > "$2/result"
echo "uid=$(id -u) cwd=$(pwd) greeting=$GREETING args=$*" > "$2/about"
"""


def tar_layer(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]], compress: bool = True) -> bytes:
    """A layer from TarInfos (directories, links) and (TarInfo, content) pairs (files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info, content = entry if isinstance(entry, tuple) else (entry, None)
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return gzip.compress(buf.getvalue(), 1) if compress else buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def busybox_layer(user_line: str = "app:x:1000:1000::/tmp:/bin/sh") -> bytes:
    files = [entry("bin", tarfile.DIRTYPE, mode=0o755), entry("app", tarfile.DIRTYPE, mode=0o755)]
    files.append((entry("bin/busybox", mode=0o755), Path(BUSYBOX).read_bytes()))
    files += [entry(f"bin/{name}", tarfile.SYMTYPE, "busybox") for name in APPLETS]
    files.append((entry("app/run.sh", mode=0o755), RUN_SH.encode()))
    files.append(entry("etc", tarfile.DIRTYPE, mode=0o755))
    files.append((entry("etc/passwd"), f"root:x:0:0::/root:/bin/sh\n{user_line}\n".encode()))
    files.append((entry("etc/group"), b"root:x:0:\napp:x:1000:\n"))
    return tar_layer(files)


def default_config(**settings) -> dict:
    config = {
        "Entrypoint": ["/bin/sh", "/app/run.sh"],
        "Cmd": ["/in/text", "/out/result"],
        "Env": ["PATH=/bin", "GREETING=hello"],
        "WorkingDir": "/app",
        "User": "app",
    }
    config.update(settings)
    return config


def oci_layout(dest: Path, tag: str = "v1", layers: list[bytes] | None = None, **settings) -> Path:
    """An OCI image layout at ``dest`` holding one image tagged ``tag`` (busybox by default)."""
    layers = layers if layers is not None else [busybox_layer()]
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    diff_ids = [_diff_id(layer) for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": default_config(**settings),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor(blobs, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [_descriptor(blobs, layer, _layer_type(layer)) for layer in layers],
    }
    top = _descriptor(blobs, json.dumps(manifest).encode(), manifest["mediaType"])
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return dest


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)


def push_layout(layout: Path, registry: str, name: str, tag: str = "v1", *extra: str) -> subprocess.CompletedProcess:
    return skopeo("copy", "--dest-tls-verify=false", *extra, f"oci:{layout}:{tag}", f"docker://{registry}/{name}:{tag}")


def podman(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """podman with its own storage under ``tmp`` (never the machine's) and runc (crun fails here)."""
    runroot = f"/tmp/kf-podman-{hashlib.sha1(str(tmp).encode()).hexdigest()[:10]}"  # podman wants < 50 chars
    store = ["--root", str(tmp / "podman-root"), "--runroot", runroot, "--storage-driver", "vfs"]
    cmd = ["podman", "--runtime", "runc", *store, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def _descriptor(blobs: Path, content: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(content).hexdigest()
    (blobs / digest).write_bytes(content)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(content)}


def _diff_id(layer: bytes) -> str:
    raw = gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _layer_type(layer: bytes) -> str:
    gz = layer[:2] == b"\x1f\x8b"
    return "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else "")
