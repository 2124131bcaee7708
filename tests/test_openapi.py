"""The OpenAPI document is true: it names every route, and real responses fit it."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from knitfab.api.app import create_app
from knitfab.api.openapi import document
from knitfab.api.web import Services


def openapi_paths(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not rule.rule.startswith("/api"):  # the console's files
            continue
        path = (
            rule.rule.replace("<knit_id>", "{knitId}").replace("<plan_id>", "{planId}").replace("<run_id>", "{runId}")
        )
        routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_every_route_is_documented_and_every_documented_path_is_routed(store):
    app = create_app(Services(store))
    documented = {(path, method) for path, ops in document()["paths"].items() for method in ops}
    assert openapi_paths(app) == documented


def test_the_document_is_served(api):
    assert api.json("GET", "/api/openapi.json")["openapi"].startswith("3.")


@schemathesis.serializer("application/tar+gzip", "application/x-tar")
def _archive_bytes(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.mark.slow
def test_no_request_makes_the_server_fail(server):
    """A bounded schemathesis run: generated requests for every operation, responses checked
    against the document (no 5xx, documented statuses and shapes)."""
    schema = schemathesis.openapi.from_dict(document())
    schema.config.update(base_url=server.url.removesuffix("/api"))
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            # The server rightly refuses some schema-valid values (a duration without since, a
            # date that is not RFC 3339): a refusal is not a failure, a 5xx or a shape mismatch is.
            case.call_and_validate(excluded_checks=[checks.positive_data_acceptance])

        check()
