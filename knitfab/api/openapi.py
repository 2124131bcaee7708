"""``GET /api/openapi.json``: an OpenAPI 3 description of every endpoint.

tests/test_openapi.py keeps it true: every Flask route is described here and every path here
is routed, and schemathesis checks real responses against these schemas.
"""

from __future__ import annotations

from flask import Blueprint

from .. import __version__
from ..status import RunStatus
from .web import reply

bp = Blueprint("openapi", __name__, url_prefix="/api")


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def array(item: dict) -> dict:
    return {"type": "array", "items": item}


def obj(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props}


STR = {"type": "string"}
STRINGS = array(STR)
TAGS = array(ref("Tag"))
MOUNTPOINT = obj(["path", "tags"], path=STR, tags=TAGS)

SCHEMAS = {
    "Tag": {"type": "string", "pattern": "^[^:]*:.*$", "description": "key:value"},
    "TagInput": {"oneOf": [{"type": "string", "pattern": ":"}, obj(["key", "value"], key=STR, value=STR)]},
    "Error": obj(["message"], message=STR),
    "PlanSummary": obj(
        ["planId"], planId=STR, image=STR, entrypoint=STRINGS, args=STRINGS, name=STR, annotations=STRINGS
    ),
    "Mountpoint": MOUNTPOINT,
    "LogPoint": obj(["tags"], tags=TAGS),
    "PlanDetail": {
        "allOf": [
            ref("PlanSummary"),
            obj(
                ["inputs", "outputs", "active"],
                inputs=array({"allOf": [ref("Mountpoint"), obj(["upstreams"], upstreams=array({"type": "object"}))]}),
                outputs=array(
                    {"allOf": [ref("Mountpoint"), obj(["downstreams"], downstreams=array({"type": "object"}))]}
                ),
                log={"allOf": [ref("LogPoint"), obj(["downstreams"], downstreams=array({"type": "object"}))]},
                active={"type": "boolean"},
                on_node=obj([], may=STRINGS, prefer=STRINGS, must=STRINGS),
                resources={"type": "object", "additionalProperties": STR},
                service_account=STR,
            ),
        ]
    },
    "RunSummary": obj(
        ["runId", "status", "updatedAt", "plan"],
        runId=STR,
        status={"type": "string", "enum": [status.value for status in RunStatus]},
        updatedAt=STR,
        exit=obj(["code", "message"], code={"type": "integer"}, message=STR),
        plan=ref("PlanSummary"),
    ),
    "Assignment": obj(["path", "tags", "knitId"], path=STR, tags=TAGS, knitId=STR),
    "RunDetail": {
        "allOf": [
            ref("RunSummary"),
            obj(
                ["inputs", "outputs", "log"],
                inputs=array(ref("Assignment")),
                outputs=array(ref("Assignment")),
                log={"oneOf": [obj(["tags", "knitId"], tags=TAGS, knitId=STR), {"type": "null"}]},
            ),
        ]
    },
    "DataDetail": obj(
        ["knitId", "tags", "upstream", "downstreams", "nomination"],
        knitId=STR,
        tags=TAGS,
        upstream=obj(["run"], mountpoint=ref("Mountpoint"), log=ref("LogPoint"), run=ref("RunSummary")),
        downstreams=array(obj(["mountpoint", "run"], mountpoint=ref("Mountpoint"), run=ref("RunSummary"))),
        nomination=array(obj(["path", "tags", "plan"], path=STR, tags=TAGS, plan=ref("PlanSummary"))),
    ),
    "PlanSpec": obj(
        ["image", "inputs"],
        image=STR,
        entrypoint=STRINGS,
        args=STRINGS,
        inputs=array(obj(["path", "tags"], path=STR, tags=array(ref("TagInput")))),
        outputs=array(obj(["path"], path=STR, tags=array(ref("TagInput")))),
        log={"oneOf": [obj([], tags=array(ref("TagInput"))), {"type": "null"}]},
        active={"type": ["boolean", "null"]},
        resources={"type": "object", "additionalProperties": {"type": ["string", "number"]}},
        on_node=obj([], may=STRINGS, prefer=STRINGS, must=STRINGS),
        service_account=STR,
        annotations=STRINGS,
    ),
    "TagChange": obj([], add=array(ref("TagInput")), remove=array(ref("TagInput")), remove_key=STRINGS),
    "ResourceLimitChange": obj(
        [], set={"type": "object", "additionalProperties": {"type": ["string", "number"]}}, unset=STRINGS
    ),
    "AnnotationChange": obj([], add=STRINGS, remove=STRINGS, remove_key=STRINGS),
    "SetServiceAccount": obj(["service_account"], service_account=STR),
}


