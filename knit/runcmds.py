"""``knit run``: find, show (and read logs), stop, retry and remove runs (spec §7.3)."""

from __future__ import annotations

import argparse
import sys

from .context import Context, command, go_json
from .flags import time_window


def register(verbs, common) -> None:
    """The commands of the group (its sub-parsers ``verbs``; cli.GROUPS names it)."""
    find = command(verbs, common, "run find", "find runs")
    find.add_argument("-p", "--planid", action="append", default=[], metavar="PLAN_ID")
    find.add_argument("-i", "--in-knitid", action="append", default=[], metavar="KNIT_ID", help="runs reading it")
    find.add_argument("-o", "--out-knitid", action="append", default=[], metavar="KNIT_ID", help="runs making it")
    find.add_argument("-s", "--status", action="append", default=[], metavar="STATUS")
    find.add_argument("--since", help="runs updated since this time (YYYY-mm-dd[THH[:MM[:SS]]][Z|±hh:mm])")
    find.add_argument("--duration", help="with --since: the length of the time window, e.g. 24h")
    find.set_defaults(func=cmd_find)
    show = command(verbs, common, "run show", "show a run, or its log")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--log", action="store_true", help="print the log (stdout and stderr) of the run")
    show.add_argument("-f", "--follow", action="store_true", help="with --log: keep printing until the run ends")
    show.set_defaults(func=cmd_show)
    stop = command(verbs, common, "run stop", "stop a run: its outputs count as done (-x: as failed)")
    stop.add_argument("run_id", metavar="RUN_ID")
    stop.add_argument("-x", "--fail", action="store_true", help="abort: the run fails")
    stop.set_defaults(func=cmd_stop)
    retry = command(verbs, common, "run retry", "run a finished run again")
    retry.add_argument("run_id", metavar="RUN_ID")
    retry.set_defaults(func=cmd_retry)
    remove = command(verbs, common, "run rm", "delete a finished run and its outputs")
    remove.add_argument("run_id", metavar="RUN_ID")
    remove.set_defaults(func=cmd_rm)


def cmd_find(ctx: Context, args: argparse.Namespace) -> int:
    since, duration = time_window(ctx, args)
    statuses = [s.strip() for item in args.status for s in item.split(",") if s.strip()]
    found = ctx.client.find_runs(args.planid, args.in_knitid, args.out_knitid, statuses, since, duration)
    ctx.out(go_json(found) + "\n")
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    if not args.log:
        ctx.out(go_json(ctx.client.get_run(args.run_id)) + "\n")
        return 0
    out = getattr(ctx.stdout, "buffer", None) or sys.stdout.buffer
    for chunk in ctx.client.run_log(args.run_id, follow=args.follow):
        out.write(chunk)
        out.flush()
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    if args.fail:
        ctx.client.abort_run(args.run_id)
        ctx.log(f"Run Id: {args.run_id} is aborting.")
    else:
        ctx.client.tearoff_run(args.run_id)
        ctx.log(f"Run Id: {args.run_id} is stopping.")
    return 0


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client.retry_run(args.run_id)
    ctx.log(f"requested to retry Run: {args.run_id}")
    return 0


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client.delete_run(args.run_id)
    ctx.log(f"deleted Run Id:{args.run_id}")
    return 0
