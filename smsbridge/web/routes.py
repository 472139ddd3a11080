"""The bridge's HTTP routes for carriers and phones, and how a webhook reaches its carrier.

    POST /carriers/{carrier}/{token}/inbound   inbound SMS (GET too, for carriers that may
                                               use it): stored, with their tasks, before the 2xx
    POST /carriers/{carrier}/{token}/status    a carrier's delivery report: verified like the
                                               inbound webhook, stored (matched or kept for
                                               later) and committed before the 2xx
    GET|POST /api/sms                          cht-gateway phones (carriers/chtgateway.py)

A webhook passes the secret token in its URL and the carrier's own signature check, then the
carrier turns it into values (`InboundSms`, `StatusUpdate`) and the service stores them.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from smsbridge.carriers import CARRIERS, chtgateway
from smsbridge.carriers.base import Carrier, CarrierConfig, WebhookRequest
from smsbridge.carriers.webhook import inflate
from smsbridge.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    Unavailable,
)
from smsbridge.logs import event
from smsbridge.service import Service
from smsbridge.settings import Settings

log = logging.getLogger(__name__)

# Carriers whose inbound webhook may arrive by GET (query string) as well as POST.
GET_INBOUND = frozenset(name for name, c in CARRIERS.items() if "GET" in c.inbound_methods)


def current_service(request: Request) -> Service:
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:
        raise Unavailable("service is starting")
    return service


# Carriers that take no webhooks, and where their traffic goes instead.
NO_WEBHOOKS = {chtgateway.NAME: "cht-gateway phones use /api/sms, not carrier webhooks"}


def webhook_carrier(service: Service, carrier: str, *, status: bool) -> Carrier:
    """`carrier` when it is enabled and takes this webhook (`status`: delivery reports, else
    inbound SMS); NotFound otherwise, before the token is looked at: a carrier without
    webhooks is not a webhook carrier."""
    module = CARRIERS.get(carrier)
    takes = module is not None and (module.takes_status if status else bool(module.inbound_methods))
    if module is None or not takes:
        hint = NO_WEBHOOKS.get(carrier)
        raise NotFound(f"unknown carrier {carrier!r}" + (f": {hint}" if hint else ""))
    if carrier not in service.enabled:
        raise NotFound(f"unknown carrier {carrier!r}")
    return module


def check_token(settings: Settings, carrier: str, token: str) -> None:
    expected = settings.carrier_setting(carrier, "webhook_token")
    if not expected:
        raise Unauthorized(f"no SMSBRIDGE_{carrier.upper()}_WEBHOOK_TOKEN configured")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("wrong webhook token")


# A refused webhook's reason, by HTTP status: the `reason` label of
# smsbridge_webhooks_rejected_total and of the `webhook_rejected` log line.
REFUSALS = {
    400: "malformed",
    401: "unauthorized",
    403: "bad_signature",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
UNKNOWN_CARRIER = "unknown"  # the carrier label when the path names no carrier we know


def refused_webhook(
    scope: Scope, status: int, detail: str, count: Callable[[str, str], None]
) -> None:
    """A request under /carriers/ refused with `status`: one WARNING line (reason, carrier,
    the sender masked when the body was read, the error's detail; never the text or the token)
    and `count(carrier, reason)`. Other paths and statuses pass unseen. Called by the app's
    error handler and by the body limit (web/app.py, web/bodylimit.py)."""
    parts = str(scope.get("path", "")).split("/")
    reason = REFUSALS.get(status)
    if reason is None or len(parts) < 3 or parts[0] or parts[1] != "carriers":
        return
    carrier = parts[2] if parts[2] in CARRIERS else UNKNOWN_CARRIER
    event(
        log,
        "webhook_rejected",
        logging.WARNING,
        carrier=carrier,
        reason=reason,
        status=status,
        sender=_refused_sender(scope),
        detail=detail,
    )
    count(carrier, reason)


def _refused_sender(scope: Scope) -> str | None:
    """The sender of a refused inbound webhook whose body was read (`verified_webhook`), for
    the log line only (`event` masks it); None when unknown."""
    webhook = (scope.get("state") or {}).get("webhook")
    if webhook is None or not str(scope.get("path", "")).endswith("/inbound"):
        return None
    module, req, config = webhook
    try:
        messages = module.parse_inbound(req, config)
    except Exception:  # a body that does not parse names no sender
        return None
    return messages[0].sender if messages else None


async def webhook_request(request: Request, now: float) -> WebhookRequest:
    """The request as a carrier module sees it (read straight from the ASGI scope: this is
    the hot path of every webhook)."""
    body = await request.body()
    scope = request.scope
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope["path"]
    host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
    url = f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
    return WebhookRequest.build(
        method=request.method,
        url=url,
        path=path,
        headers=headers,
        query_string=query,
        body=body,
        arrived_at=datetime.fromtimestamp(now, UTC),
    )


async def verified_webhook(
    service: Service, request: Request, carrier: str, module: Carrier
) -> tuple[WebhookRequest, CarrierConfig, float]:
    """A carrier's webhook after the URL token and the carrier's signature check: the request
    as the carrier module sees it, that carrier's config, and `now`. `carrier` is enabled (the
    route checked), so the service holds its config."""
    check_token(service.settings, carrier, request.path_params["token"])
    now = service.clock()
    req = await webhook_request(request, now)
    config = service.configs[carrier]
    request.state.webhook = (module, req, config)  # for `refused_webhook`'s masked sender
    module.verify(req, config)
    return req, config, now


async def carrier_inbound(request: Request) -> Response:
    service = current_service(request)
    carrier = request.path_params["carrier"]
    module = webhook_carrier(service, carrier, status=False)
    if request.method == "GET" and carrier not in GET_INBOUND:
        raise MethodNotAllowed(f"{carrier} webhooks are POST")
    req, config, now = await verified_webhook(service, request, carrier, module)
    messages = module.parse_inbound(req, config)
    await service.accept(messages, now)
    reply = module.inbound_reply(messages, config)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)


async def carrier_status(request: Request) -> Response:
    service = current_service(request)
    carrier = request.path_params["carrier"]
    module = webhook_carrier(service, carrier, status=True)
    req, config, now = await verified_webhook(service, request, carrier, module)
    updates = module.parse_status(req, config)
    matched = await service.outbound.delivery_reports(updates, now, carrier=carrier)
    event(
        log,
        "delivery_report",
        logging.DEBUG,
        carrier=carrier,
        reports=len(updates),
        matched=matched,
    )
    return JSONResponse({"ok": True, "received": len(updates)})


def _phone(request: Request, service: Service) -> str:
    """The phone's user name; a refused login is logged (a phone with a wrong password never
    gets its SMS: the operator must hear of it), the password never."""
    known = chtgateway.accounts(service.settings.carrier.get(chtgateway.NAME, {}))
    client = request.client.host if request.client else None
    guard = request.app.state.logins.guard(client, known)  # web/logins.py: failed-login limit
    try:
        return chtgateway.authenticate(request.headers, known, guard)
    except Unauthorized as exc:
        event(log, "phone_auth_failed", logging.WARNING, client=client, reason=exc.detail)
        raise


async def gateway_api(request: Request) -> Response:
    """The medic-gateway protocol for phones (GET: the URL check; POST: the exchange)."""
    service = current_service(request)
    if chtgateway.NAME not in service.enabled:
        raise NotFound("cht-gateway phones are not enabled (SMSBRIDGE_CARRIERS)")
    if request.method == "GET":
        _phone(request, service)
        return JSONResponse({"medic-gateway": True})
    # like CHT: the Content-Type is checked before authentication
    content_type = request.headers.get("content-type", "")
    if content_type.strip().lower() != "application/json":
        raise BadRequest("Content-Type must be application/json")
    user = _phone(request, service)
    now = service.clock()
    # cht-gateway may gzip its body; inflated under the same cap as any body
    body = inflate(
        await request.body(),
        request.headers.get("content-encoding", ""),
        service.settings.max_body_bytes,
    )
    exchange = chtgateway.parse_exchange(content_type, body, user, datetime.fromtimestamp(now, UTC))
    if exchange.refused:
        event(
            log,
            "phone_messages_refused",
            logging.WARNING,
            phone=user,
            refused=len(exchange.refused),
            reason=exchange.refused[0],
        )
    messages = await service.outbound.phone_exchange(user, exchange, now)
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
    Route("/carriers/{carrier}/{token}/inbound", carrier_inbound, methods=["GET", "POST"]),
    Route("/carriers/{carrier}/{token}/status", carrier_status, methods=["GET", "POST"]),
    Route("/api/sms", gateway_api, methods=["GET", "POST"]),
    Route("/api/sms/", gateway_api, methods=["GET", "POST"]),
]
