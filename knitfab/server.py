"""``knitfab serve``: the REST API and the engine in one process.

The API runs on cheroot, extended in ``front.py`` (the reception, streamed bodies, HTTP trailers);
this module builds the parts from ``Config``, starts them and stops them.

With ``Config.registry_port`` set, a second cheroot server on that port answers the OCI
distribution API (``knitfab.images.registry``) with the same token and TLS, storing images under
``<data-dir>/registry/``; the local runner runs plans' images from it.

Signals only set a flag. On SIGTERM or SIGINT the server stops accepting, lets requests in
flight finish, stops the engine between two stages and exits 0. Runs keep running: the next
start finds them again.
"""

from __future__ import annotations

import base64
import logging
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from cheroot import wsgi

from .api import extra
from .api.app import create_app
from .api.cache import ResponseCache
from .api.web import Services
from .diskspace import DEFAULT_RESERVE
from .engine import Engine
from .errors import KnitfabError
from .front import Connection, Gateway, Server
from .hooks import Hooks
from .runners.local import LocalRunner
from .store.data import UploadLimits
from .store.db import Store

log = logging.getLogger("knitfab.server")
MAX_QUEUED = 1024  # complete requests waiting for a worker


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./knitfab-data")
    runner: str = "local"
    token_file: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    public_url: str | None = None
    threads: int = 16
    poll: float = 1.0
    capacity: dict[str, Decimal] | None = None
    network: bool = False
    local_images: dict[str, Path] = field(default_factory=dict)
    public: Path | None = None
    max_header_size: int = 64 << 10  # request line and headers, bytes: larger is a 431
    client_timeout: float = 10.0  # seconds for a request head, an idle keep-alive, each body read
    hooks_before: list[str] = field(default_factory=list)  # lifecycle hooks (hooks.py), from --config
    hooks_after: list[str] = field(default_factory=list)
    hook_timeout: float = 10.0
    extra_api: dict[str, str] = field(default_factory=dict)  # path → proxy_to (extra.py), from --config
    max_data_size: int | None = None  # bytes one upload may hold; None: whatever fits above the reserve
    disk_reserve: int = DEFAULT_RESERVE  # bytes uploads (and run outputs) always leave free on the disk
    run_uid: int | None = None  # local runner, server as root: the uid runs execute as
    run_pids: int = 1024  # local runner: processes a run may have at once
    registry_port: int | None = None  # the image registry's port (0: any free one); None: no registry
    host_mode: bool = True  # local runner: run plans whose image is not in the registry over the host
    rootfs_cache: int = 20 << 30  # local runner: bytes of unpacked images kept
    db: Path | None = None  # the SQLite file; default <data_dir>/knitfab.db
    response_cache: int = 64 << 20  # bytes of list answers kept until the next commit (api/cache.py); 0: none
    # kubernetes runner: settings from the flags by their variable's name (KNITFAB_NAMESPACE...)
    kubernetes: dict[str, str] = field(default_factory=dict)


