"""``knit image push IMAGE.tar``: a ``docker save`` or OCI archive into the server's registry,
for users without a docker client. Every tag of the archive is pushed, its registry host
dropped (``localhost:30503/train:v1`` goes to the server's registry as ``train:v1``)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .client import KnitError
from .context import Context, command
from .registry import OCI_CONFIG, OCI_MANIFEST, Blob, Registry, file_digest, split_reference

if TYPE_CHECKING:
    import tarfile  # imported by the command itself: `knit` start-up does not need it

REF_NAME = "org.opencontainers.image.ref.name"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def register(verbs, common) -> None:
    """The commands of the group (its sub-parsers ``verbs``; cli.GROUPS names it)."""
    push = command(verbs, common, "image push", "push a `docker save` or OCI archive to the server's registry")
    push.add_argument("archive", metavar="IMAGE.tar", help="`docker save` output, or an OCI archive")
    push.add_argument("--tag", metavar="NAME:TAG", help="push as this name (default: the archive's tags)")
    push.add_argument("--registry", metavar="HOST:PORT", help="the registry (default: the API host, port 30503)")
    push.set_defaults(func=cmd_push)


def cmd_push(ctx: Context, args: argparse.Namespace) -> int:
    import tarfile

    registry = Registry.of(ctx.client, args.registry)
    try:
        with tarfile.open(args.archive) as tar:
            for reference, manifest, blobs in _images(tar, args.tag):
                name, tag = split_reference(reference)
                for blob in blobs:
                    registry.push_blob(name, blob, tar)
                registry.push_manifest(name, tag, manifest, OCI_MANIFEST)
                ctx.out(f"{registry.base.split('://')[1]}/{name}:{tag}\n")
    except (OSError, tarfile.TarError) as e:
        raise KnitError(f"cannot read the image archive {args.archive}: {e}") from None
    return 0


def _images(tar: tarfile.TarFile, tag: str | None):
    """(reference, manifest bytes, blobs) of every image of the archive."""
    names = set(tar.getnames())
    if "manifest.json" in names:
        yield from _docker_images(tar, tag)
    elif "index.json" in names:
        yield from _oci_images(tar, tag)
    else:
        raise KnitError("not an image archive: it has neither manifest.json (docker save) nor index.json (OCI)")


def _docker_images(tar: tarfile.TarFile, tag: str | None):
    for entry in _load(tar, "manifest.json"):
        config = _blob(tar, entry["Config"], OCI_CONFIG)
        layers = [_blob(tar, path, LAYER) for path in entry["Layers"]]
        for layer in layers:
            if _gzipped(tar, layer.member):
                layer.media_type += "+gzip"
        manifest = _manifest(config, layers)
        for reference in [tag] if tag else entry.get("RepoTags") or []:
            yield reference, manifest, [*layers, config]
        if not tag and not entry.get("RepoTags"):
            raise KnitError("the archive's image has no tag: give one with --tag NAME:TAG")


def _oci_images(tar: tarfile.TarFile, tag: str | None):
    for top in _load(tar, "index.json").get("manifests", []):
        reference = tag or (top.get("annotations") or {}).get(REF_NAME)
        if not reference:
            raise KnitError("the archive's image has no tag: give one with --tag NAME:TAG")
        manifest_blob = _blob(tar, _path(top["digest"]), top["mediaType"])
        doc = json.loads(tar.extractfile(manifest_blob.member).read())
        if doc.get("manifests"):
            raise KnitError("multi-platform OCI archives are not supported: save one platform")
        blobs = [_blob(tar, _path(d["digest"]), d["mediaType"]) for d in [*doc["layers"], doc["config"]]]
        yield reference, tar.extractfile(manifest_blob.member).read(), blobs


def _manifest(config: Blob, layers: list[Blob]) -> bytes:
    def descriptor(blob: Blob) -> dict:
        return {"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size}

    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config)}
    doc["layers"] = [descriptor(layer) for layer in layers]
    return json.dumps(doc).encode()


def _blob(tar: tarfile.TarFile, path: str, media_type: str) -> Blob:
    member = tar.getmember(path.removeprefix("./"))
    return Blob(file_digest(tar, member), member.size, media_type, member)


def _gzipped(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bool:
    with tar.extractfile(member) as f:
        return f.read(2) == b"\x1f\x8b"  # gzip's magic number


def _path(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    return f"blobs/{algorithm}/{hexa}"


def _load(tar: tarfile.TarFile, name: str):
    try:
        return json.loads(tar.extractfile(name).read(16 << 20))
    except (KeyError, ValueError, AttributeError):
        raise KnitError(f"the archive's {name} is not readable JSON") from None
