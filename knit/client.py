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

from .errors import KnitError, find_failed, server_message, summary_by_status, summary_for
from .profiles import Profile, load_profile
from .tagtext import split_tag
from .transfers import GZIP, TAR, ChecksumMismatch, DataTransfers, is_tar

__all__ = ["GZIP", "TAR", "ChecksumMismatch", "KnitClient", "KnitError", "is_tar"]  # what callers import here

# archive (tarfile, zlib), session and transport (knit.http1, ssl) and requests (only for the
# image registry) are imported where they are used: `knit` starts without them (issue 14).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator

    from .session import Session

FINISHED = ("done", "failed", "invalidated")


class KnitClient(DataTransfers):
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
        return self._json("GET", "/data", find_failed, params=params)

    def get_data(self, knit_id: str) -> dict:
        found = self.find_data([f"knit#id:{knit_id}"])
        if not found:
            raise KnitError(f"data not found: {knit_id}", 404)
        return found[0]

    def tag_data(self, knit_id: str, add=(), remove=(), remove_key=()) -> dict:
        change = {"add": _tag_objects(add), "remove": _tag_objects(remove), "remove_key": list(remove_key)}
        return self._json(
            "PUT", f"/data/{_id(knit_id)}", summary_for(f"knitId:{knit_id} cannot be updated"), json=change
        )

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
            nodes = self._json("GET", "/x/lineage", summary_for("no lineage"), params={**params, "format": "json"})
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
        return self._json("POST", "/plans", summary_by_status("invalid request"), json=spec)

    def get_plan(self, plan_id: str) -> dict:
        return self._json("GET", f"/plans/{_id(plan_id)}", summary_for(f"planId:{plan_id} is not found"))

    def find_plans(self, active: bool | None = None, image: str | None = None, in_tags=(), out_tags=()) -> list[dict]:
        params = {"active": None if active is None else str(active).lower(), "image": image}
        params |= {"in_tag": list(in_tags), "out_tag": list(out_tags)}
        return self._json("GET", "/plans", find_failed, params=params)

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
        summary = summary_for(f"planId:{plan_id} is not found", other=f"planId:{plan_id} cannot be updated")
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
        return self._json("GET", "/runs", find_failed, params=params)

    def get_run(self, run_id: str) -> dict:
        return self._json("GET", f"/runs/{_id(run_id)}", summary_for(f"runId:{run_id} is not found"))

    def abort_run(self, run_id: str) -> dict:
        return self._run_change("PUT", run_id, "abort", f"runId:{run_id} cannot be aborted")

    def tearoff_run(self, run_id: str) -> dict:
        return self._run_change("PUT", run_id, "tearoff", f"runId:{run_id} cannot be teared off")

    def retry_run(self, run_id: str) -> None:
        self._run_change("PUT", run_id, "retry", f"cannot retry runId:{run_id}")

    def delete_run(self, run_id: str) -> None:
        summary = summary_for(f"runId:{run_id} is not found", other=f"runId:{run_id} cannot be deleted")
        self._json("DELETE", f"/runs/{_id(run_id)}", summary)

    def run_log(self, run_id: str, follow: bool = False) -> Iterator[bytes]:
        """The run's stdout+stderr; with ``follow``, as it is written, until the run ends."""
        from .session import chunks

        path = f"{self.base_path}/runs/{_id(run_id)}/log" + ("?follow" if follow else "")
        with self._network_errors(), self.session.stream(path, self.timeout) as resp:
            if resp.status != 200:
                self._decode(resp.status, resp.read(), summary_for(f"cannot get log of runId:{run_id}"))
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
        summary = summary_for(f"runId:{run_id} is not found", other=cannot)
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
        raise KnitError(summary(status), status, server_message(payload))

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


def _bundle_with(ca: bytes) -> str:
    """The system's CAs plus the profile's: the client trusts both, as Knitfab's does."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="knit-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        import certifi

        f.write(Path(certifi.where()).read_bytes() + b"\n" + ca)
    return path


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