class KnitfabServer:
    """The whole server; ``start()`` returns once it accepts requests, ``stop()`` undoes it."""

    def __init__(self, config: Config, runner=None):
        self.config = config
        self.runner = runner
        self.stopping = threading.Event()
        self.registry: wsgi.Server | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        config = self.config
        self.store = Store(config.data_dir, db=config.db)
        token = _read_token(config.token_file) if config.token_file else None
        self.images = self._blob_store()
        self.registry = self._registry(token)
        self.runner = self.runner or self._runner()
        self.engine = Engine(self.store, self.runner, poll=config.poll, reserve=config.disk_reserve)
        self.engine.hooks = Hooks(config.hooks_before, config.hooks_after, config.hook_timeout)
        self.engine.recover()  # before the API takes new uploads
        services = Services(self.store, self.runner, self.engine.wake, token, self._ready)
        services.public = str(config.public) if config.public else None
        services.upload_limits = UploadLimits(config.max_data_size, config.disk_reserve)
        services.cache = ResponseCache(config.response_cache) if config.response_cache > 0 else None
        app = create_app(services)
        extra.install(app, config.extra_api, token)
        self.http = self._http(app)
        self._spawn("engine", self.engine.run_forever, self.stopping)
        self._spawn("http", self.http.serve)
        if self.registry is not None:
            self._spawn("registry", self.registry.serve)
        self.write_handout(token)
        log.info("knitfab %s is serving on %s (data in %s)", "API", self.url, self.store.layout.root)

    def stop(self) -> None:
        self.stopping.set()
        self.http.stop()  # stops accepting; requests in flight finish (up to shutdown_timeout)
        if self.registry is not None:
            self.registry.stop()
        self.engine.wake()
        for thread in self._threads:
            thread.join(timeout=60)
        self.store.close()

    def serve_forever(self) -> int:
        """Run until SIGTERM or SIGINT (``signals_awaited``)."""
        with signals_awaited((signal.SIGTERM, signal.SIGINT)) as wait:
            self.start()
            wait()
        log.info("stopping: finishing requests in flight and the engine's current stage")
        self.stop()
        return 0

    @property
    def url(self) -> str:
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        scheme = "https" if self.config.cert else "http"
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::", "") else self.config.host
        return f"{scheme}://{host}:{self.port}/api"

    @property
    def port(self) -> int:
        return self.http.bind_addr[1]

    def write_handout(self, token: str | None) -> Path:
        """``<data-dir>/handout/knitprofile``: what ``knit init`` takes (spec §7.2)."""
        profile: dict = {"apiRoot": self.url, "cert": {}}
        if self.config.cert:
            profile["cert"] = {"ca": base64.b64encode(self.config.cert.read_bytes()).decode()}
        if token:
            profile["token"] = token
        path = self.store.layout.handout / "knitprofile"
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(self._handout_note() + yaml.safe_dump(profile, sort_keys=False))
        tmp.replace(path)
        return path

    def _handout_note(self) -> str:
        """A YAML comment when the port was picked at random: it goes stale at the next start."""
        if self.config.port != 0 or self.config.public_url:
            return ""
        log.warning("--port 0 picked port %d: the handout is valid until this server stops", self.port)
        return (
            f"# `knitfab serve --port 0` picked port {self.port} for this start only: the next start picks\n"
            "# another, and this handout goes stale. Serve on a fixed --port (default 8080) to keep it,\n"
            "# or `knit init` the new handout after every restart.\n"
        )

    # -- parts ------------------------------------------------------------------------------------

    def _runner(self):
        config = self.config
        if config.runner == "kubernetes":
            from .runners.k8s import KubernetesRunner  # only this path imports the kubernetes client

            runner = KubernetesRunner.from_environment(self.store.layout, config.kubernetes)
            runner.refresh_in_background(self.stopping)  # the engine's status calls then read memory
            return runner
        runner = LocalRunner(self.store.layout, config.capacity, config.network, config.local_images,
                             run_uid=config.run_uid, pids=config.run_pids,
                             on_exit=lambda: self.engine.wake())  # a run that ends is finished at once  # fmt: skip
        runner.use_images(self._image_cache(), config.host_mode)
        return runner

    def _registry(self, token: str | None) -> wsgi.Server | None:
        """The image registry on its own port, with the API's token and TLS (docs/images.md)."""
        if self.config.registry_port is None:
            return None
        from .images.registry import create_registry

        try:
            server = self._http(create_registry(self.images, token), self.config.registry_port)
        except OSError as e:
            advice = f"port {self.config.registry_port}: {e.strerror or e}; choose one with --registry-port (0: none)"
            raise KnitfabError(advice, "the image registry cannot listen") from None
        log.info("the image registry listens on port %s", server.bind_addr[1])
        return server

    @property
    def registry_host(self) -> str | None:
        """``host:port`` of the registry, as ``docker push`` wants it."""
        if self.registry is None:
            return None
        host = "localhost" if self.config.host in ("0.0.0.0", "::", "", "127.0.0.1") else self.config.host
        return f"{host}:{self.registry.bind_addr[1]}"

    def _blob_store(self):
        from .images.blobs import DEFAULT_RESERVE, BlobStore

        # disk_reserve and max_data_size come with the upload hardening (knitfab.diskspace)
        reserve = getattr(self.config, "disk_reserve", None) or DEFAULT_RESERVE
        max_blob = getattr(self.config, "max_data_size", None)
        return BlobStore(self.store.layout.root / "registry", reserve, max_blob)

    def _image_cache(self):
        from .images.cache import ImageCache

        hosts = {"localhost:30503", "127.0.0.1:30503"}
        if self.registry is not None:
            port = self.registry.bind_addr[1]
            names = {"localhost", "127.0.0.1", self.config.host, urlsplit(self.config.public_url or "").hostname}
            hosts |= {f"{name}:{port}" for name in names if name}
        cache = ImageCache(self.images, self.store.layout.root / "rootfs", hosts, self.config.rootfs_cache)
        cache.push_host = self.registry_host or cache.push_host
        return cache

    def _http(self, app, port: int | None = None) -> wsgi.Server:
        config = self.config
        address = (config.host, config.port if port is None else port)
        # Requests waiting for a worker are bounded too: past MAX_QUEUED, Reception answers 503 at
        # once (its thread never waits).
        server = Server(
            address, app, numthreads=config.threads, request_queue_size=128,
            accepted_queue_size=MAX_QUEUED, accepted_queue_timeout=0,
        )  # fmt: skip
        server.ConnectionClass = Connection
        server.gateway = Gateway
        server.shutdown_timeout = 30
        server.timeout = server.head_timeout = config.client_timeout
        server.max_header_size = config.max_header_size
        server.max_request_header_size = config.max_header_size + 8  # Reception's limit comes first
        if self.config.cert:
            from cheroot.ssl.builtin import BuiltinSSLAdapter

            server.ssl_adapter = BuiltinSSLAdapter(str(self.config.cert), str(self.config.key))
        server.prepare()  # binds now, so the port is known before start() returns
        return server

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=f"knitfab-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _ready(self) -> bool:
        return not self.stopping.is_set() and all(t.is_alive() for t in self._threads)


def _read_token(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("the token file %s can be read by others (mode %o): chmod 600 %s", path, mode, path)
    return path.read_text().strip()


@contextmanager
def signals_awaited(signals: tuple[int, ...]) -> Iterator[Callable[[], int]]:
    """A wait, for the main thread, until one of ``signals`` arrives (which one it returns);
    installed on entry, so none that comes meanwhile is missed.

    Nothing is done in a Python signal handler: Python's C handler writes the signal's number
    into a pipe (``signal.set_wakeup_fd``), from whichever thread the kernel gave the signal to,
    and the main thread reads it. A handler that sets a ``threading.Event`` the main thread waits
    on may run while the main thread holds that Event's lock, and then waits for it for ever (a
    server here did not end after its SIGTERM); a wait without a timeout on anything else never
    runs the handler at all when the kernel gives the signal to another thread."""
    read_end, write_end = os.pipe()
    for fd in (read_end, write_end):
        os.set_blocking(fd, False)
    previous = signal.set_wakeup_fd(write_end)
    handlers = {sig: signal.signal(sig, lambda *_: None) for sig in signals}

    def wait() -> int:
        while True:
            select.select([read_end], [], [])
            try:
                came = os.read(read_end, 64)
            except BlockingIOError:
                continue
            for number in came:
                if number in signals:
                    return number

    try:
        yield wait
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
