"""The OpenAPI document: valid, served at /openapi.json, and covering every route of the app."""

from __future__ import annotations

import schemathesis
from starlette.routing import Mount, Route

from smsbridge.carriers import load_settings
from smsbridge.web.app import create_app
from smsbridge.web.openapi import document


def _routes() -> set[tuple[str, str]]:
    app = create_app(load_settings({}))
    found = set()
    for route in app.routes:
        if isinstance(route, Mount) and route.path == "/console":
            continue  # the operator console: HTML pages for people, not the API
        assert isinstance(route, Route), route
        for method in route.methods or ():
            if method != "HEAD":
                found.add((route.path, method.lower()))
    return found


def test_the_document_is_a_valid_openapi_schema() -> None:
    schema = schemathesis.openapi.from_dict(document(("twilio", "generic")))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/healthz", "/readyz", "/metrics", "/api/sms"}


def test_every_route_of_the_app_is_described() -> None:
    described = {
        (path, method)
        for path, item in document()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    missing = _routes() - described
    assert not missing, f"routes missing from smsbridge/openapi.py: {sorted(missing)}"
    stale = described - _routes()
    assert not stale, f"described but not routed: {sorted(stale)}"
