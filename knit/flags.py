"""Flags that several ``knit`` commands share, and the checks of their values (usage errors)."""

from __future__ import annotations

import argparse

from .context import Context, UsageError
from .tagtext import split_tag

# --transient and --active: which of both kinds to show, as Knitfab's knit spells it.
TRISTATE = {"both": None, "yes": True, "true": True, "no": False, "false": False}


def add_graph_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--upstream", action="store_true", help="only upstream")
    parser.add_argument("-d", "--downstream", action="store_true", help="only downstream")
    parser.add_argument("-n", "--numbers", default="3", metavar="N|all", help="how many steps (default 3)")
    parser.add_argument("-o", "--output", metavar="FILE", help="render to FILE.png/.svg/.pdf with Graphviz")


def tag_flags(ctx: Context, texts: list[str]) -> list[str]:
    """``KEY:VALUE`` tags given on the command line; anything else is a usage error (exit 2),
    as Knitfab's knit parses its tag flags, instead of a 400 from the server."""
    for text in texts:
        parts = split_tag(text)
        if parts is None or not parts[0]:
            raise UsageError(f"tag should be KEY:VALUE: {text!r}", ctx.args.parser)
    return texts


def time_window(ctx: Context, args: argparse.Namespace) -> tuple[str | None, str | None]:
    if args.duration and not args.since:
        raise UsageError("--duration needs --since", args.parser)
    if not args.since:
        return None, None
    from .timefmt import go_duration, parse_duration, parse_since  # datetime: only with --since

    try:
        since = parse_since(args.since)
        duration = go_duration(parse_duration(args.duration)) if args.duration else None
    except ValueError as e:
        raise UsageError(str(e), args.parser) from None
    return since, duration


def depth(args: argparse.Namespace) -> int | None:
    if args.numbers == "all":
        return None
    if not args.numbers.isdigit() or int(args.numbers) == 0:
        raise UsageError(f"-n takes a positive number or all, not {args.numbers!r}", args.parser)
    return int(args.numbers)


def directions(args: argparse.Namespace) -> tuple[bool, bool]:
    both = not (args.upstream or args.downstream)
    return both or args.upstream, both or args.downstream
