"""``knit plan``: template, apply, show, find, graph and the mutable fields (spec §7.3, §8.3, §9)."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from pathlib import Path

from .client import KnitError
from .context import Context, UsageError, command, go_json
from .flags import TRISTATE, add_graph_flags, depth, directions, tag_flags
from .render import write_graph

ACTIVE = TRISTATE
SPEC_KEYS = (
    "annotations", "image", "entrypoint", "args", "inputs", "outputs", "log",
    "active", "resources", "on_node", "service_account",
)  # fmt: skip


def register(verbs, common) -> None:
    """The commands of the group (its sub-parsers ``verbs``; cli.GROUPS names it)."""
    template = command(verbs, common, "plan template", "write a plan file from a `docker save` image")
    template.add_argument("image", nargs="?", metavar="IMAGE:TAG", help="the image to describe (when several)")
    template.add_argument("--scratch", action="store_true", help="a blank plan, without an image")
    template.add_argument("-i", "--input", default="-", metavar="FILE", help="`docker save` tar (default stdin)")
    template.add_argument(
        "--image", dest="from_registry", metavar="IMAGE:TAG", help="read it from the server's registry"
    )
    template.add_argument("--registry", metavar="HOST:PORT", help="that registry (default: the API host, port 30503)")
    template.set_defaults(func=cmd_template)
    apply = command(verbs, common, "plan apply", "register a plan from its YAML file")
    apply.add_argument("plan_file", metavar="PLAN_FILE")
    apply.set_defaults(func=cmd_apply)
    show = command(verbs, common, "plan show", "show a plan")
    show.add_argument("plan_id", metavar="PLAN_ID")
    show.set_defaults(func=cmd_show)
    find = command(verbs, common, "plan find", "find plans")
    find.add_argument("--active", default="both", choices=list(ACTIVE))
    find.add_argument("--image", metavar="IMAGE[:TAG]")
    find.add_argument("-i", "--in-tag", action="append", default=[], metavar="KEY:VALUE", help="all on one input")
    find.add_argument("-o", "--out-tag", action="append", default=[], metavar="KEY:VALUE", help="all on one output")
    find.set_defaults(func=cmd_find)
    graph = command(verbs, common, "plan graph", "print how plans feed each other (DOT)")
    graph.add_argument("plan_id", metavar="PLAN_ID")
    add_graph_flags(graph)
    graph.set_defaults(func=cmd_graph)
    _mutations(verbs, common)


def _mutations(verbs, common) -> None:
    active = command(verbs, common, "plan active", "activate (yes) or deactivate (no) a plan")
    active.add_argument("mode", metavar="yes|no")
    active.add_argument("plan_id", metavar="PLAN_ID")
    active.set_defaults(func=cmd_active)
    resource = command(verbs, common, "plan resource", "set or unset resource limits of a plan")
    resource.add_argument("plan_id", metavar="PLAN_ID")
    resource.add_argument("-s", "--set", action="append", default=[], metavar="TYPE=QUANTITY")
    resource.add_argument("-u", "--unset", action="append", default=[], metavar="TYPE")
    resource.set_defaults(func=cmd_resource)
    annotate = command(verbs, common, "plan annotate", "add or remove annotations of a plan")
    annotate.add_argument("plan_id", metavar="PLAN_ID")
    annotate.add_argument("--add", action="append", default=[], metavar="KEY=VALUE")
    annotate.add_argument("--remove", action="append", default=[], metavar="KEY=VALUE")
    annotate.add_argument("--remove-key", action="append", default=[], metavar="KEY")
    annotate.set_defaults(func=cmd_annotate)
    account = command(verbs, common, "plan serviceaccount", "set or unset the service account of a plan")
    account.add_argument("plan_id", metavar="PLAN_ID")
    account.add_argument("--set", metavar="NAME")
    account.add_argument("--unset", action="store_true")
    account.set_defaults(func=cmd_serviceaccount)


def cmd_template(ctx: Context, args: argparse.Namespace) -> int:
    if args.scratch and args.image:
        raise UsageError("--scratch takes no image", args.parser)
    from .template import TemplateError, plan_template

    env = ctx.env
    try:
        if args.scratch:
            text = plan_template(None, None, True, env.tags, env.resources)
        elif args.from_registry:
            text = _template_from_registry(ctx, args)
        elif args.input == "-":
            text = plan_template(sys.stdin.buffer, args.image, False, env.tags, env.resources)
        else:
            with open(args.input, "rb") as image:
                text = plan_template(image, args.image, False, env.tags, env.resources)
    except TemplateError as e:
        raise KnitError(str(e)) from None
    ctx.out(text)
    ctx.log("# Plan file is generated. modify it as you like.")
    return 0


def _template_from_registry(ctx: Context, args: argparse.Namespace) -> str:
    from .registry import Registry
    from .template import plan_template_from_config

    config = Registry.of(ctx.client, args.registry).image_config(args.from_registry)
    return plan_template_from_config(config, args.from_registry, ctx.env.tags, ctx.env.resources)


MOUNTPOINT_KEYS = ("path", "tags")


def read_plan(path: str, warn: Callable[[str], None] = lambda message: None) -> dict:
    """A plan file as Knitfab reads it: YAML, unknown keys ignored (each one ``warn``ed about,
    with the key it may be a typo of), numbers as strings."""
    import yaml  # here: `knit` start-up does not import it

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise KnitError(f"{path} is not YAML: {e}") from None
    if not isinstance(doc, dict):
        raise KnitError(f"{path} is not a plan: a mapping with image, inputs and outputs is expected")
    for where, key, known in unknown_keys(doc):
        hint = difflib.get_close_matches(key, known, n=1)
        guess = f" (did you mean {hint[0]}?)" if hint else ""
        fate = "" if where else " is ignored"  # the server refuses unknown keys in mountpoints
        warn(f"[WARN] {path}: unknown key {where}{key!r}{fate}{guess}")
    spec = {key: doc[key] for key in SPEC_KEYS if key in doc}
    if isinstance(spec.get("resources"), dict):
        spec["resources"] = {str(k): str(v) for k, v in spec["resources"].items()}
    return spec


def unknown_keys(doc: dict) -> list[tuple[str, str, tuple[str, ...]]]:
    """(where, key, the keys allowed there) of every key no plan has, at the top level and in
    the mountpoints."""
    found = [("", str(key), SPEC_KEYS) for key in doc if key not in SPEC_KEYS]
    mountpoints = [(f"in {part}[{n}]: ", m) for part in ("inputs", "outputs") for n, m in enumerate(_list(doc, part))]
    if isinstance(doc.get("log"), dict):
        mountpoints.append(("in log: ", doc["log"]))
    for where, point in mountpoints:
        if isinstance(point, dict):
            known = ("tags",) if where == "in log: " else MOUNTPOINT_KEYS
            found += [(where, str(key), known) for key in point if key not in known]
    return found


def _list(doc: dict, key: str) -> list:
    value = doc.get(key)
    return value if isinstance(value, list) else []


def cmd_apply(ctx: Context, args: argparse.Namespace) -> int:
    plan = ctx.client.apply_plan(read_plan(args.plan_file, ctx.log))
    ctx.out(go_json(plan) + "\n")
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out(go_json(ctx.client.get_plan(args.plan_id)) + "\n")
    return 0


def cmd_find(ctx: Context, args: argparse.Namespace) -> int:
    in_tags, out_tags = tag_flags(ctx, args.in_tag), tag_flags(ctx, args.out_tag)
    found = ctx.client.find_plans(ACTIVE[args.active], args.image, in_tags, out_tags)
    ctx.out(go_json(found) + "\n")
    return 0


def cmd_graph(ctx: Context, args: argparse.Namespace) -> int:
    up, down = directions(args)
    return write_graph(ctx, ctx.client.plan_graph(args.plan_id, up, down, depth(args)), args.output)


def cmd_active(ctx: Context, args: argparse.Namespace) -> int:
    if args.mode not in ("yes", "no"):
        raise UsageError(f"the mode is yes or no, not {args.mode!r}", args.parser)
    ctx.out(go_json(ctx.client.set_plan_active(args.plan_id, args.mode == "yes")) + "\n")
    return 0


def cmd_resource(ctx: Context, args: argparse.Namespace) -> int:
    if not args.set and not args.unset:
        ctx.log("Nothing to do.")
        return 0
    changes = {}
    for item in args.set:
        rtype, sep, qty = item.partition("=")
        if not sep or not rtype or not qty:
            raise UsageError(f"--set wants TYPE=QUANTITY, not {item!r}", args.parser)
        changes[rtype.strip()] = qty.strip()
    plan = ctx.client.change_plan_resources(args.plan_id, changes, args.unset)
    ctx.out(go_json(plan, indent=2))
    ctx.log(f"Plan:{args.plan_id} is updated.")
    return 0


def cmd_annotate(ctx: Context, args: argparse.Namespace) -> int:
    bad = [a for a in args.add + args.remove if "=" not in a]
    if bad:
        raise UsageError(f"annotations are KEY=VALUE: {', '.join(bad)}", args.parser)
    plan = ctx.client.annotate_plan(args.plan_id, args.add, args.remove, args.remove_key)
    ctx.out(go_json(plan) + "\n")
    return 0


def cmd_serviceaccount(ctx: Context, args: argparse.Namespace) -> int:
    if bool(args.set) == bool(args.unset):
        raise UsageError("give either --set NAME or --unset", args.parser)
    ctx.out(go_json(ctx.client.set_service_account(args.plan_id, args.set)) + "\n")
    return 0
