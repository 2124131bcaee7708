"""The ``knitfab`` command: ``serve`` runs the server; the others are for operators."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .diskspace import DEFAULT_RESERVE
from .errors import KnitfabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knitfab", description="Knitfab in Python: server and admin commands.")
    parser.add_argument("--version", action="version", version=f"knitfab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the REST API and the engine", description=_SERVE)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks a free one")
    serve.add_argument("--data-dir", type=Path, default=Path("./knitfab-data"), help="where Knitfab keeps its data")
    serve.add_argument("--db", type=Path, help="the SQLite database file (default <data-dir>/knitfab.db); a local disk")
    serve.add_argument("--runner", choices=["local", "kubernetes"], default="local", help="where runs execute")
    serve.add_argument("--token-file", type=Path, help="require this bearer token on every request")
    serve.add_argument("--cert", type=Path, help="TLS certificate (PEM); needs --key")
    serve.add_argument("--key", type=Path, help="TLS private key (PEM)")
    serve.add_argument("--public-url", help="the API URL users reach, for the handout (e.g. http://node:30803/api)")
    serve.add_argument("--threads", type=int, default=16, help="HTTP worker threads")
    serve.add_argument(
        "--response-cache", default="64Mi", metavar="QUANTITY",
        help="memory for answers of GET /api/data, /api/runs and /api/plans, kept until the next change"
        " (default 64Mi; 0: none)",
    )  # fmt: skip
    serve.add_argument(
        "--max-header-size", type=int, default=64 << 10, metavar="BYTES",
        help="largest request head (request line and headers); larger is refused with 431 (default 65536)",
    )  # fmt: skip
    serve.add_argument(
        "--client-timeout", type=float, default=10.0, metavar="SECONDS",
        help="time for a client's request head, an idle keep-alive and each read of a body (default 10)",
    )  # fmt: skip
    serve.add_argument(
        "--capacity", type=_capacity, help="local runner: cpu and memory runs may use at once, e.g. cpu=2,memory=8Gi"
    )
    serve.add_argument("--allow-network", action="store_true", help="local runner: give runs the network")
    serve.add_argument(
        "--local-image", action="append", default=[], metavar="IMAGE:TAG=DIR",
        help="local runner: run plans of this image with DIR as /work (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--public", type=Path, metavar="DIR", help="serve the static web console in DIR at / instead of ours"
    )
    serve.add_argument(
        "--config", type=Path, metavar="FILE",
        help="YAML with lifecycle hooks (hooks.lifecycle-hooks) and extra API routes (extraApi.endpoints)",
    )  # fmt: skip
    serve.add_argument(
        "--max-data-size", type=_bytes, metavar="QUANTITY",
        help="the largest Data an upload may hold, e.g. 10Gi (default: whatever fits above --disk-reserve)",
    )  # fmt: skip
    serve.add_argument(
        "--disk-reserve", type=_bytes, default=DEFAULT_RESERVE, metavar="QUANTITY",
        help="disk space uploads always leave free for the database, e.g. 2Gi (default 1Gi)",
    )  # fmt: skip
    serve.add_argument("--run-uid", type=int, help="local runner as root: the uid runs execute as (default 65432)")
    serve.add_argument("--run-pids", type=int, default=1024, help="local runner: processes per run (default 1024)")
    serve.add_argument(
        "--registry-port", type=int, default=30503, metavar="PORT",
        help="port of the image registry (docker push localhost:PORT/...); 0 disables it (default 30503)",
    )  # fmt: skip
    serve.add_argument(
        "--no-host-mode", action="store_true",
        help="local runner: refuse plans whose image is not in the registry, instead of running their entrypoint",
    )  # fmt: skip
    serve.add_argument(
        "--rootfs-cache", default="20Gi", metavar="QUANTITY",
        help="local runner: bytes of unpacked images kept, least recently used removed first (default 20Gi)",
    )  # fmt: skip
    for flag, env, what in _K8S_FLAGS:
        serve.add_argument(flag, help=f"kubernetes runner: {what} (default: ${env} or as docs/kubernetes.md says)")
    serve.set_defaults(func=_cmd_serve, parser=serve)
    migrate = commands.add_parser("migrate", help="create or upgrade the database of a data directory")
    migrate.add_argument("--data-dir", default="./knitfab-data", help="where Knitfab keeps its data")
    migrate.add_argument("--db", type=Path, help="the SQLite database file (default <data-dir>/knitfab.db)")
    migrate.set_defaults(func=_cmd_migrate)
    _admin_commands(commands)
    _install_parsers(commands)
    return parser


def _admin_commands(commands) -> None:
    backup = commands.add_parser("backup", help="copy a data directory, while its server runs, into DEST")
    backup.add_argument("dest", type=Path, metavar="DEST", help="an empty or new folder")
    backup.add_argument("--data-dir", default="./knitfab-data", help="the data directory to back up")
    backup.set_defaults(func=_cmd_backup)
    restore = commands.add_parser("restore", help="restore a backup into an empty data directory")
    restore.add_argument("src", type=Path, metavar="SRC", help="a folder made by knitfab backup")
    restore.add_argument("--data-dir", default="./knitfab-data", help="where to restore (empty or new)")
    restore.set_defaults(func=_cmd_restore)
    imports = commands.add_parser("import", help="register a directory on this machine as a new Data (moved in)")
    imports.add_argument("source", type=Path, metavar="DIR", help="the directory; it is moved into the data directory")
    imports.add_argument("-t", "--tag", action="append", default=[], metavar="KEY:VALUE", help="tag the Data")
    imports.add_argument("--copy", action="store_true", help="copy DIR instead (another filesystem)")
    imports.add_argument("--data-dir", default="./knitfab-data", help="where Knitfab keeps its data")
    imports.set_defaults(func=_cmd_import)


def _install_parsers(commands) -> None:
    install = commands.add_parser("install", help="install or upgrade Knitfab on Kubernetes", description=_INSTALL)
    install.add_argument("--namespace", "-n", default="knitfab", help="namespace of the install (default knitfab)")
    install.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    install.add_argument("--storage-class", help="storage class of the data volume (default: the cluster's)")
    install.add_argument("--rwx", action="store_true", help="ReadWriteMany data volume: workers run on any node")
    install.add_argument("--tls", action="store_true", help="HTTPS for the API and the registry (a self-signed CA)")
    install.add_argument("--node-port-base", type=int, help="API NodePort N, registry N+1 (default 30803 and 30503)")
    install.add_argument("--image", default="knitfab:latest", help="the server image (default knitfab:latest)")
    install.add_argument("--node-ip", help="node address for the handout (default: the first node's)")
    install.add_argument(
        "--settings", type=Path, default=Path("knitfab-install-settings"), help="where certs/ and handout/ go",
    )  # fmt: skip
    install.add_argument("--wait", type=float, default=300, help="seconds to wait for the rollout (default 300)")
    install.add_argument("--dry-run", action="store_true", help="print the manifest and change nothing")
    install.set_defaults(func=_cmd_install)
    uninstall = commands.add_parser("uninstall", help="remove Knitfab from a namespace")
    uninstall.add_argument("--namespace", "-n", default="knitfab", help="namespace of the install (default knitfab)")
    uninstall.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    uninstall.add_argument("--hard", action="store_true", help="also delete the data and database volumes")
    uninstall.set_defaults(func=_cmd_uninstall)


_INSTALL = """Render the Kubernetes objects for a namespace (knitfab/manifest.py), apply them, wait for the
server to roll out and write <settings>/handout/ (knitprofile for `knit init`, and with --tls the
CA for docker). The server image must be in the cluster first: docs/kubernetes.md."""


def _settings(args: argparse.Namespace):
    from .manifest import Settings

    fields = {"namespace": args.namespace, "storage_class": args.storage_class, "rwx": args.rwx, "tls": args.tls}
    return Settings.from_base(args.node_port_base, image=args.image, **fields)


def _cmd_install(args: argparse.Namespace) -> int:
    from .manifest import render, to_yaml

    settings = _settings(args)
    if args.dry_run:
        print(to_yaml(render(settings)), end="")
        return 0
    from . import install

    handout = install.install(install.api_client(args.kubeconfig), settings, args.settings, args.node_ip, args.wait)
    print(f"knitfab is installed in namespace {settings.namespace}; the handout is in {handout}/")
    print(f"  knit init {handout / 'knitprofile'}")
    return 0


def _cmd_uninstall(args: argparse.Namespace) -> int:
    from . import install

    for gone in install.uninstall(install.api_client(args.kubeconfig), args.namespace, args.hard):
        print(f"deleted {gone}")
    if not args.hard:
        print("the volumes knitfab-data and knitfab-db are kept: `knitfab uninstall --hard` deletes them")
    return 0


_SERVE = """Serve Knitfab's REST API under /api and run the engine in the same process. Runs execute
in a bubblewrap sandbox on this host (--runner local) or as Kubernetes Jobs (--runner kubernetes).
The handout for `knit init` is written to <data-dir>/handout/knitprofile."""


_K8S_FLAGS = [
    ("--namespace", "KNITFAB_NAMESPACE", "the namespace of the worker Jobs"),
    ("--data-pvc", "KNITFAB_DATA_PVC", "the PVC holding the data directory"),
    ("--data-subpath", "KNITFAB_DATA_SUBPATH", "where the data directory is in that PVC"),
]


class FlagError(Exception):
    """Flags that do not go together or name what is not there: an argparse error (exit 2)."""


def _capacity(text: str):
    """``cpu=2,memory=8Gi`` (argparse's ``type``)."""
    from .runners.local import parse_capacity

    try:
        return parse_capacity(text) if text else None
    except (ValueError, KnitfabError) as e:
        raise argparse.ArgumentTypeError(getattr(e, "advice", None) or str(e)) from None


def _bytes(text: str) -> int:
    """``10Gi``, ``500M``, ``1024``: a byte count (argparse's ``type``)."""
    from . import quantity

    try:
        amount = quantity.value(text)
    except KnitfabError as e:
        raise argparse.ArgumentTypeError(e.advice) from None
    if amount < 0 or amount != amount.to_integral_value():
        raise argparse.ArgumentTypeError(f"a whole, non-negative number of bytes, like 10Gi: {text!r}")
    return int(amount)


def _cmd_serve(args: argparse.Namespace) -> int:
    from . import quantity
    from .planspec import parse_image
    from .server import Config, KnitfabServer

    if bool(args.cert) != bool(args.key):
        raise FlagError("--cert and --key go together")
    kubernetes = {
        env: value for flag, env, _ in _K8S_FLAGS if (value := getattr(args, flag[2:].replace("-", "_"))) is not None
    }
    images = {}
    for item in args.local_image:
        image, sep, folder = item.rpartition("=")
        if not sep or not Path(folder).is_dir():
            raise FlagError(f"--local-image wants IMAGE:TAG=DIR with an existing DIR: {item!r}")
        images[":".join(parse_image(image))] = Path(folder)
    config = Config(
        host=args.host, port=args.port, data_dir=args.data_dir, runner=args.runner, token_file=args.token_file,
        cert=args.cert, key=args.key, public_url=args.public_url, threads=args.threads,
        capacity=args.capacity, network=args.allow_network,
        local_images=images, public=_public(args.public),
        max_header_size=args.max_header_size, client_timeout=args.client_timeout, **_extensions(args.config),
        max_data_size=args.max_data_size, disk_reserve=args.disk_reserve,
        run_uid=args.run_uid, run_pids=args.run_pids,
        registry_port=args.registry_port or None, host_mode=not args.no_host_mode,
        rootfs_cache=int(quantity.value(args.rootfs_cache)), kubernetes=kubernetes,
        response_cache=int(quantity.value(args.response_cache)),
    )  # fmt: skip
    config.db = args.db
    return KnitfabServer(config).serve_forever()


def _public(folder: Path | None) -> Path | None:
    if folder is not None and not (folder / "index.html").is_file():
        raise FlagError(f"--public wants a directory with an index.html: {folder}")
    return folder


def _extensions(path: Path | None) -> dict:
    """``Config`` fields of the ``--config`` file: Knitfab's Helm values for hooks and extra API."""
    import yaml

    from . import hooks
    from .api import extra

    if path is None:
        return {}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc, dict):
            raise ValueError("a mapping with hooks and/or extraApi is expected")
        return hooks.config_fields(doc) | extra.config_fields(doc)
    except (OSError, yaml.YAMLError, ValueError) as e:
        raise FlagError(f"--config {path}: {e}") from None


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .store.db import Store
    from .store.migrations import current_version

    store = Store(args.data_dir, db=args.db)
    print(f"{store.layout.db}: schema version {current_version(store.db)}")
    store.close()
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    from .store.backup import backup

    manifest = backup(args.data_dir, args.dest)
    print(f"{args.dest}: {len(manifest['data'])} Data and the database (schema version {manifest['schema_version']})")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from .store.backup import restore

    manifest = restore(args.src, args.data_dir)
    print(f"{args.data_dir}: restored {len(manifest['data'])} Data from {args.src}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    import json

    from .api import render
    from .store.db import Store
    from .store.imports import import_directory

    store = Store(args.data_dir)
    try:
        print(json.dumps(render.data(import_directory(store, args.source, args.tag, args.copy)), indent=4))
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except FlagError as e:
        args.parser.error(str(e))  # exits 2 with the command's usage
    except KnitfabError as e:
        print(f"knitfab: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
