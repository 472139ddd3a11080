"""The bridge's HTTP routes for carriers and phones, and how a webhook reaches its carrier.

    POST /carriers/{carrier}/{token}/inbound   inbound SMS (GET too, for carriers that may
                                               use it): stored, with their tasks, before the 2xx
    POST /carriers/{carrier}/{token}/status    a carrier's delivery report: verified like the
                                               inbound webhook, stored (matched or kept for
                                               later) and committed before the 2xx
    GET|POST /api/sms                          cht-gateway phones (carriers/chtgateway.py)

HEAD on a carrier's URL is a URL check (`url_check`): carrier and token checked, 200, nothing
parsed or stored.

A webhook passes the secret token in its URL and the carrier's own signature check, then the
carrier turns it into values (`InboundSms`, `StatusUpdate`) and the service stores them.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from smsbridge.carriers import CARRIERS, chtgateway
from smsbridge.carriers.base import Carrier, CarrierConfig, WebhookReply, WebhookRequest
from smsbridge.carriers.webhook import inflate
from smsbridge.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    SmsBridgeError,
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
    return running_service(request.app.state)


def running_service(state: Any) -> Service:
    """The service on the app's `state`; Unavailable (503) before the lifespan has built it."""
    service: Service | None = getattr(state, "service", None)
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


def webhook_request(scope: Scope, body: bytes, now: float) -> WebhookRequest:
    """The request as a carrier module sees it (read straight from the ASGI scope: this is
    the hot path of every webhook)."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope["path"]
    host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
    url = f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
    return WebhookRequest.build(
        method=scope["method"],
        url=url,
        path=path,
        headers=headers,
        query_string=query,
        body=body,
        arrived_at=datetime.fromtimestamp(now, UTC),
    )


async def verified_webhook(
    service: Service,
    scope: Scope,
    body: Callable[[], Awaitable[bytes]],
    carrier: str,
    module: Carrier,
) -> tuple[WebhookRequest, CarrierConfig, float]:
    """A carrier's webhook after the URL token and the carrier's signature check: the request
    as the carrier module sees it (its body read by `body()` once the token is right), that
    carrier's config, and `now`. `carrier` is enabled (the route checked), so the service
    holds its config."""
    check_token(service.settings, carrier, scope["path_params"]["token"])
    now = service.clock()
    req = webhook_request(scope, await body(), now)
    config = service.configs[carrier]
    # for `refused_webhook`'s masked sender (what Starlette's `request.state` holds)
    scope.setdefault("state", {})["webhook"] = (module, req, config)
    module.verify(req, config)
    return req, config, now


async def inbound_webhook(
    service: Service, scope: Scope, body: Callable[[], Awaitable[bytes]]
) -> WebhookReply:
    """An inbound webhook (scope: its route matched, `path_params` set): checked, its SMS
    stored with their tasks and committed, and the answer its carrier expects. Raises the
    errors.py error that answers a refused one."""
    if scope["method"] == "HEAD":
        return url_check(service, scope, status=False)
    carrier = scope["path_params"]["carrier"]
    module = webhook_carrier(service, carrier, status=False)
    if scope["method"] == "GET" and carrier not in GET_INBOUND:
        raise MethodNotAllowed(f"{carrier} webhooks are POST")
    req, config, now = await verified_webhook(service, scope, body, carrier, module)
    messages = module.parse_inbound(req, config)
    await service.accept(messages, now)
    return module.inbound_reply(messages, config)


URL_CHECKED = WebhookReply(200, b"", "text/plain")


def url_check(service: Service, scope: Scope, *, status: bool) -> WebhookReply:
    """A HEAD on a webhook URL (inbound, or `status`: delivery reports). Starlette answers HEAD
    through the GET handler, but a HEAD is a URL check, never an SMS or a report: it has no
    body, and HEAD must change nothing. The carrier (404) and the token (401) are checked as
    for any webhook, then 200 with no body, nothing parsed or stored, for every carrier (a 405
    for a POST-only carrier, or the 400 a GET without the SMS's fields gets, would make a URL
    check take a good URL for a broken one)."""
    carrier = scope["path_params"]["carrier"]
    webhook_carrier(service, carrier, status=status)
    check_token(service.settings, carrier, scope["path_params"]["token"])
    return URL_CHECKED


async def carrier_inbound(request: Request) -> Response:
    reply = await inbound_webhook(current_service(request), request.scope, request.body)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)


async def status_webhook(
    service: Service, scope: Scope, body: Callable[[], Awaitable[bytes]]
) -> WebhookReply:
    """A carrier's delivery report (scope: its route matched, `path_params` set): checked, its
    reports stored (matched or kept for later) and committed, and the JSON answer. Raises the
    errors.py error that answers a refused one."""
    if scope["method"] == "HEAD":
        return url_check(service, scope, status=True)
    carrier = scope["path_params"]["carrier"]
    module = webhook_carrier(service, carrier, status=True)
    req, config, now = await verified_webhook(service, scope, body, carrier, module)
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
    return WebhookReply(200, _status_answer(len(updates)), "application/json")


@functools.lru_cache(maxsize=16)
def _status_answer(received: int) -> bytes:
    """The status webhook's JSON body, encoded as Starlette's JSONResponse encodes it."""
    return bytes(JSONResponse({"ok": True, "received": received}).body)


async def carrier_status(request: Request) -> Response:
    reply = await status_webhook(current_service(request), request.scope, request.body)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)


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
    """The medic-gateway protocol for phones (GET: the URL check; POST: the exchange). HEAD is
    GET without the body, as on CHT's own /api/sms: never an exchange."""
    service = current_service(request)
    if chtgateway.NAME not in service.enabled:
        raise NotFound("cht-gateway phones are not enabled (SMSBRIDGE_CARRIERS)")
    if request.method in ("GET", "HEAD"):
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