def ok(schema: dict | None, description: str = "OK") -> dict:
    content = {"application/json": {"schema": schema}} if schema else None
    return {"description": description, **({"content": content} if content else {})}


def errors(*codes: int) -> dict:
    return {str(c): {"description": "error", "content": {"application/json": {"schema": ref("Error")}}} for c in codes}


def op(summary: str, responses: dict, params: list | None = None, body: str | None = None, ctype: str = "") -> dict:
    spec: dict = {"summary": summary, "responses": responses}
    if params:
        spec["parameters"] = params
    if body:
        spec["requestBody"] = {"required": True, "content": {ctype or "application/json": {"schema": ref(body)}}}
    return spec


def path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": STR}


def query(name: str, many: bool = False, schema: dict | None = None) -> dict:
    param = {"name": name, "in": "query", "required": False, "schema": schema or (STRINGS if many else STR)}
    return {**param, "style": "form", "explode": True} if many else param


BINARY = {"type": "string", "format": "binary"}
TIME = [query("since"), query("duration")]
# An extension (Knitfab's clients never send it): a page of the list, newest first with order=desc.
PAGE = [
    query("limit", schema={"type": "integer", "minimum": 1, "maximum": 10000}),
    query("offset", schema={"type": "integer", "minimum": 0}),
    query("order", schema={"type": "string", "enum": ["asc", "desc"]}),
]
DEPTH = {"type": "string", "pattern": "^([0-9]{1,3}|all)$"}
GRAPH = {
    "200": {
        "description": "the graph: SVG by Graphviz, or its DOT with format=dot",
        "content": {"image/svg+xml": {"schema": STR}, "text/vnd.graphviz": {"schema": STR}},
    },
    **errors(400, 404, 503),
}
GRAPH_FORMAT = query("format", schema={"type": "string", "enum": ["svg", "dot"]})
LINEAGE = {**GRAPH, "200": {**GRAPH["200"], "content": {**GRAPH["200"]["content"], "application/json": {"schema": obj(
    ["data", "runs"], data={"type": "object", "additionalProperties": ref("DataDetail")},
    runs={"type": "object", "additionalProperties": ref("RunDetail")})}}}}  # fmt: skip
LINEAGE["200"]["description"] += "; with format=json (and data, up, down) the DataDetails and runs in it"
LINEAGE_FORMAT = query("format", schema={"type": "string", "enum": ["svg", "dot", "json"]})
DATA_ID, PLAN_ID, RUN_ID = path_param("knitId"), path_param("planId"), path_param("runId")

