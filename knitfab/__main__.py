"""The ``knitfab`` command: ``serve`` runs the server; the others are for operators."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
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
    serve.add_argument("--capacity", help="local runner: cpu and memory runs may use at once, e.g. cpu=2,memory=8Gi")
    serve.add_argument("--allow-network", action="store_true", help="local runner: give runs the network")
    serve.add_argument(
        "--local-image", action="append", default=[], metavar="IMAGE:TAG=DIR",
        help="local runner: run plans of this image with DIR as /work (repeatable)",
    )  # fmt: skip
    for flag, env, what in _K8S_FLAGS:
        serve.add_argument(flag, help=f"kubernetes runner: {what} (default: ${env} or as docs/kubernetes.md says)")
    serve.set_defaults(func=_cmd_serve)
    migrate = commands.add_parser("migrate", help="create or upgrade the database of a data directory")
    migrate.add_argument("--data-dir", default="./knitfab-data", help="where Knitfab keeps its data")
    migrate.add_argument("--db", type=Path, help="the SQLite database file (default <data-dir>/knitfab.db)")
    migrate.set_defaults(func=_cmd_migrate)
    _install_parsers(commands)
    return parser


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


def _cmd_serve(args: argparse.Namespace) -> int:
    from .local import parse_capacity
    from .plans import parse_image
    from .server import Config, KnitfabServer

    if bool(args.cert) != bool(args.key):
        raise SystemExit("knitfab serve: --cert and --key go together")
    for flag, env, _ in _K8S_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            os.environ[env] = value  # the Kubernetes runner reads its settings from the environment
    images = {}
    for item in args.local_image:
        image, sep, folder = item.rpartition("=")
        if not sep or not Path(folder).is_dir():
            raise SystemExit(f"knitfab serve: --local-image wants IMAGE:TAG=DIR with an existing DIR: {item!r}")
        images[":".join(parse_image(image))] = Path(folder)
    config = Config(
        host=args.host, port=args.port, data_dir=args.data_dir, runner=args.runner, token_file=args.token_file,
        cert=args.cert, key=args.key, public_url=args.public_url, threads=args.threads,
        capacity=parse_capacity(args.capacity) if args.capacity else None, network=args.allow_network,
        local_images=images,
    )  # fmt: skip
    config.db = args.db
    return KnitfabServer(config).serve_forever()


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .migrations import current_version
    from .store import Store

    store = Store(args.data_dir, db=args.db)
    print(f"{store.layout.db}: schema version {current_version(store.db)}")
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KnitfabError as e:
        print(f"knitfab: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
