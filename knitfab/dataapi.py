"""``/api/data``: find, upload, download and tag Data (spec §3 D1–D4, §4.1, §4.2)."""

from __future__ import annotations

import logging
import shutil

from flask import Blueprint, Response, request

from knit import archive

from . import data
from .errors import BadRequest, KnitfabError, disk_full
from .http import body, reply, services, store, string_list, time_window
from .tags import parse_tag, tag_from_json

bp = Blueprint("data", __name__, url_prefix="/api/data")
log = logging.getLogger("knitfab.upload")
GZIP_TYPES = {"application/tar+gzip", "application/gzip", "application/x-gzip", "application/x-tar+gzip"}
TAR_TYPES = {"application/x-tar", "application/tar"}


@bp.get("/")
def find():
    tags = [parse_tag(t) for t in request.args.getlist("tag")]
    since, until = time_window()
    return reply(data.find_data(store(), tags, since, until))


@bp.get("/<knit_id>/")
def download(knit_id: str):
    data.show_data(store(), knit_id)  # 404 for an unknown knitId
    root = store().layout.current(knit_id)
    plain = request.args.get("format") == "tar" or request.accept_mimetypes.best == "application/x-tar"
    tarball = archive.pack(root, compressed=not plain)
    trailers = request.environ.get("knitfab.trailers")

    def stream():
        yield from tarball
        if trailers is not None:
            trailers["x-checksum-md5"] = tarball.md5.hexdigest()

    content_type = "application/x-tar" if plain else "application/tar+gzip"
    return Response(stream(), content_type=content_type, headers={"Trailer": "x-checksum-md5"})


@bp.put("/<knit_id>/")
def change_tags(knit_id: str):
    reason = "format error"
    doc = body({"add", "remove", "remove_key"}, reason)
    try:
        add = [tag_from_json(t) for t in string_list(doc, "add", reason)]
        remove = [tag_from_json(t) for t in string_list(doc, "remove", reason)]
        keys = string_list(doc, "remove_key", reason)
        if not all(isinstance(k, str) for k in keys):
            raise BadRequest("remove_key must be a list of strings")
    except BadRequest as e:
        raise BadRequest(e.message, reason) from None
    detail = data.change_tags(store(), knit_id, add, remove, keys)
    services().wake()
    return reply(detail)


@bp.post("/")
def upload():
    """Stream the archive into staging, then publish it as one rename (§4.1)."""
    compressed = _compressed()
    run_id, knit_id = data.begin_upload(store())
    staging = store().layout.staging(knit_id)
    try:
        staging.mkdir(parents=True)
        digest = archive.unpack(request.stream, staging, compressed)
        _verify(digest)
        store().layout.publish(knit_id)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, archive.ArchiveError):
            e = BadRequest(str(e))
        message = e.message if isinstance(e, KnitfabError) else f"upload failed: {type(e).__name__}: {e}"
        log.warning("upload %s failed: %s", knit_id, message)
        data.end_upload(store(), run_id, ok=False, message=message.replace("\n", ": "))
        if (full := disk_full(e)) is not None:
            raise full from None
        if isinstance(e, OSError) and e.errno is not None:
            raise KnitfabError(f"cannot store the Data: {e.strerror}", reason="unexpected error") from None
        raise e from None
    data.end_upload(store(), run_id, ok=True)
    services().wake()
    return reply(data.show_data(store(), knit_id))


def _compressed() -> bool:
    mimetype = request.mimetype or "application/tar+gzip"
    if mimetype in GZIP_TYPES:
        return True
    if mimetype in TAR_TYPES:
        return False
    raise BadRequest(f"send the Data as application/tar+gzip or application/x-tar, not {mimetype}")


def _verify(digest: str) -> None:
    """Check the ``x-checksum-md5`` trailer (or header) when the client sent one."""
    sent = request.environ.get("knitfab.request_trailers", {}).get("x-checksum-md5")
    sent = sent or request.headers.get("x-checksum-md5")
    if sent and sent.strip().lower() != digest:
        raise BadRequest(f"the body's MD5 is {digest}, the client said {sent.strip()}", reason="hash is not match.")
