"""The bridge's outbound HTTP endpoints (added to the app's routes):

POST|GET /carriers/{carrier}/{token}/status   a carrier's delivery report: verified like the
                                              inbound webhook, stored (matched or kept for
                                              later) and committed before the 2xx
GET|POST /api/sms                             cht-gateway phones (carriers/chtgateway.py)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smsbridge.carriers import chtgateway
from smsbridge.errors import BadRequest, NotFound, Unauthorized, Unavailable
from smsbridge.logs import event
from smsbridge.outbound.send import OutboundPipeline
from smsbridge.service import Runtime
from smsbridge.web.webhooks import current_runtime, verified_webhook, webhook_carrier

log = logging.getLogger(__name__)


def _outbound(request: Request) -> tuple[Runtime, OutboundPipeline]:
    """The running service and its outbound pipeline (503 until both are up)."""
    runtime = current_runtime(request)
    if runtime.outbound is None:
        raise Unavailable("service is starting")
    return runtime, runtime.outbound


async def carrier_status(request: Request) -> Response:
    runtime, outbound = _outbound(request)
    carrier = request.path_params["carrier"]
    module = webhook_carrier(runtime, carrier, "parse_status")
    req, config, now = await verified_webhook(runtime, request, carrier, module)
    updates = module.parse_status(req, config)
    matched = await outbound.delivery_reports(updates, now)
    event(
        log,
        "delivery_report",
        logging.DEBUG,
        carrier=carrier,
        reports=len(updates),
        matched=matched,
    )
    return JSONResponse({"ok": True, "received": len(updates)})


def _phone(request: Request, runtime: Runtime) -> str:
    """The phone's user name; a refused login is logged (a phone with a wrong password never
    gets its SMS: the operator must hear of it), the password never."""
    known = chtgateway.accounts(runtime.settings.carrier.get(chtgateway.NAME, {}))
    try:
        return chtgateway.authenticate(request.headers, known)
    except Unauthorized as exc:
        client = request.client.host if request.client else None
        event(log, "phone_auth_failed", logging.WARNING, client=client, reason=exc.detail)
        raise


async def gateway_api(request: Request) -> Response:
    """The medic-gateway protocol for phones (GET: the URL check; POST: the exchange)."""
    runtime, outbound = _outbound(request)
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
    messages = await outbound.phone_exchange(user, exchange, now)
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
