"""``knit data``: push, find, pull, tag and lineage (spec §7.3, §8)."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from .client import ChecksumMismatch
from .context import Context, UsageError, command, go_json
from .flags import TRISTATE, add_graph_flags, depth, directions, tag_flags, time_window
from .progress import bar
from .render import write_graph
from .tagtext import is_system_key

TRANSIENT = TRISTATE


def register(verbs, common) -> None:
    """The commands of the group (its sub-parsers ``verbs``; cli.GROUPS names it)."""
    push = command(verbs, common, "data push", "upload directories as new Data")
    push.add_argument("sources", nargs="+", metavar="SOURCE", help="a directory to upload")
    push.add_argument("-t", "--tag", action="append", default=[], metavar="KEY:VALUE", help="tag the Data")
    push.add_argument("-n", "--name", action="store_true", help="also tag name:<directory name>")
    push.add_argument("--dereference", action="store_true", help="archive what symlinks point to")
    push.set_defaults(func=cmd_push)
    find = command(verbs, common, "data find", "find Data by tags and time")
    find.add_argument("-t", "--tag", action="append", default=[], metavar="KEY:VALUE", help="required tag (AND)")
    find.add_argument("--transient", default="both", choices=list(TRANSIENT), help="Data still being made/failed")
    find.add_argument("--since", help="Data updated since this time (YYYY-mm-dd[THH[:MM[:SS]]][Z|±hh:mm])")
    find.add_argument("--duration", help="with --since: the length of the time window, e.g. 24h")
    find.set_defaults(func=cmd_find)
    pull = command(verbs, common, "data pull", "download a Data")
    pull.add_argument("knit_id", metavar="KNIT_ID")
    pull.add_argument("dest", metavar="DEST", nargs="?", default=".", help="folder to save into; - for stdout")
    pull.add_argument("-x", "--extract", action="store_true", help="extract into DEST/<knitId>/")
    pull.set_defaults(func=cmd_pull)
    tag = command(verbs, common, "data tag", "add or remove tags of a Data")
    tag.add_argument("knit_id", metavar="KNIT_ID")
    tag.add_argument("--add", action="append", default=[], metavar="KEY:VALUE")
    tag.add_argument("--remove", action="append", default=[], metavar="KEY:VALUE")
    tag.add_argument("--remove-key", action="append", default=[], metavar="KEY")
    tag.set_defaults(func=cmd_tag)
    lineage = command(verbs, common, "data lineage", "print the lineage graph of a Data (DOT)")
    lineage.add_argument("knit_id", metavar="KNIT_ID")
    add_graph_flags(lineage)
    lineage.set_defaults(func=cmd_lineage)


def user_tags(ctx: Context, texts: list[str]) -> list[str]:
    """``KEY:VALUE`` tags a user may set; system tags are a usage error."""
    for text in tag_flags(ctx, texts):
        if is_system_key(text.partition(":")[0]):
            raise UsageError(f"system tags cannot be set: {text!r}", ctx.args.parser)
    return texts


def cmd_push(ctx: Context, args: argparse.Namespace) -> int:
    tags = user_tags(ctx, args.tag)
    tags += [t for t in ctx.env.tags if not t.strip().startswith("knit#")]
    for source in args.sources:
        path = Path(source)
        if not path.is_dir():
            ctx.log(f"{source} is not a directory: skipped")
            continue
        named = [f"name:{path.resolve().name}"] if args.name else []
        total = _size(path) if ctx.is_terminal else None  # a walk of its own: only for a bar that shows
        with bar(ctx, total, f"push {source}") as progress:
            detail = ctx.client.push_dir(path, list(dict.fromkeys(tags + named)), args.dereference, progress)
        ctx.log(f"pushed {source} as knitId:{detail['knitId']}")
        ctx.out(go_json(detail))
    return 0


def _size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def cmd_find(ctx: Context, args: argparse.Namespace) -> int:
    since, duration = time_window(ctx, args)
    found = ctx.client.find_data(tag_flags(ctx, args.tag), since, duration)
    wanted = TRANSIENT[args.transient]
    if wanted is not None:
        found = [d for d in found if any(t.startswith("knit#transient:") for t in d["tags"]) == wanted]
    ctx.out(go_json(found) + "\n")
    return 0


def cmd_pull(ctx: Context, args: argparse.Namespace) -> int:
    if args.dest == "-":
        if args.extract:
            raise UsageError("-x cannot write to stdout (-)", args.parser)
        return _pull_to_stdout(ctx, args.knit_id)
    try:
        with bar(ctx, None, f"pull {args.knit_id}") as progress:
            target = ctx.client.pull(args.knit_id, os.path.expanduser(args.dest), args.extract, progress)
    except ChecksumMismatch as e:
        ctx.log(f"[WARN] {e}")
        return 0
    ctx.log(f"knitId:{args.knit_id} is saved to {target}")
    return 0


def _pull_to_stdout(ctx: Context, knit_id: str) -> int:
    out = getattr(ctx.stdout, "buffer", None) or sys.stdout.buffer
    with ctx.client.download(knit_id) as resp:
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    out.flush()
    return 0


def cmd_tag(ctx: Context, args: argparse.Namespace) -> int:
    user_tags(ctx, args.add + args.remove)
    system = [k for k in args.remove_key if k.strip().startswith("knit#")]
    if system:
        raise UsageError(f"system tags cannot be removed: {', '.join(system)}", args.parser)
    detail = ctx.client.tag_data(args.knit_id, args.add, args.remove, args.remove_key)
    ctx.log(go_json(detail))  # Knitfab prints the result as a log, on stderr
    return 0


def cmd_lineage(ctx: Context, args: argparse.Namespace) -> int:
    up, down = directions(args)
    dot = ctx.client.lineage(args.knit_id, up, down, depth(args))
    return write_graph(ctx, dot, args.output)
