"""``KnitClient``: every call of Knitfab's REST API as a method, for ``knit`` and for scripts.

Methods return the API's JSON as plain dicts (Knitfab's shapes, spec §2). Every failure is a
``KnitError``: a one-line summary of what could not be done (Knitfab's words, §7.4) and,
underneath, the server's own message. Data moves as streams: a push never holds a Data in memory,
and checksums travel in HTTP trailers both ways.

    client = KnitClient.from_profile()
    dataset = client.push_dir("./data/qmnist-train", ["type:dataset", "mode:training"])
    plan = client.apply_plan(yaml.safe_load(open("train.plan.yaml")))
    run = client.wait_run(client.find_runs(plan_ids=[plan["planId"]])[0]["runId"])
    client.pull(run["outputs"][0]["knitId"], "./out", extract=True)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from .profiles import Profile, load_profile
from .tagtext import split_tag

# archive (tarfile, zlib), session and transport (knit.http1, ssl) and requests (only for the
# image registry) are imported where they are used: `knit` starts without them (issue 14).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator

    from .session import Session
    from .transport import TrailerResponse

FINISHED = ("done", "failed", "invalidated")


class KnitError(Exception):
    """A call that failed: ``summary`` says what could not be done, ``detail`` is the server's
    message (when it sent one), ``status`` the HTTP status (None when it could not be reached)."""

    def __init__(self, summary: str, status: int | None = None, detail: str = ""):
        self.summary, self.status, self.detail = summary, status, detail
        super().__init__(f"{summary}\n{detail}" if detail else summary)


class KnitClient:
    def __init__(self, api_root: str, ca: bytes | None = None, token: str | None = None, timeout: float = 60):
        self.api_root = api_root.rstrip("/")
        self.base_path = urlsplit(self.api_root).path
        self.token = token
        self.timeout = timeout
        self.ca = ca
        self._ssl_context: ssl.SSLContext | None = None
        self._session: Session | None = None
        self._http = None
        self._bundle = None

    # Made on first use, so that a command that never calls the server (and `knit` start-up)
    # does not pay for importing requests or loading the CA store.
    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            import ssl

            self._ssl_context = ssl.create_default_context()
            if self.ca:
                self._ssl_context.load_verify_locations(cadata=self.ca.decode())
        return self._ssl_context

    @property
    def session(self) -> Session:
        """The connections of the API calls (``knit.http1``: no requests at start-up)."""
        if self._session is None:
            from .session import Session

            self._session = Session(self.api_root, lambda: self.ssl_context, self._headers())
        return self._session

    @property
    def http(self):
        """A ``requests.Session`` with this client's token and CA, for the image registry
        (knit.registry); the API calls go through ``session``."""
        if self._http is None:
            import requests

            self._http = requests.Session()
            if self.token:
                self._http.headers["Authorization"] = f"Bearer {self.token}"
            if self.ca:
                self._bundle = _bundle_with(self.ca)
                self._http.verify = self._bundle
        return self._http

    @classmethod
    def from_profile(cls, name: str | None = None, store: str | None = None) -> KnitClient:
        """The client of a profile of ``~/.knit/profile`` (``knit init`` makes them); by default
        the one named in the nearest ``.knitprofile``, as ``knit`` itself does."""
        return cls.from_profile_object(load_profile(name, store)[1])

    @classmethod
    def from_profile_object(cls, profile: Profile) -> KnitClient:
        return cls(profile.api_root, profile.ca, profile.token)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        if self._http is not None:
            self._http.close()
        if self._bundle:
            os.unlink(self._bundle)
            self._bundle = None

    # -- Data ---------------------------------------------------------------------------------------

    def find_data(self, tags=(), since: str | None = None, duration: str | None = None) -> list[dict]:
        params = {"tag": list(tags), "since": since, "duration": duration}
        return self._json("GET", "/data", _find_failed, params=params)

    def get_data(self, knit_id: str) -> dict:
        found = self.find_data([f"knit#id:{knit_id}"])
        if not found:
            raise KnitError(f"data not found: {knit_id}", 404)
        return found[0]

    def tag_data(self, knit_id: str, add=(), remove=(), remove_key=()) -> dict:
        change = {"add": _tag_objects(add), "remove": _tag_objects(remove), "remove_key": list(remove_key)}
        return self._json("PUT", f"/data/{_id(knit_id)}", _summary(f"knitId:{knit_id} cannot be updated"), json=change)

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

        content_type = self._upload_type()
        body = archive.pack(root, compressed=content_type == GZIP, dereference=dereference, on_read=progress)
        with self._connection(timeout=None) as conn:
            resp = send_chunked(conn, "POST", f"{self.base_path}/data", body, self._headers(content_type))
            payload = resp.read()
        return self._decode(resp.status, payload, _summary_by_status("sending data is rejected by server"))

    def _upload_type(self) -> str:
        """Plain tar to a server that says it takes it (ours: ``/api/x/formats``), so that a push
        goes at the speed of the disk, not of gzip; ``application/tar+gzip`` to any other (a
        Knitfab server answers 404 there), as Knitfab's ``knit`` sends."""
        try:
            formats = self._json("GET", "/x/formats", _summary("no formats"))
        except KnitError as e:
            if e.status is None or e.status >= 500:
                raise
            return GZIP
        except ValueError:
            return GZIP
        accepted = formats.get("upload") if isinstance(formats, dict) else None
        return TAR if isinstance(accepted, list) and TAR in accepted else GZIP

    @contextlib.contextmanager
    def download(self, knit_id: str, compressed: bool = True, negotiate: bool = False) -> Iterator[TrailerResponse]:
        """The Data as a stream of tar.gz (or tar) bytes; ``trailers`` has its checksum once read.
        With ``negotiate``, plain tar is asked for (Accept) and the server chooses: the stream is
        tar.gz unless the response's Content-Type is ``application/x-tar`` (``is_tar(resp)``)."""
        query = "" if compressed else "?format=tar"
        accept = {"Accept": f"{TAR}, {GZIP};q=0.5"} if negotiate else {}
        with self._connection(timeout=None) as conn:
            conn.request("GET", f"{self.base_path}/data/{_id(knit_id)}{query}", headers=self._headers() | accept)
            resp = conn.getresponse()
            if resp.status != 200:
                self._decode(resp.status, resp.read(), _summary(f"knitId:{knit_id} is not found"))
            yield resp

    def pull(self, knit_id: str, dest, extract: bool = False, progress: Callable[[int], None] | None = None) -> Path:
        """Save a Data as ``dest/<knitId>.tar.gz``, or extracted into ``dest/<knitId>/``.
        Raises ``ChecksumMismatch`` (after saving) when the checksum trailer disagrees."""
        from . import archive

        dest = Path(os.path.expanduser(str(dest)))
        with self.download(knit_id, negotiate=extract) as resp:  # a saved file is always .tar.gz
            dest.mkdir(parents=True, exist_ok=True)  # only once the server has the Data
            stream = archive.CountingReader(resp, progress)
            if extract:
                target = dest / knit_id
                target.mkdir(exist_ok=True)
                digest = archive.unpack(stream, target, compressed=not is_tar(resp))
            else:
                target = dest / f"{knit_id}.tar.gz"
                digest = _save(stream, target)
        _check_trailer(resp, digest)
        return target

    def lineage(self, knit_id: str, upstream: bool = True, downstream: bool = True, depth: int | None = 3) -> str:
        """Knitfab's lineage graph of a Data, as DOT text."""
        from .graphs import data_lineage

        return data_lineage(self._lineage_nodes(knit_id, upstream, downstream, depth), knit_id, upstream,
                            downstream, depth)  # fmt: skip

    def _lineage_nodes(self, knit_id: str, upstream: bool, downstream: bool, depth: int | None):
        """The nodes of the graph in one request, when the server has the extension
        ``/api/x/lineage?format=json`` (ours); else (a Knitfab server answers 404) this client
        itself, which asks once per node as Knitfab's ``knit`` does. Either way the graph is drawn
        here, in this machine's time zone."""
        steps = "all" if depth is None else str(depth)
        params = {"data": knit_id, "up": steps if upstream else "0", "down": steps if downstream else "0"}
        try:
            nodes = self._json("GET", "/x/lineage", _summary("no lineage"), params={**params, "format": "json"})
        except KnitError as e:
            if e.status != 404:
                raise
            return self  # not ours, or the Data is unknown: the walk says which
        except ValueError:  # a server of ours older than format=json answers SVG
            return self
        return _Nodes(self, nodes)

    # -- plans --------------------------------------------------------------------------------------

    def apply_plan(self, spec: dict) -> dict:
        spec = {**spec, "active": spec.get("active")}  # Knitfab's CLI always sends it; null means true
        return self._json("POST", "/plans", _summary_by_status("invalid request"), json=spec)

    def get_plan(self, plan_id: str) -> dict:
        return self._json("GET", f"/plans/{_id(plan_id)}", _summary(f"planId:{plan_id} is not found"))

    def find_plans(self, active: bool | None = None, image: str | None = None, in_tags=(), out_tags=()) -> list[dict]:
        params = {"active": None if active is None else str(active).lower(), "image": image}
        params |= {"in_tag": list(in_tags), "out_tag": list(out_tags)}
        return self._json("GET", "/plans", _find_failed, params=params)

    def set_plan_active(self, plan_id: str, active: bool) -> dict:
        return self._plan_change("PUT" if active else "DELETE", plan_id, "active")

    def change_plan_resources(self, plan_id: str, set: dict | None = None, unset=()) -> dict:  # noqa: A002
        return self._plan_change("PUT", plan_id, "resources", {"set": set or {}, "unset": list(unset)})

    def annotate_plan(self, plan_id: str, add=(), remove=(), remove_key=()) -> dict:
        change = {"add": list(add), "remove": list(remove), "remove_key": list(remove_key)}
        return self._plan_change("PUT", plan_id, "annotations", change)

    def set_service_account(self, plan_id: str, name: str | None) -> dict:
        if name is None:
            return self._plan_change("DELETE", plan_id, "serviceaccount")
        return self._plan_change("PUT", plan_id, "serviceaccount", {"service_account": name})

    def plan_graph(self, plan_id: str, upstream: bool = True, downstream: bool = True, depth: int | None = 3) -> str:
        from .graphs import plan_graph

        return plan_graph(self, plan_id, upstream, downstream, depth)

    def _plan_change(self, method: str, plan_id: str, what: str, body: dict | None = None) -> dict:
        summary = _summary(f"planId:{plan_id} is not found", other=f"planId:{plan_id} cannot be updated")
        return self._json(method, f"/plans/{_id(plan_id)}/{what}", summary, json=body)

    # -- runs ---------------------------------------------------------------------------------------

    def find_runs(
        self, plan_ids=(), knit_ids_in=(), knit_ids_out=(), statuses=(), since: str | None = None, duration=None
    ) -> list[dict]:
        params = {
            "plan": ",".join(plan_ids) or None,
            "knitIdInput": ",".join(knit_ids_in) or None,
            "knitIdOutput": ",".join(knit_ids_out) or None,
            "status": ",".join(statuses) or None,
            "since": since,
            "duration": duration,
        }
        return self._json("GET", "/runs", _find_failed, params=params)

    def get_run(self, run_id: str) -> dict:
        return self._json("GET", f"/runs/{_id(run_id)}", _summary(f"runId:{run_id} is not found"))

    def abort_run(self, run_id: str) -> dict:
        return self._run_change("PUT", run_id, "abort", f"runId:{run_id} cannot be aborted")

    def tearoff_run(self, run_id: str) -> dict:
        return self._run_change("PUT", run_id, "tearoff", f"runId:{run_id} cannot be teared off")

    def retry_run(self, run_id: str) -> None:
        self._run_change("PUT", run_id, "retry", f"cannot retry runId:{run_id}")

    def delete_run(self, run_id: str) -> None:
        summary = _summary(f"runId:{run_id} is not found", other=f"runId:{run_id} cannot be deleted")
        self._json("DELETE", f"/runs/{_id(run_id)}", summary)

    def run_log(self, run_id: str, follow: bool = False) -> Iterator[bytes]:
        """The run's stdout+stderr; with ``follow``, as it is written, until the run ends."""
        from .session import chunks

        path = f"{self.base_path}/runs/{_id(run_id)}/log" + ("?follow" if follow else "")
        with self._network_errors(), self.session.stream(path, self.timeout) as resp:
            if resp.status != 200:
                self._decode(resp.status, resp.read(), _summary(f"cannot get log of runId:{run_id}"))
            yield from chunks(resp)

    def wait_run(self, run_id: str, timeout: float | None = None, poll: float = 1.0) -> dict:
        """Poll until the run is done, failed or invalidated; its RunDetail."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (run := self.get_run(run_id))["status"] not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                raise KnitError(f"runId:{run_id} is still {run['status']} after {timeout} s")
            time.sleep(poll)
        return run

    def _run_change(self, method: str, run_id: str, action: str, cannot: str) -> dict:
        summary = _summary(f"runId:{run_id} is not found", other=cannot)
        return self._json(method, f"/runs/{_id(run_id)}/{action}", summary)

    # -- HTTP ---------------------------------------------------------------------------------------

    def _json(self, method: str, path: str, summary: Callable[[int], str], params=None, json=None) -> object:
        with self._network_errors():
            status, payload = self.session.request(method, self.base_path + path, self.timeout, params, json)
        return self._decode(status, payload, summary)

    @contextlib.contextmanager
    def _network_errors(self):
        """The server unreachable (or the connection broken) or too slow, as a ``KnitError``."""
        from .transport import Unreachable

        try:
            yield
        except Unreachable as e:
            raise self._unreachable(e) from None
        except TimeoutError:
            raise KnitError(f"{self.api_root} did not answer in time") from None

    def _decode(self, status: int, payload: bytes, summary: Callable[[int], str]) -> object:
        if 200 <= status < 300:
            return json.loads(payload) if payload else None
        raise KnitError(summary(status), status, _server_message(payload))

    @contextlib.contextmanager
    def _connection(self, timeout: float | None):
        """A connection whose network errors (only those: not the local files' while the
        body is read or written) become "cannot connect"."""
        from .transport import connect

        conn = connect(self.api_root, self.ssl_context, timeout=timeout, guarded=True)
        try:
            with self._network_errors():
                yield conn
        finally:
            conn.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return headers | ({"Content-Type": content_type} if content_type else {})

    def _unreachable(self, error: Exception) -> KnitError:
        reason = getattr(error, "reason", None) or error
        return KnitError(f"cannot connect to {self.api_root}: is the server running? ({reason})")


GZIP, TAR = "application/tar+gzip", "application/x-tar"


def is_tar(resp: TrailerResponse) -> bool:
    """Whether a download is plain tar (else it is tar.gz, as from Knitfab)."""
    return (resp.getheader("Content-Type") or "").split(";")[0].strip().lower() == TAR


class _Nodes:
    """A ``knit.graphs.GraphSource`` answering from the nodes the server sent at once; a node it
    lacks (none should be) is asked from the client."""

    def __init__(self, client: KnitClient, nodes: dict):
        self.client, self.data, self.runs = client, nodes.get("data") or {}, nodes.get("runs") or {}

    def get_data(self, knit_id: str) -> dict:
        return self.data.get(knit_id) or self.client.get_data(knit_id)

    def get_run(self, run_id: str) -> dict:
        return self.runs.get(run_id) or self.client.get_run(run_id)

    def get_plan(self, plan_id: str) -> dict:
        return self.client.get_plan(plan_id)


class ChecksumMismatch(KnitError):
    """The Data was saved, but its checksum trailer disagrees with what arrived."""


def _check_trailer(resp: TrailerResponse, digest: str) -> None:
    sent = getattr(resp, "trailers", {}).get("x-checksum-md5")
    if sent and sent.lower() != digest:
        raise ChecksumMismatch("checksum unmatch: Your Data is saved, but it may be corrupted")


def _save(stream, target: Path) -> str:
    from .blocks import BLOCK, Blocks

    body = Blocks(stream)  # hashed by a second thread while it is written
    try:
        with open(target, "wb") as f:
            while chunk := body.read1(BLOCK):
                f.write(chunk)
        return body.hexdigest()
    finally:
        body.close()


def _bundle_with(ca: bytes) -> str:
    """The system's CAs plus the profile's: the client trusts both, as Knitfab's does."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="knit-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        import certifi

        f.write(Path(certifi.where()).read_bytes() + b"\n" + ca)
    return path


