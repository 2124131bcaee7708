"""The registry's storage: blobs by digest, upload sessions, and each repository's manifests and tags.

Layout under ``<data-dir>/registry/``::

    blobs/sha256/<hex>                  every blob and manifest, named by its verified digest
    uploads/<uuid>                      bytes of an upload in progress (its size is the offset)
    repositories/<name>/_manifests/<hex>  the media type of a manifest this repository holds
    repositories/<name>/_tags/<tag>       the digest a tag points to

A blob appears in ``blobs/`` only by a rename after its digest was checked, so an interrupted
upload or a wrong digest leaves nothing visible. Repository components start with a letter or
digit (the distribution spec's grammar), so ``_manifests`` and ``_tags`` cannot be names.
Blobs are shared by every repository (one token guards the whole registry).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..diskspace import free_bytes

NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST = re.compile(r"sha256:([a-f0-9]{64})")
UPLOAD_ID = re.compile(r"[a-f0-9]{32}")
PIECE = 1 << 20
UPLOAD_TTL = 24 * 3600  # an upload untouched this long is abandoned
MAX_UPLOADS = 256
DEFAULT_RESERVE = 256 << 20  # free bytes kept when no operator reserve is set


class StorageError(Exception):
    """A request the storage refuses: ``code`` is the distribution API's error code."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def check_free_disk(path: Path, incoming: int, reserve: int) -> None:
    """Refuse bytes that would eat into the free-disk reserve, as the registry's 507."""
    if free_bytes(path) - incoming < reserve:
        raise StorageError("DENIED", "the server's disk is full: the upload is refused", 507)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or len(name) > 255:
        raise StorageError("NAME_INVALID", f"invalid repository name: {name!r}")
    return name


def hex_of(digest: str) -> str:
    found = DIGEST.fullmatch(digest or "")
    if not found:
        raise StorageError("DIGEST_INVALID", f"not a sha256 digest: {digest!r}")
    return found.group(1)


class BlobStore:
    def __init__(self, root: Path, reserve: int = DEFAULT_RESERVE, max_blob: int | None = None):
        self.root = Path(root)
        self.reserve, self.max_blob = reserve, max_blob
        for sub in ("blobs/sha256", "uploads", "repositories"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # -- blobs ----------------------------------------------------------------------------------

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob(digest).is_file()

    def open_blob(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob(digest), "rb")
        except FileNotFoundError:
            raise StorageError("BLOB_UNKNOWN", f"blob unknown to registry: {digest}", 404) from None

    def put_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Store small content (a manifest) and return its digest, which must be ``digest`` when given."""
        upload = self.start_upload()
        with open(self._upload(upload), "ab") as f:
            f.write(data)
        return self.finish_upload(upload, digest or "sha256:" + hashlib.sha256(data).hexdigest())

    # -- uploads --------------------------------------------------------------------------------

    def start_upload(self) -> str:
        self._drop_stale_uploads()
        if sum(1 for _ in (self.root / "uploads").iterdir()) >= MAX_UPLOADS:
            raise StorageError("TOOMANYREQUESTS", "too many uploads in progress; retry later", 429)
        upload = uuid.uuid4().hex
        self._upload(upload).touch(exist_ok=False)
        return upload

    def upload_size(self, upload: str) -> int:
        try:
            return self._upload(upload).stat().st_size
        except FileNotFoundError:
            raise StorageError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404) from None

    def append(self, upload: str, stream: BinaryIO, length: int | None, start: int | None = None) -> int:
        """Append the request body to the upload; returns the new size. ``start`` (from
        Content-Range) must be where the upload is now."""
        size = self.upload_size(upload)
        if start is not None and start != size:
            raise StorageError("BLOB_UPLOAD_INVALID", f"the upload is at {size}, not {start}", 416)
        self._check_room(size, length or 0)
        with open(self._upload(upload), "ab") as f:
            for piece in _pieces(stream, length):
                size += len(piece)
                if size % (64 << 20) < len(piece):
                    self._check_room(size, 0)  # a long body without a length: look again now and then
                if self.max_blob is not None and size > self.max_blob:
                    raise StorageError("SIZE_INVALID", f"a blob may hold at most {self.max_blob} bytes", 413)
                f.write(piece)
        return size

    def finish_upload(self, upload: str, digest: str) -> str:
        """Verify the upload's digest and make it the blob ``digest``; a mismatch drops it."""
        expected, path = hex_of(digest), self._upload(upload)
        self.upload_size(upload)
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
            os.fsync(f.fileno())  # the blob must survive a crash once we say it is there
        if actual != expected:
            self.cancel_upload(upload)
            raise StorageError("DIGEST_INVALID", f"the content's digest is sha256:{actual}, not {digest}")
        final = self.blob(digest)
        if final.exists():
            path.unlink()
        else:
            os.rename(path, final)
        return digest

    def cancel_upload(self, upload: str) -> None:
        self._upload(upload).unlink(missing_ok=True)

    def _upload(self, upload: str) -> Path:
        if not UPLOAD_ID.fullmatch(upload):
            raise StorageError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
        return self.root / "uploads" / upload

    def _drop_stale_uploads(self) -> None:
        cutoff = time.time() - UPLOAD_TTL
        for path in (self.root / "uploads").iterdir():
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)

    def _check_room(self, size: int, incoming: int) -> None:
        if self.max_blob is not None and size + incoming > self.max_blob:
            raise StorageError("SIZE_INVALID", f"a blob may hold at most {self.max_blob} bytes", 413)
        check_free_disk(self.root, incoming, self.reserve)

    # -- manifests and tags -----------------------------------------------------------------------

    def link_manifest(self, name: str, digest: str, media_type: str, tag: str | None) -> None:
        _write_atomic(self._repo(name) / "_manifests" / hex_of(digest), media_type)
        if tag is not None:
            _write_atomic(self._repo(name) / "_tags" / tag, digest)

    def resolve(self, name: str, reference: str) -> tuple[str, str]:
        """(digest, media type) of a tag or digest in repository ``name``."""
        digest = self._tag_digest(name, reference) if TAG.fullmatch(reference) else reference
        try:
            media_type = (self._repo(name) / "_manifests" / hex_of(digest)).read_text()
        except (FileNotFoundError, StorageError):
            raise StorageError("MANIFEST_UNKNOWN", f"manifest unknown: {name}:{reference}", 404) from None
        return digest, media_type

    def tags(self, name: str) -> list[str]:
        folder = self._repo(name) / "_tags"
        if not folder.is_dir():
            raise StorageError("NAME_UNKNOWN", f"repository name not known to registry: {name}", 404)
        return sorted(p.name for p in folder.iterdir() if TAG.fullmatch(p.name))

    def repositories(self) -> Iterator[str]:
        base = self.root / "repositories"
        for folder in sorted(base.rglob("_manifests")):
            yield str(folder.parent.relative_to(base))

    def _tag_digest(self, name: str, tag: str) -> str:
        try:
            return (self._repo(name) / "_tags" / tag).read_text()
        except FileNotFoundError:
            raise StorageError("MANIFEST_UNKNOWN", f"manifest unknown: {name}:{tag}", 404) from None

    def _repo(self, name: str) -> Path:
        return self.root / "repositories" / check_name(name)


def _pieces(stream: BinaryIO, length: int | None) -> Iterator[bytes]:
    left = length
    while left is None or left > 0:
        piece = stream.read(PIECE if left is None else min(PIECE, left))
        if not piece:
            if left:
                raise StorageError("BLOB_UPLOAD_INVALID", "the request body ended early")
            return
        if left is not None:
            left -= len(piece)
        yield piece


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
