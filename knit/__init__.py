"""knit: the command line and Python client of Knitfab in Python.

``knit`` (see ``knit -h``) does what Knitfab's ``knit`` does. Scripts can use the same client:

    from knit import KnitClient
    client = KnitClient.from_profile()          # the profile `knit init` stored for this directory
    data = client.push_dir("./dataset", ["type:dataset", "project:demo"])
    runs = client.find_runs(knit_ids_in=[data["knitId"]])

This package imports nothing of the server (no flask, peewee or kubernetes). The server may import
these knit modules, which need only the standard library, so that both sides apply one copy of
a rule: ``tagtext`` (``KEY:VALUE`` tags), ``plandefaults`` (a plan's default resources),
``timefmt`` (times and durations), ``archive``, ``unpack``, ``extract`` and ``blocks`` (tar streams,
safely), ``digests`` (their checksum trailers), ``graphs`` (lineage in DOT). No other.
"""

from .buildinfo import __version__

__all__ = ["KnitClient", "KnitError", "__version__"]


def __getattr__(name: str):
    # KnitClient and KnitError are imported on first use: `knit version` and the server's
    # imports of knit modules do not load the client (issue 14: start-up < 100 ms).
    if name in ("KnitClient", "KnitError"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
