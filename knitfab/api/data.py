"""``/api/data``: find, upload, download and tag Data (spec §3 D1–D4, §4.1, §4.2)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from knit import archive, digests

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
    checksum = digests.wanted(request.headers.get("Want-Content-Digest"))
    tarball = archive.pack(root, compressed=not plain, checksum=checksum)
    trailers = request.environ.get("knitfab.trailers")

    def stream():
        yield from tarball
        if trailers is not None:
            trailers[checksum.field] = checksum.value(tarball.hasher.hexdigest())

    content_type = "application/x-tar" if plain else "application/tar+gzip"
    return Response(stream(), content_type=content_type, headers={"Trailer": checksum.field})


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
    """Unpack the archive as it arrives and publish it as a new Data (§4.1), checked against the
    checksum the request announces (``knit/digests.py``)."""
    checksum = digests.announced(request.headers.get("Trailer"), request.headers.get("Content-Digest"))
    detail = data.receive_upload(
        store(), request.stream, _compressed(), services().upload_limits, request.content_length,
        lambda: _claimed(checksum), checksum,
    )  # fmt: skip
    return reply(render.data(detail))


def _compressed() -> bool:
    mimetype = request.mimetype or "application/tar+gzip"
    if mimetype in GZIP_TYPES:
        return True
    if mimetype in TAR_TYPES:
        return False
    raise BadRequest(f"send the Data as application/tar+gzip or application/x-tar, not {mimetype}")


def _claimed(checksum: digests.Checksum) -> str | None:
    """The hex digest the client's trailer (or header) claims, when it sent one. A request that
    sends the other checksum as well is refused: nothing claimed goes unchecked."""
    trailers = request.environ.get("knitfab.request_trailers", {})
    other = digests.MD5 if checksum is digests.SHA256 else digests.SHA256
    if trailers.get(other.field) or request.headers.get(other.field):
        raise BadRequest("send one checksum: Content-Digest (announced in Trailer) or x-checksum-md5, not both")
    sent = trailers.get(checksum.field) or request.headers.get(checksum.field)
    try:
        return checksum.claimed(sent) if sent else None
    except ValueError as e:
        raise BadRequest(str(e)) from None
