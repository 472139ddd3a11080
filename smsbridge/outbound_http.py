"""The bridge's outbound HTTP endpoints (added to the app's routes):

POST|GET /carriers/{carrier}/{token}/status   a carrier's delivery report: verified like the
                                              inbound webhook, stored (matched or kept for
                                              later) and committed before the 2xx
GET|POST /api/sms                             cht-gateway phones (carriers/chtgateway.py)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smsbridge.carriers import CARRIERS, chtgateway
from smsbridge.errors import BadRequest, NotFound, SmsBridgeError
from smsbridge.logs import event

log = logging.getLogger("smsbridge.outbound")


def _runtime(request: Request) -> Any:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None or getattr(runtime, "outbound", None) is None:
        raise SmsBridgeError("service is starting", code="unavailable")
    return runtime


async def carrier_status(request: Request) -> Response:
    from smsbridge.app import check_token, webhook_request
    from smsbridge.runtime import carrier_config

    runtime = _runtime(request)
    carrier = request.path_params["carrier"]
    module = CARRIERS.get(carrier)
    if module is None or carrier not in runtime.enabled or not hasattr(module, "parse_status"):
        raise NotFound(f"unknown carrier {carrier!r}")
    check_token(runtime.settings, carrier, request.path_params["token"])
    now = runtime.clock()
    req = await webhook_request(request, now)
    config = runtime.configs.get(carrier) or carrier_config(runtime.settings, carrier)
    module.verify(req, config)
    updates = module.parse_status(req, config)
    matched = await runtime.outbound.delivery_reports(updates, now)
    event(
        log,
        "delivery_report",
        logging.DEBUG,
        carrier=carrier,
        reports=len(updates),
        matched=matched,
    )
    return JSONResponse({"ok": True, "received": len(updates)})


def _phone(request: Request, runtime: Any) -> str:
    known = chtgateway.accounts(runtime.settings.carrier.get(chtgateway.NAME, {}))
    return chtgateway.authenticate(request.headers, known)


async def gateway_api(request: Request) -> Response:
    """The medic-gateway protocol for phones (GET: the URL check; POST: the exchange)."""
    runtime = _runtime(request)
    if chtgateway.NAME not in runtime.enabled:
        raise NotFound("cht-gateway phones are not enabled (SMSBRIDGE_CARRIERS)")
    if request.method == "GET":
        _phone(request, runtime)
        return JSONResponse({"medic-gateway": True})
    # like CHT: the Content-Type is checked before authentication
    content_type = request.headers.get("content-type", "")
    if content_type.strip().lower() != "application/json":
        raise BadRequest("Content-Type must be application/json")
    user = _phone(request, runtime)
    now = runtime.clock()
    exchange = chtgateway.parse_exchange(
        content_type, await request.body(), user, datetime.fromtimestamp(now, UTC)
    )
    messages = await runtime.outbound.phone_exchange(user, exchange, now)
    event(
        log,
        "phone_poll",
        logging.DEBUG,
        phone=user,
        received=len(exchange.messages),
        updates=len(exchange.updates),
        handed=len(messages),
    )
    return JSONResponse(chtgateway.reply(messages))


ROUTES = [
    Route("/carriers/{carrier}/{token}/status", carrier_status, methods=["GET", "POST"]),
    Route("/api/sms", gateway_api, methods=["GET", "POST"]),
    Route("/api/sms/", gateway_api, methods=["GET", "POST"]),
]