PATHS = {
    "/api/data/": {
        "get": op(
            "find Data (D1)", {"200": ok(array(ref("DataDetail"))), **errors(400)}, [query("tag", True), *TIME, *PAGE]
        ),
        "post": {
            "summary": "upload a Data as tar.gz or tar (D2)",
            "requestBody": {
                "required": True,
                "content": {"application/tar+gzip": {"schema": BINARY}, "application/x-tar": {"schema": BINARY}},
            },  # fmt: skip
            "responses": {"200": ok(ref("DataDetail")), **errors(400, 413, 415, 507)},
        },
    },
    "/api/data/{knitId}/": {
        "get": {
            "summary": "download a Data as tar.gz (or tar with ?format=tar) (D3)",
            "parameters": [DATA_ID, query("format", schema={"type": "string", "enum": ["tar", "tar.gz"]})],
            "responses": {
                "200": {"description": "archive", "content": {"application/tar+gzip": {"schema": BINARY}}},
                **errors(404),
            },
        },
        "put": op(
            "change the tags of a Data (D4)", {"200": ok(ref("DataDetail")), **errors(400, 404)}, [DATA_ID], "TagChange"
        ),  # fmt: skip
    },
    "/api/plans/": {
        "get": op(
            "find plans (P1)",
            {"200": ok(array(ref("PlanDetail"))), **errors(400)},
            [
                query("active", schema={"type": "string", "enum": ["true", "false"]}),
                query("image"),
                query("in_tag", True),
                query("out_tag", True),
                *PAGE,
            ],
        ),  # fmt: skip
        "post": op("register a plan (P2)", {"200": ok(ref("PlanDetail")), **errors(400, 409)}, body="PlanSpec"),
    },
    "/api/plans/{planId}/": {"get": op("show a plan (P3)", {"200": ok(ref("PlanDetail")), **errors(404)}, [PLAN_ID])},
    "/api/plans/{planId}/active": {
        "put": op("activate a plan (P4)", {"200": ok(ref("PlanDetail")), **errors(404, 409)}, [PLAN_ID]),
        "delete": op("deactivate a plan (P5)", {"200": ok(ref("PlanDetail")), **errors(404, 409)}, [PLAN_ID]),
    },
    "/api/plans/{planId}/resources": {
        "put": op(
            "set or unset resources (P6)",
            {"200": ok(ref("PlanDetail")), **errors(400, 404, 409)},
            [PLAN_ID],
            "ResourceLimitChange",
        ),  # fmt: skip
    },
    "/api/plans/{planId}/annotations": {
        "put": op(
            "change annotations (P7)",
            {"200": ok(ref("PlanDetail")), **errors(400, 404, 409)},
            [PLAN_ID],
            "AnnotationChange",
        ),  # fmt: skip
    },
    "/api/plans/{planId}/serviceaccount": {
        "put": op(
            "set the service account (P8)",
            {"200": ok(ref("PlanDetail")), **errors(400, 404, 409)},
            [PLAN_ID],
            "SetServiceAccount",
        ),  # fmt: skip
        "delete": op("unset the service account (P9)", {"200": ok(ref("PlanDetail")), **errors(404, 409)}, [PLAN_ID]),
    },
    "/api/runs/": {
        "get": op(
            "find runs (R1)",
            {"200": ok(array(ref("RunDetail"))), **errors(400)},
            [query("plan"), query("knitIdInput"), query("knitIdOutput"), query("status"), *TIME, *PAGE],
        )
    },
    "/api/runs/{runId}/": {
        "get": op("show a run (R2)", {"200": ok(ref("RunDetail")), **errors(404)}, [RUN_ID]),
        "delete": op("delete a run (R6)", {"204": ok(None, "deleted"), **errors(404, 409)}, [RUN_ID]),
    },
    "/api/runs/{runId}/abort": {
        "put": op("abort a run (R3)", {"200": ok(ref("RunDetail")), **errors(404, 409)}, [RUN_ID])
    },
    "/api/runs/{runId}/tearoff": {
        "put": op("stop a run, keeping its outputs (R4)", {"200": ok(ref("RunDetail")), **errors(404, 409)}, [RUN_ID])
    },
    "/api/runs/{runId}/retry": {
        "put": op("retry a finished run (R5)", {"200": ok(None, "retrying"), **errors(404, 409)}, [RUN_ID])
    },
    "/api/runs/{runId}/log": {
        "get": {
            "summary": "the log of a run (R7)",
            "parameters": [
                RUN_ID,
                {"name": "follow", "in": "query", "required": False, "allowEmptyValue": True, "schema": STR},
            ],  # fmt: skip
            "responses": {
                "200": {"description": "log", "content": {"application/octet-stream": {"schema": BINARY}}},
                **errors(404, 503),
            },
        }
    },
    "/api/x/lineage": {
        "get": op(
            "the lineage graph of a Data or a run (console extension): up/down steps, or the whole connected graph",
            LINEAGE,
            [query("data"), query("run"), query("up", schema=DEPTH), query("down", schema=DEPTH), LINEAGE_FORMAT],
        )
    },
    "/api/x/formats": {
        "get": op(
            "the archive types and checksums POST /api/data takes (extension: knit sends plain tar"
            " and a sha-256 Content-Digest trailer where listed)",
            {"200": ok(obj(["upload", "digests"], upload=STRINGS, digests=STRINGS))},
        )  # fmt: skip
    },
    "/api/x/plangraph": {
        "get": op(
            "the plan graph around a plan (console extension)",
            GRAPH,
            [query("plan"), query("up", schema=DEPTH), query("down", schema=DEPTH), GRAPH_FORMAT],
        )
    },
    "/api/healthz": {"get": op("liveness", {"200": ok(obj(["status"], status=STR))})},
    "/api/readyz": {"get": op("readiness", {"200": ok(obj(["status"], status=STR)), **errors(503)})},
    "/api/openapi.json": {"get": op("this document", {"200": ok({"type": "object"})})},
}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Knitfab in Python",
            "version": __version__,
            "description": "Knitfab v1.6.1 compatible REST API.",
        },  # fmt: skip
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": PATHS,
    }


@bp.get("/openapi.json")
def openapi_json():
    return reply(document())
