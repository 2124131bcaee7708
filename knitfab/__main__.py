"""The ``knitfab`` command: ``serve`` runs the server; the others are for operators."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .errors import KnitfabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knitfab", description="Knitfab in Python: server and admin commands.")
    parser.add_argument("--version", action="version", version=f"knitfab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate", help="create or upgrade the database of a data directory")
    migrate.add_argument("--data-dir", default="./knitfab-data", help="where Knitfab keeps its data")
    migrate.set_defaults(func=_cmd_migrate)
    return parser


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .migrations import current_version
    from .store import Store

    store = Store(args.data_dir)
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
