"""``/api/plans``: register, find, show and change plans (spec §3 P1–P9)."""

from __future__ import annotations

from flask import Blueprint, request

from ..errors import BadRequest
from ..paging import parse_page
from ..planspec import SPEC_FIELDS, parse_plan_spec
from ..store import plans
from ..tags import parse_tag
from . import render
from .web import body, reply, services, store, string_list

bp = Blueprint("plans", __name__, url_prefix="/api/plans")


@bp.get("/")
def find():
    active = request.args.get("active") or None  # empty is absent, as in Knitfab
    if active not in (None, "true", "false"):
        raise BadRequest("active must be true or false", reason="query specification is incorrect")
    try:
        in_tags = [parse_tag(t) for t in request.args.getlist("in_tag")]
        out_tags = [parse_tag(t) for t in request.args.getlist("out_tag")]
    except BadRequest as e:
        raise BadRequest(e.message, reason="query specification is incorrect") from None
    found = plans.find_plans(
        store(),
        active=None if active is None else active == "true",
        image=request.args.get("image") or None,
        in_tags=in_tags,
        out_tags=out_tags,
        page=parse_page(request.args),
    )
    return reply(render.plan_list(found))


@bp.post("/")
def apply():
    # Knitfab wants exactly "application/json"; a charset parameter is accepted here too.
    spec = parse_plan_spec(body(SPEC_FIELDS))
    runner = services().runner
    if runner is not None:  # a runner that can refuse a plan does so at apply time
        runner.check_plan(spec.image, spec.version, spec.entrypoint)
    return reply(render.plan(plans.apply_plan(store(), spec)))


@bp.get("/<plan_id>/")
def show(plan_id: str):
    return reply(render.plan(plans.show_plan(store(), plan_id)))


@bp.put("/<plan_id>/active")
def activate(plan_id: str):
    return reply(render.plan(plans.set_active(store(), plan_id, True)))


@bp.delete("/<plan_id>/active")
def deactivate(plan_id: str):
    return reply(render.plan(plans.set_active(store(), plan_id, False)))


@bp.put("/<plan_id>/resources")
def resources(plan_id: str):
    doc = body({"set", "unset"})
    set_ = doc.get("set") or {}
    if not isinstance(set_, dict):
        raise BadRequest("set must be a mapping of resource type to quantity")
    unset = string_list(doc, "unset")
    return reply(render.plan(plans.change_resources(store(), plan_id, set_, [str(u) for u in unset])))


@bp.put("/<plan_id>/annotations")
def annotations(plan_id: str):
    doc = body({"add", "remove", "remove_key"})
    lists = [string_list(doc, key) for key in ("add", "remove", "remove_key")]
    if not all(isinstance(item, str) for items in lists for item in items):
        raise BadRequest("add, remove and remove_key must be lists of strings")
    return reply(render.plan(plans.change_annotations(store(), plan_id, *lists)))


@bp.put("/<plan_id>/serviceaccount")
def set_service_account(plan_id: str):
    doc = body({"service_account"})
    return reply(render.plan(plans.set_service_account(store(), plan_id, doc.get("service_account") or "")))


@bp.delete("/<plan_id>/serviceaccount")
def unset_service_account(plan_id: str):
    return reply(render.plan(plans.set_service_account(store(), plan_id, None)))