INBOUND = Route("/carriers/{carrier}/{token}/inbound", carrier_inbound, methods=["GET", "POST"])
STATUS = Route("/carriers/{carrier}/{token}/status", carrier_status, methods=["GET", "POST"])

ROUTES = [
    INBOUND,
    STATUS,
    Route("/api/sms", gateway_api, methods=["GET", "POST"]),
    Route("/api/sms/", gateway_api, methods=["GET", "POST"]),
]


# -- the lean path of the webhooks ---------------------------------------------------------------
# The two routes that take the carriers' whole traffic (inbound SMS, delivery reports) skip
# Starlette's exception layers, its router and its Request and Response objects (web/app.py
# `BridgeApp`). What they answer, log and count is what the routes above answer, log and count:
# the same `inbound_webhook` and `status_webhook`, the app's error handler, the same middleware
# in front of them.

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]
WebhookHandler = Callable[[Service, Scope, Callable[[], Awaitable[bytes]]], Awaitable[WebhookReply]]
LEAN_METHODS = frozenset({"GET", "POST"})  # HEAD and the rest: through the router

# The lean routes and their handlers (web/app.py builds one `LeanWebhooks` for each).
LEAN_ROUTES: tuple[tuple[Route, WebhookHandler], ...] = (
    (INBOUND, inbound_webhook),
    (STATUS, status_webhook),
)


class LeanRoute:
    """ASGI: a request one of `lean`'s routes takes (path and method) goes to that route's app,
    with the route's path parameters in its scope as the router would put them; any other to
    `full`."""

    def __init__(self, lean: list[tuple[Route, ASGIApp]], full: ASGIApp) -> None:
        self.lean = lean
        self.full = full

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in LEAN_METHODS:
            for route, app in self.lean:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await app(scope, receive, send)
                    return
        await self.full(scope, receive, send)


class LeanWebhooks:
    """ASGI: a webhook route's handler (`inbound_webhook`, `status_webhook`) without
    Starlette's layers around it. `state` is the app's (`state.service`); `on_error(request,
    exc)` is the app's error handler, answering what the handler raised as the router's path
    would: an error of errors.py or Starlette's HTTPException is answered; anything else is
    answered 500 and raised again for the server to log (as Starlette's ServerErrorMiddleware
    does)."""

    def __init__(
        self, route: Route, handler: WebhookHandler, state: Any, on_error: ErrorHandler
    ) -> None:
        self.route = route
        self.handler = handler
        self.state = state
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route  # as the router notes it (the HTTP metrics' `route` label)

        async def body() -> bytes:
            return await read_body(receive)

        try:
            reply = await self.handler(running_service(self.state), scope, body)
        except Exception as exc:
            response = await self.on_error(Request(scope, receive), exc)
            await response(scope, receive, send)
            if not isinstance(exc, SmsBridgeError | HTTPException):
                raise
            return
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": _headers(reply)}
        )
        await send({"type": "http.response.body", "body": reply.body})


async def read_body(receive: Receive) -> bytes:
    """The request body, all of it (Starlette's `Request.body` without the stream around it);
    ClientDisconnect when the client goes first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                return b"".join([*chunks, chunk]) if chunks else chunk
            chunks.append(chunk)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


@functools.lru_cache(maxsize=64)
def _raw_headers(status: int, media_type: str, length: int) -> list[tuple[bytes, bytes]]:
    """The headers Starlette's Response gives a body of `length` bytes of `media_type`."""
    return Response(b"\0" * length, status_code=status, media_type=media_type).raw_headers


def _headers(reply: WebhookReply) -> list[tuple[bytes, bytes]]:
    return list(_raw_headers(reply.status, reply.media_type, len(reply.body)))
