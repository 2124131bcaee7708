"""Images of the registry as the local runner sees them: a config and one unpacked root each.

``ImageCache.find("localhost:30503/train:v1")`` reads the tag's manifest (from an index, the
manifest for this machine's platform), the image config and the layer list. ``rootfs(image)``
returns ``<data-dir>/rootfs/<key>/root``, where ``key`` is the sha256 of the layer digests: the
same layers are unpacked once, whatever the tag. Unpacking happens in ``.tmp-*`` beside it and
is renamed into place when complete, so a crash never leaves a half root in use.

The cache is bounded: after each unpack, the least recently used roots are removed until the
total is under ``limit`` bytes, except those a live run uses (``in_use``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .blobs import BlobStore, StorageError
from .rootfs import LayerError, Unpacker

MAX_CONFIG = 16 << 20
INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class Image:
    reference: str  # as the plan wrote it
    repository: str  # in our registry
    config: dict = field(hash=False)  # the image config's "config" (Entrypoint, Cmd, Env, ...)
    layers: tuple[tuple[str, str], ...] = ()  # (digest, media type), lowest first

    @property
    def key(self) -> str:
        return hashlib.sha256("\n".join(d for d, _ in self.layers).encode()).hexdigest()


class ImageCache:
    def __init__(self, blobs: BlobStore, root: Path, hosts: Iterable[str], limit: int):
        self.blobs, self.root, self.hosts, self.limit = blobs, Path(root), set(hosts), limit
        self.in_use: Callable[[], set[str]] = set
        self.push_host = "localhost:30503"  # what users push to, for the runner's advice
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # an unpack a crash interrupted

    def repository(self, reference: str) -> tuple[str, str] | None:
        """(repository, tag) in our registry of a plan's ``image:version``, or None when it
        names another registry."""
        name, _, tag = reference.rpartition(":")
        first, slash, rest = name.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            if first not in self.hosts:
                return None
            name = rest
        return name, tag

    def find(self, reference: str) -> Image | None:
        """The image a plan names, when our registry has it."""
        found = self.repository(reference)
        if found is None:
            return None
        name, tag = found
        try:
            manifest = self._manifest(name, tag)
            config = self._json(manifest["config"]["digest"])
            layers = tuple((item["digest"], item.get("mediaType", "")) for item in manifest.get("layers") or [])
        except StorageError:
            return None
        except (KeyError, TypeError):
            raise LayerError(f"the manifest of {reference} is not an image manifest") from None
        settings = config.get("config") if isinstance(config, dict) else None
        return Image(reference, name, settings if isinstance(settings, dict) else {}, layers)

    def rootfs(self, image: Image) -> Path:
        """The image's unpacked root (read-only by convention: runs get it through ro binds)."""
        with self._lock:  # one unpack at a time; the second caller finds it done
            final = self.root / image.key
            if not final.exists():
                self._unpack(image, final)
                self.collect(keep={image.key})
            os.utime(final)  # last use, for collect()
        return final / "root"

    def collect(self, keep: set[str] = frozenset()) -> None:
        """Remove least recently used roots until the cache holds at most ``limit`` bytes."""
        entries = [(p.stat().st_mtime, p) for p in self.root.iterdir() if not p.name.startswith(".")]
        sizes = {p: _size(p) for _, p in entries}
        total, busy = sum(sizes.values()), self.in_use() | keep
        for _, path in sorted(entries):
            if total <= self.limit:
                return
            if path.name not in busy:
                shutil.rmtree(path, ignore_errors=True)
                total -= sizes[path]

    def _unpack(self, image: Image, final: Path) -> None:
        tmp = self.root / f".tmp-{image.key}-{uuid.uuid4().hex}"
        (tmp / "root").mkdir(parents=True)
        unpacker = Unpacker(tmp / "root", self.blobs.reserve)
        try:
            for digest, media_type in image.layers:
                if "zstd" in media_type:
                    raise LayerError(f"layer {digest} is zstd-compressed; push it gzip-compressed or plain")
                with self.blobs.open_blob(digest) as layer:
                    unpacker.apply(layer)
            (tmp / "size").write_text(str(unpacker.written))
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            unpacker.close()

    def _manifest(self, name: str, tag: str) -> dict:
        digest, media_type = self.blobs.resolve(name, tag)
        doc = self._json(digest)
        if media_type in INDEX_TYPES or doc.get("manifests"):
            digest = _platform_manifest(doc)
            doc = self._json(digest)
        return doc

    def _json(self, digest: str) -> dict:
        with self.blobs.open_blob(digest) as f:
            raw = f.read(MAX_CONFIG + 1)
        if len(raw) > MAX_CONFIG:
            raise LayerError(f"{digest} is too large for an image config or manifest")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise LayerError(f"{digest} is not JSON") from None
        if not isinstance(doc, dict):
            raise LayerError(f"{digest} is not a JSON object")
        return doc


def _platform_manifest(index: dict) -> str:
    arch = ARCH.get(platform.machine(), platform.machine())
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    for entry in entries:
        wanted = entry.get("platform") or {}
        if wanted.get("os", "linux") == "linux" and wanted.get("architecture", arch) == arch:
            return entry["digest"]
    raise LayerError(f"the image index has no manifest for linux/{arch}")


def _size(path: Path) -> int:
    try:
        return int((path / "size").read_text())
    except (OSError, ValueError):
        return 0
