"""``/api/data``: find, upload, download and tag Data (spec §3 D1–D4, §4.1, §4.2)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from knit import archive

from ..errors import BadRequest
from ..paging import parse_page
from ..store import data
from ..tags import parse_tag, tag_from_json
from . import render
from .web import body, reply, services, store, string_list, time_window

bp = Blueprint("data", __name__, url_prefix="/api/data")
GZIP_TYPES = {"application/tar+gzip", "application/gzip", "application/x-gzip", "application/x-tar+gzip"}
TAR_TYPES = {"application/x-tar", "application/tar"}


@bp.get("/")
def find():
    tags = [parse_tag(t) for t in request.args.getlist("tag")]
    since, until = time_window()
    return reply(render.data_list(data.find_data(store(), tags, since, until, parse_page(request.args))))


@bp.get("/<knit_id>/")
def download(knit_id: str):
    data.require(store(), knit_id)
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
    return reply(render.data(data.change_tags(store(), knit_id, add, remove, keys)))


@bp.post("/")
def upload():
    """Unpack the archive as it arrives and publish it as a new Data (§4.1)."""
    detail = data.receive_upload(
        store(), request.stream, _compressed(), services().upload_limits, request.content_length, _claimed_md5
    )
    return reply(render.data(detail))


def _compressed() -> bool:
    mimetype = request.mimetype or "application/tar+gzip"
    if mimetype in GZIP_TYPES:
        return True
    if mimetype in TAR_TYPES:
        return False
    raise BadRequest(f"send the Data as application/tar+gzip or application/x-tar, not {mimetype}")


def _claimed_md5() -> str | None:
    """The ``x-checksum-md5`` trailer (or header) when the client sent one."""
    sent = request.environ.get("knitfab.request_trailers", {}).get("x-checksum-md5")
    return sent or request.headers.get("x-checksum-md5")
