"""The webhooks' lean path (smsbridge/web/routes.py `LeanRoute`, `LeanWebhooks`; web/app.py
`BridgeApp`): a GET or POST to /carriers/{carrier}/{token}/inbound or .../status skips
Starlette's router and exception layers, and must answer, store and count exactly as the
router's path does.

Each request below is sent once through the app as it serves (the lean path) and once through
the same app's Starlette stack (`LeanRoute.full`), and the two answers are compared."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from smsbridge.web.routes import LeanRoute
from tests.conftest import WEBHOOK_TOKENS, RunningBridge

INBOUND = "/carriers/{carrier}/{token}/inbound"
STATUS = "/carriers/{carrier}/{token}/status"
FORM = {"from": "+254712345678", "to": "5000", "text": "P 12 Jane", "id": "lean-1"}


def _stack(bridge: RunningBridge) -> LeanRoute:
    assert bridge.http.get("/healthz").status_code == 200  # the app has built its stack
    stack = bridge.app.middleware_stack
    assert isinstance(stack, LeanRoute)
    return stack


def _entry(bridge: RunningBridge, inner: Any) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["app"] = bridge.app  # as Starlette.__call__ sets it
        await inner(scope, receive, send)

    return app


def _requests(tag: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx arguments): one of each answer the route gives."""
    generic = f"/carriers/generic/{WEBHOOK_TOKENS['generic']}/inbound"
    at = f"/carriers/africastalking/{WEBHOOK_TOKENS['africastalking']}/inbound"
    form = {**FORM, "id": f"{tag}-1"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b"from=%2B254712345678&text="
        for _ in range(80):
            yield b"y" * 1024

    return [
        ("POST", generic, {"data": form}),  # stored
        ("POST", generic, {"data": form}),  # the carrier's retry: acknowledged, stored once
        ("GET", generic, {"params": {**form, "id": f"{tag}-2"}}),  # GET carriers
        ("POST", "/carriers/generic/wrong-token/inbound", {"data": form}),  # 401
        ("POST", "/carriers/nosuch/tok/inbound", {"data": form}),  # 404
        ("POST", "/carriers/chtgateway/tok/inbound", {"data": form}),  # 404, with a hint
        ("GET", at, {"params": form}),  # 405: POST only
        ("POST", generic, {"data": {"to": "5000", "text": "no sender"}}),  # 400
        (
            "POST",
            generic,
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),  # 400
        ("POST", generic, {"content": b"x", "headers": {"content-type": "text/csv"}}),  # 415
        (
            "POST",
            generic,
            {
                "content": chunks(),
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
        ),  # 413
    ]


def _status_requests(tag: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx arguments): one of each answer the delivery-report route gives."""
    generic = f"/carriers/generic/{WEBHOOK_TOKENS['generic']}/status"
    report = {"id": f"{tag}-gw-1", "ref": f"{tag}-ref", "status": "delivered"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b"id=x&status="
        for _ in range(80):
            yield b"y" * 1024

    return [
        ("POST", generic, {"data": report}),  # names no SMS yet: kept for later, 200
        ("GET", generic, {"params": {**report, "id": f"{tag}-gw-2"}}),  # by GET too
        ("POST", generic, {"data": {**report, "status": "no-such-status"}}),  # unmapped: 200
        ("POST", "/carriers/generic/wrong-token/status", {"data": report}),  # 401
        ("POST", "/carriers/nosuch/tok/status", {"data": report}),  # 404
        ("POST", "/carriers/chtgateway/tok/status", {"data": report}),  # 404, with a hint
        ("POST", generic, {"data": {"status": "delivered"}}),  # 400: no id, no ref
        ("POST", generic, {"content": b"x", "headers": {"content-type": "text/csv"}}),  # 415
        (
            "POST",
            generic,
            {
                "content": chunks(),
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
        ),  # 413
    ]


async def _answers(
    app: Any, tag: str, requests: Callable[[str], list[tuple[str, str, dict[str, Any]]]] = _requests
) -> list[tuple[int, list[tuple[str, str]], Any]]:
    out = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        for method, path, kwargs in requests(tag):
            response = await client.request(method, path, **kwargs)
            body: Any = response.content
            with contextlib.suppress(ValueError):
                body = json.loads(body)
            out.append((response.status_code, sorted(response.headers.items()), body))
    return out


def _counts(bridge: RunningBridge) -> dict[tuple[str, ...], float]:
    """The HTTP requests counted on the inbound route, and the refused webhooks."""
    families = bridge.app.state.metrics.registry.collect()
    out: dict[tuple[str, ...], float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == "smsbridge_http_requests_total" and (
                sample.labels.get("route") in (INBOUND, STATUS, "unmatched")
            ):
                key = (sample.labels["route"], sample.labels["method"], sample.labels["status"])
                out[key] = sample.value
            elif sample.name == "smsbridge_webhooks_rejected_total":
                out[("rejected", sample.labels["carrier"], sample.labels["reason"])] = sample.value
    return out


def _grown(before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_the_lean_path_answers_stores_and_counts_as_the_router_does(
    bridge_factory: Callable[..., RunningBridge],
) -> None:
    bridge = bridge_factory(SMSBRIDGE_MAX_BODY_BYTES="65536")
    stack = _stack(bridge)
    before = _counts(bridge)
    lean = asyncio.run(_answers(_entry(bridge, stack), "lean"))
    lean_counts = _grown(before, _counts(bridge))
    before = _counts(bridge)
    full = asyncio.run(_answers(_entry(bridge, stack.full), "full"))
    full_counts = _grown(before, _counts(bridge))

    statuses = [status for status, _, _ in lean]
    assert statuses == [200, 200, 200, 401, 404, 404, 405, 400, 400, 415, 413]
    assert lean == full
    assert lean_counts == full_counts
    assert lean_counts[(INBOUND, "POST", "200")] == 2
    stored = {m["external_id"] for m in bridge.messages()}
    assert stored == {"lean-1", "lean-2", "full-1", "full-2"}  # each once


def test_the_lean_path_of_delivery_reports_answers_stores_and_counts_as_the_router_does(
    bridge_factory: Callable[..., RunningBridge],
) -> None:
    bridge = bridge_factory(SMSBRIDGE_MAX_BODY_BYTES="65536")
    stack = _stack(bridge)
    before = _counts(bridge)
    lean = asyncio.run(_answers(_entry(bridge, stack), "lean", _status_requests))
    lean_counts = _grown(before, _counts(bridge))
    before = _counts(bridge)
    full = asyncio.run(_answers(_entry(bridge, stack.full), "full", _status_requests))
    full_counts = _grown(before, _counts(bridge))

    statuses = [status for status, _, _ in lean]
    assert statuses == [200, 200, 200, 401, 404, 404, 400, 415, 413]
    assert lean[0][2] == {"ok": True, "received": 1}
    assert lean[2][2] == {"ok": True, "received": 0}
    assert lean == full
    assert lean_counts == full_counts
    assert lean_counts[(STATUS, "POST", "200")] == 2
    assert lean_counts[(STATUS, "GET", "200")] == 1
    kept = bridge.store.query("SELECT external_id FROM delivery_reports ORDER BY id")
    assert [r[0] for r in kept] == ["lean-gw-1", "lean-gw-2", "full-gw-1", "full-gw-2"]


def test_the_lean_path_takes_both_webhook_routes(bridge: RunningBridge) -> None:
    lean = {route.path for route, _app in _stack(bridge).lean}
    assert lean == {INBOUND, STATUS}


def test_other_methods_on_the_inbound_route_go_through_the_router(bridge: RunningBridge) -> None:
    path = bridge.inbound_path("generic")
    assert bridge.http.put(path, data=FORM).status_code == 405
    assert bridge.http.head(path, params=FORM).status_code == 200  # the route's, as before
    assert bridge.http.post(path, data=FORM).status_code == 200
    assert [m["external_id"] for m in bridge.messages()] == ["lean-1"]  # once
