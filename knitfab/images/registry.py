"""The OCI distribution API (Docker Registry HTTP API v2) over a ``BlobStore``.

``create_registry(store, token)`` is a Flask app served on its own port by ``knitfab serve``
(``--registry-port``): ``docker push localhost:30503/name:tag`` as with Knitfab's in-cluster
registry. It answers ``/v2/``, blob uploads (monolithic ``POST ?digest=``, ``POST`` + ``PUT``,
chunked ``PATCH``es, cross-repository mounts), blob and manifest ``GET``/``HEAD``/``PUT`` and
``tags/list``, for Docker v2 schema 2 and OCI manifests and indexes.

With a token, every request needs it, either ``Authorization: Bearer <token>`` or Basic
credentials whose password is the token (``docker login -u knit -p <token>``); the challenge is
Basic, so clients never look for a token server. Errors have the spec's shape
``{"errors": [{"code", "message"}]}``. Nothing here knows about runs or the local runner.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re

from flask import Flask, Response, current_app, request

from .blobs import DIGEST, TAG, BlobStore, StorageError, check_name, hex_of

MAX_MANIFEST = 4 << 20
MANIFEST_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json": "image",
    "application/vnd.docker.distribution.manifest.list.v2+json": "index",
    "application/vnd.oci.image.manifest.v1+json": "image",
    "application/vnd.oci.image.index.v1+json": "index",
}
ROUTES = [
    (re.compile(r"(?P<name>.+)/blobs/uploads/?"), "uploads"),
    (re.compile(r"(?P<name>.+)/blobs/uploads/(?P<upload>[^/]+)"), "upload"),
    (re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)"), "blob"),
    (re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)"), "manifest"),
    (re.compile(r"(?P<name>.+)/tags/list"), "tags"),
]
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


def create_registry(store: BlobStore, token: str | None = None) -> Flask:
    app = Flask("knitfab.registry")
    app.config["MAX_CONTENT_LENGTH"] = None
    app.extensions["registry"] = Handlers(store)

    @app.before_request
    def authenticate():
        if token and not _authorized(request.headers.get("Authorization", ""), token):
            raise StorageError("UNAUTHORIZED", "authentication required: the server's token", 401)

    app.add_url_rule("/v2/", "base", lambda: _reply({}), methods=["GET", "HEAD"])
    app.add_url_rule("/v2/_catalog", "catalog", lambda: _reply({"repositories": list(store.repositories())}))
    app.add_url_rule(
        "/v2/<path:rest>", "dispatch", _dispatch, methods=["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
    )
    app.register_error_handler(StorageError, _error)
    app.register_error_handler(404, lambda e: _error(StorageError("NAME_UNKNOWN", "no such endpoint", 404)))
    app.register_error_handler(405, lambda e: _error(StorageError("UNSUPPORTED", "method not allowed", 405)))
    return app


def _dispatch(rest: str) -> Response:
    handlers = current_app.extensions["registry"]
    for pattern, method in ROUTES:
        found = pattern.fullmatch(rest)
        if found:
            check_name(found["name"])
            return getattr(handlers, method)(**found.groupdict())
    raise StorageError("NAME_UNKNOWN", "no such endpoint", 404)


def _authorized(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def _error(e: StorageError) -> Response:
    body = {"errors": [{"code": e.code, "message": e.message, "detail": None}]}
    response = _reply(body, e.status)
    if e.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="knitfab registry"'
    return response


def _reply(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status, {**API_VERSION, **(headers or {})}, mimetype="application/json")


def _empty(status: int, headers: dict) -> Response:
    return Response(b"", status, {**API_VERSION, "Content-Length": "0", **headers})


class Handlers:
    """One method per endpoint; ``name`` is the repository, already cut from the path."""

    def __init__(self, store: BlobStore):
        self.store = store

    # -- blob uploads ----------------------------------------------------------------------------

    def uploads(self, name: str) -> Response:
        if request.method != "POST":
            raise StorageError("UNSUPPORTED", "method not allowed", 405)
        mount = request.args.get("mount")
        if mount and self.store.has_blob(mount):
            return self._created(name, mount)
        upload = self.store.start_upload()
        digest = request.args.get("digest")
        if digest is None:
            return self._accepted(name, upload, 0)
        self._append(upload)
        return self._created(name, self._finish(upload, digest))

    def upload(self, name: str, upload: str) -> Response:
        method = request.method
        if method == "GET":
            return _empty(204, self._progress(name, upload, self.store.upload_size(upload)))
        if method == "DELETE":
            self.store.upload_size(upload)
            self.store.cancel_upload(upload)
            return _empty(204, {})
        if method == "PATCH":
            return self._accepted(name, upload, self._append(upload, _range_start()))
        if method == "PUT":
            digest = request.args.get("digest", "")
            hex_of(digest)  # a PUT without a valid digest leaves the upload as it was
            self._append(upload)
            return self._created(name, self._finish(upload, digest))
        raise StorageError("UNSUPPORTED", "method not allowed", 405)

    def _append(self, upload: str, start: int | None = None) -> int:
        try:
            return self.store.append(upload, request.stream, request.content_length, start)
        except StorageError as e:
            if e.code == "SIZE_INVALID":
                self.store.cancel_upload(upload)
            raise

    def _finish(self, upload: str, digest: str) -> str:
        return self.store.finish_upload(upload, digest)

    def _accepted(self, name: str, upload: str, size: int) -> Response:
        return _empty(202, self._progress(name, upload, size))

    def _progress(self, name: str, upload: str, size: int) -> dict:
        return {
            "Location": f"/v2/{name}/blobs/uploads/{upload}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload,
        }

    def _created(self, name: str, digest: str) -> Response:
        return _empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    # -- blobs, manifests, tags ---------------------------------------------------------------------

    def blob(self, name: str, digest: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise StorageError("UNSUPPORTED", "method not allowed", 405)
        f = self.store.open_blob(digest)
        headers = {"Docker-Content-Digest": digest, "Content-Length": str(_size(f))}
        return self._content(f, headers, "application/octet-stream")

    def manifest(self, name: str, reference: str) -> Response:
        if request.method == "PUT":
            return self._put_manifest(name, reference)
        if request.method not in ("GET", "HEAD"):
            raise StorageError("UNSUPPORTED", "method not allowed", 405)
        digest, media_type = self.store.resolve(name, reference)
        f = self.store.open_blob(digest)
        return self._content(f, {"Docker-Content-Digest": digest, "Content-Length": str(_size(f))}, media_type)

    def tags(self, name: str) -> Response:
        tags = self.store.tags(name)
        last, count = request.args.get("last"), request.args.get("n", type=int)
        if last:
            tags = [t for t in tags if t > last]
        if count is not None:
            tags = tags[: max(count, 0)]
        return _reply({"name": name, "tags": tags})

    def _content(self, f, headers: dict, media_type: str) -> Response:
        if request.method == "HEAD":
            f.close()
            return Response(b"", 200, {**API_VERSION, **headers, "Content-Type": media_type})
        return Response(_stream(f), 200, {**API_VERSION, **headers}, content_type=media_type)

    def _put_manifest(self, name: str, reference: str) -> Response:
        raw = request.stream.read(MAX_MANIFEST + 1)
        if len(raw) > MAX_MANIFEST:
            raise StorageError("SIZE_INVALID", f"a manifest may hold at most {MAX_MANIFEST} bytes", 413)
        media_type = self._check_manifest(name, raw)
        tag = reference if TAG.fullmatch(reference) else None
        if tag is None and not DIGEST.fullmatch(reference):
            raise StorageError("TAG_INVALID", f"not a tag nor a digest: {reference!r}")
        digest = self.store.put_bytes(raw, None if tag else reference)
        self.store.link_manifest(name, digest, media_type, tag)
        return _empty(201, {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest})

    def _check_manifest(self, name: str, raw: bytes) -> str:
        """The manifest's media type, once every blob (or manifest) it names is here."""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise StorageError("MANIFEST_INVALID", "the manifest is not JSON") from None
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
            raise StorageError("MANIFEST_INVALID", "only schemaVersion 2 manifests are supported")
        media_type = doc.get("mediaType") or request.mimetype
        kind = MANIFEST_TYPES.get(media_type)
        if kind is None:
            raise StorageError("MANIFEST_INVALID", f"unsupported manifest media type: {media_type!r}")
        for digest in _references(doc, kind):
            known = self.store.has_blob(digest) if kind == "image" else self._has_manifest(name, digest)
            if not known:
                raise StorageError("MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {digest}")
        return media_type

    def _has_manifest(self, name: str, digest: str) -> bool:
        try:
            self.store.resolve(name, digest)
        except StorageError:
            return False
        return True


def _references(doc: dict, kind: str) -> list[str]:
    items = [doc.get("config")] + list(doc.get("layers") or []) if kind == "image" else list(doc.get("manifests") or [])
    digests = [item.get("digest") if isinstance(item, dict) else None for item in items]
    for digest in digests:
        if not isinstance(digest, str):
            raise StorageError("MANIFEST_INVALID", "every descriptor needs a digest")
        hex_of(digest)
    return digests


def _range_start() -> int | None:
    """The start of a PATCH's ``Content-Range: <start>-<end>``, when the client sent one."""
    found = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)", request.headers.get("Content-Range", "").strip())
    return int(found.group(1)) if found else None


def _size(f) -> int:
    return os.fstat(f.fileno()).st_size


def _stream(f):
    with f:
        while piece := f.read(1 << 20):
            yield piece
