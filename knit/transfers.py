"""Data transfers of ``KnitClient``: push (a directory as a tar stream) and pull (saved or
extracted), with the stream's checksum in an HTTP trailer both ways.

Between our own ``knit`` and server the Data move as plain tar (``/api/x/formats`` for a push,
``Accept`` for a pull), checked by SHA-256 (``knit/digests.py``): at the speed of the disk, not
of gzip and MD5; to and from a Knitfab server as ``application/tar+gzip`` with the MD5 trailer,
as Knitfab's ``knit`` does. archive (tarfile, zlib) and the transport are imported when a
transfer starts: ``knit`` starts without them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import quote

from .errors import KnitError, summary_by_status, summary_for

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .digests import Checksum
    from .http1 import Response

GZIP, TAR = "application/tar+gzip", "application/x-tar"


def is_tar(resp: Response) -> bool:
    """Whether a download is plain tar (else it is tar.gz, as from Knitfab)."""
    return (resp.getheader("Content-Type") or "").split(";")[0].strip().lower() == TAR


class DataTransfers:
    """The push and pull methods of ``KnitClient`` (a mixin: it lends ``_json``, ``_connection``,
    ``_headers``, ``_decode``, ``tag_data`` and ``base_path``)."""

    def push_dir(
        self, path: str | os.PathLike, tags=(), dereference: bool = False, progress: Callable[[int], None] | None = None
    ) -> dict:
        """Upload a directory as a new Data and give it ``tags``; its DataDetail."""
        detail = self.upload(path, dereference, progress)
        return self.tag_data(detail["knitId"], add=tags) if tags else detail

    def upload(self, path, dereference: bool = False, progress: Callable[[int], None] | None = None) -> dict:
        root = Path(path)
        if not root.is_dir():
            raise KnitError(f"{root} is not a directory")
        from . import archive
        from .transport import send_chunked

        content_type, checksum = self._upload_format()
        body = archive.pack(root, content_type == GZIP, dereference, progress, checksum)
        with self._connection(timeout=None) as conn:
            resp = send_chunked(conn, "POST", f"{self.base_path}/data", body, self._headers(content_type))
            payload = resp.read()
        return self._decode(resp.status, payload, summary_by_status("sending data is rejected by server"))

    def _upload_format(self) -> tuple[str, Checksum]:
        """Plain tar and SHA-256 to a server that says it takes them (ours: ``/api/x/formats``),
        so that a push goes at the speed of the disk, not of gzip and MD5;
        ``application/tar+gzip`` and MD5 to any other (a Knitfab server answers 404 there), as
        Knitfab's ``knit`` sends."""
        from . import digests

        formats = self._formats()
        accepted = formats.get("upload") if isinstance(formats, dict) else None
        return TAR if isinstance(accepted, list) and TAR in accepted else GZIP, digests.offered(formats)

    def _formats(self) -> object:
        """What ``/api/x/formats`` says; None from a server without it."""
        try:
            return self._json("GET", "/x/formats", summary_for("no formats"))
        except KnitError as e:
            if e.status is None or e.status >= 500:
                raise
        except ValueError:
            pass
        return None

    @contextlib.contextmanager
    def download(self, knit_id: str, compressed: bool = True, negotiate: bool = False) -> Iterator[Response]:
        """The Data as a stream of tar.gz (or tar) bytes; ``trailers`` has its checksum once read
        (SHA-256 if asked for and the response's ``Trailer`` names ``Content-Digest``, else MD5:
        ``knit/digests.py``). With ``negotiate``, plain tar is asked for (Accept) and the server
        chooses: the stream is tar.gz unless the response's Content-Type is
        ``application/x-tar`` (``is_tar(resp)``)."""
        from .digests import want

        query = "" if compressed else "?format=tar"
        accept = {"Accept": f"{TAR}, {GZIP};q=0.5", **want()} if negotiate else {}
        path = f"{self.base_path}/data/{quote(knit_id, safe='')}{query}"
        with self._connection(timeout=None) as conn:
            conn.request("GET", path, headers=self._headers() | accept)
            resp = conn.getresponse()
            if resp.status != 200:
                self._decode(resp.status, resp.read(), summary_for(f"knitId:{knit_id} is not found"))
            yield resp

    def pull(self, knit_id: str, dest, extract: bool = False, progress: Callable[[int], None] | None = None) -> Path:
        """Save a Data as ``dest/<knitId>.tar.gz``, or extracted into ``dest/<knitId>/``.
        Raises ``ChecksumMismatch`` (after saving) when the checksum trailer disagrees."""
        from . import archive, digests

        dest = Path(os.path.expanduser(str(dest)))
        with self.download(knit_id, negotiate=extract) as resp:  # a saved file is always .tar.gz
            dest.mkdir(parents=True, exist_ok=True)  # only once the server has the Data
            stream = archive.CountingReader(resp, progress)
            checksum = digests.announced(resp.getheader("Trailer"))
            if extract:
                target = dest / knit_id
                target.mkdir(exist_ok=True)
                digest = archive.unpack(stream, target, not is_tar(resp), checksum=checksum)
            else:
                target = dest / f"{knit_id}.tar.gz"
                digest = _save(stream, target, checksum)
        _check_trailer(resp, checksum, digest)
        return target


class ChecksumMismatch(KnitError):
    """The Data was saved, but its checksum trailer disagrees with what arrived."""


def _check_trailer(resp: Response, checksum: Checksum, digest: str) -> None:
    """No trailer: nothing to check (as Knitfab's ``knit``); one that does not match, or claims no
    digest at all, is a ``ChecksumMismatch``."""
    sent = getattr(resp, "trailers", {}).get(checksum.field)
    if not sent:
        return
    try:
        matches = checksum.claimed(sent) == digest
    except ValueError:
        matches = False
    if not matches:
        raise ChecksumMismatch("checksum unmatch: Your Data is saved, but it may be corrupted")


def _save(stream, target: Path, checksum: Checksum) -> str:
    from .blocks import BLOCK, Blocks, HashPool

    body = Blocks(stream, HashPool(hasher=checksum.new()))  # hashed by a second thread while it is written
    try:
        with open(target, "wb") as f:
            while chunk := body.read1(BLOCK):
                f.write(chunk)
        return body.hexdigest()
    finally:
        body.close()