def _server_message(payload: bytes) -> str:
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace").strip()
    message = doc.get("message") if isinstance(doc, dict) else None
    if isinstance(message, dict):  # the typed shape Knitfab declares: {"reason", "advice", "see"}
        message = "\n".join(str(v) for v in message.values())
    return str(message) if message is not None else payload.decode(errors="replace").strip()


def _summary(missing: str, other: str | None = None) -> Callable[[int], str]:
    def summary(status: int) -> str:
        if status == 404:
            return missing
        if status >= 500:
            return f"server error (status code = {status})"
        return other or missing

    return summary


def _summary_by_status(rejected: str) -> Callable[[int], str]:
    def summary(status: int) -> str:
        if status >= 500:
            return f"server error (status code = {status})"
        return rejected if rejected == "invalid request" else f"{rejected} (status code = {status})"

    return summary


def _find_failed(status: int) -> str:
    if status >= 500:
        return f"server error (status code = {status})"
    return f"[BUG] client is not compatible with the server (status code = {status})"


def _tag_objects(tags) -> list[dict]:
    """Tags as Knitfab's CLI sends them in a tag change: ``{"key", "value"}`` objects."""
    out = []
    for tag in tags:
        parts = split_tag(str(tag))
        if parts is None:
            raise KnitError(f"tag should be KEY:VALUE: {tag!r}")
        out.append({"key": parts[0], "value": parts[1]})
    return out


def _id(text: str) -> str:
    return quote(text, safe="")
