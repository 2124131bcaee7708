"""The server's image registry from ``knit``: push a ``docker save`` / OCI archive, read an image config.

The registry is ``--registry HOST:PORT`` (or ``$KNIT_REGISTRY``), else the profile's API host on
port 30503, with the profile's scheme, CA and token. An archive is read from its file: each
layer streams from the tar into the upload (read twice: once for its digest, once to send), so
no layer is held in memory. A ``docker save`` archive is pushed as an OCI image manifest
(its layers are plain tars, which schema 2 cannot describe); an OCI archive as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from .client import KnitClient, KnitError

if TYPE_CHECKING:
    import tarfile

    import requests

DEFAULT_PORT = 30503
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ACCEPT = ", ".join([
    OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])  # fmt: skip
MAX_JSON = 16 << 20
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def split_reference(reference: str) -> tuple[str, str]:
    """``[host:port/]name[:tag]`` → (name in the registry, tag); the host is the registry's business."""
    first, slash, rest = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        reference = rest
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return name, tag


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str
    member: tarfile.TarInfo  # where it is in the archive


class Registry:
    def __init__(self, base: str, http: requests.Session):
        self.base, self.http = base.rstrip("/"), http

    @classmethod
    def of(cls, client: KnitClient, registry: str | None = None) -> Registry:
        given = registry or os.environ.get("KNIT_REGISTRY")
        api = urlsplit(client.api_root)
        if given and "://" not in given:
            given = f"{api.scheme}://{given}"
        return cls(given or f"{api.scheme}://{api.hostname}:{DEFAULT_PORT}", client.http)

    # -- reading ---------------------------------------------------------------------------------

    def image_config(self, reference: str) -> dict:
        """The image config (with ``config``, ``os``, ``rootfs``) of a tag, for this platform."""
        name, tag = split_reference(reference)
        manifest = self._json(f"/v2/{name}/manifests/{tag}", {"Accept": ACCEPT})
        if manifest.get("manifests"):
            manifest = self._json(f"/v2/{name}/manifests/{_for_platform(manifest)}", {"Accept": ACCEPT})
        try:
            return self._json(f"/v2/{name}/blobs/{manifest['config']['digest']}")
        except (KeyError, TypeError):
            raise KnitError(f"{reference} is not an image in the registry") from None

    def _json(self, path: str, headers: dict | None = None) -> dict:
        response = self._call("GET", path, headers=headers, stream=True)
        raw = response.raw.read(MAX_JSON + 1, decode_content=True)
        try:
            doc = json.loads(raw)
        except ValueError:
            raise KnitError(f"the registry sent no JSON for {path}") from None
        if not isinstance(doc, dict):
            raise KnitError(f"the registry sent no JSON object for {path}")
        return doc

    # -- pushing ---------------------------------------------------------------------------------

    def push_blob(self, name: str, blob: Blob, tar: tarfile.TarFile) -> None:
        if self._call("HEAD", f"/v2/{name}/blobs/{blob.digest}", ok=(200, 404)).status_code == 200:
            return
        started = self._call("POST", f"/v2/{name}/blobs/uploads/", ok=(202,))
        location = urljoin(self.base + "/", started.headers["Location"])
        body = tar.extractfile(blob.member)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
        self._call("PUT", location, params={"digest": blob.digest}, data=body, headers=headers, ok=(201,))

    def push_manifest(self, name: str, tag: str, manifest: bytes, media_type: str) -> None:
        headers = {"Content-Type": media_type}
        self._call("PUT", f"/v2/{name}/manifests/{tag}", data=manifest, headers=headers, ok=(201,))

    def _call(self, method: str, path: str, ok=(200,), **kwargs) -> requests.Response:
        import requests  # here: `knit` start-up does not import it

        url = path if "://" in path else self.base + path
        try:
            # verify given per request: $REQUESTS_CA_BUNDLE would replace the session's (the profile's CA)
            response = self.http.request(method, url, timeout=600, verify=self.http.verify, **kwargs)
        except requests.RequestException as e:
            raise KnitError(f"cannot reach the image registry at {self.base}: {e}") from None
        if response.status_code not in ok:
            raise KnitError(f"the image registry refused {method} {urlsplit(url).path}", response.status_code,
                            _errors(response))  # fmt: skip
        return response


def _errors(response: requests.Response) -> str:
    try:
        return "; ".join(f"{e['code']}: {e['message']}" for e in response.json()["errors"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


def _for_platform(index: dict) -> str:
    arch = ARCH.get(platform.machine(), platform.machine())
    for entry in index["manifests"]:
        wanted = entry.get("platform") or {}
        if wanted.get("os", "linux") == "linux" and wanted.get("architecture", arch) == arch:
            return entry["digest"]
    raise KnitError(f"the image has no manifest for linux/{arch}")


def file_digest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    with tar.extractfile(member) as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
