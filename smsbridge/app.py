"""The Starlette app: webhook routes, one error handler, and the lifespan that opens the store
and starts the workers.

    create_app(settings, *, cht=None, clock=time.time, store=None) -> Starlette

Routes (inbound):
    POST /carriers/{carrier}/{token}/inbound      (GET too, for carriers that may use it)

Every error is JSON `{"error": "<code>", "detail": "<text>"}` with the status of its
errors.py class; a body over SMSBRIDGE_MAX_BODY_BYTES is refused with 413 before it is read.

Other parts add their routes to `routes` in `create_app` and their background work to
`Runtime.start`/`Runtime.stop` with small edits.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsbridge import outgoing
from smsbridge.carriers import CARRIERS
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.chtsettings import ChtSettingsCache
from smsbridge.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    SmsBridgeError,
    Unauthorized,
)
from smsbridge.health import Readiness, healthz, readyz
from smsbridge.logs import event
from smsbridge.metrics import Metrics, metrics_endpoint
from smsbridge.openapi import openapi_endpoint, webhook_carriers
from smsbridge.outbound import OutboundPipeline
from smsbridge.outbound_http import ROUTES as OUTBOUND_ROUTES
from smsbridge.outbox import Outbox, RetryPolicy
from smsbridge.pipeline import ChtApi, ChtGate, InboundPipeline, accept_inbound
from smsbridge.settings import Settings
from smsbridge.store import Store
from smsbridge.sync import OutboundWorkers, build_outbound
from smsbridge.workers import InboundWorkers

log = logging.getLogger("smsbridge.app")

# Carriers whose inbound webhook may arrive by GET (query string) as well as POST.
GET_INBOUND = frozenset({"vonage", "generic"})


@dataclass
class Runtime:
    """Everything the running service holds: built in the lifespan, kept on `app.state`."""

    settings: Settings
    store: Store
    outbox: Outbox
    cht: ChtApi
    cht_settings: ChtSettingsCache
    pipeline: InboundPipeline
    workers: InboundWorkers
    clock: Callable[[], float]
    enabled: frozenset[str]
    configs: dict[str, CarrierConfig] = field(default_factory=dict)
    outbound_workers: OutboundWorkers | None = None  # send workers + CHT sync (sync.py)

    @property
    def outbound(self) -> OutboundPipeline | None:
        return None if self.outbound_workers is None else self.outbound_workers.pipeline

    def start(self) -> None:
        self.workers.start()
        if self.outbound_workers is not None:
            self.outbound_workers.start()

    async def stop(self) -> None:
        await self.workers.stop()
        if self.outbound_workers is not None:
            await self.outbound_workers.stop()


def enabled_carriers(settings: Settings) -> frozenset[str]:
    """SMSBRIDGE_CARRIERS, or when empty every carrier that has a webhook token set."""
    if settings.carriers:
        return frozenset(settings.carriers)
    return frozenset(name for name in CARRIERS if settings.carrier_setting(name, "webhook_token"))


def carrier_config(settings: Settings, carrier: str) -> CarrierConfig:
    return CarrierConfig(
        carrier=carrier,
        values=dict(settings.carrier.get(carrier, {})),
        public_url=settings.public_url,
    )


# -- routes --------------------------------------------------------------------------------------


def _runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise SmsBridgeError("service is starting", code="unavailable")
    return runtime


def check_token(settings: Settings, carrier: str, token: str) -> None:
    expected = settings.carrier_setting(carrier, "webhook_token")
    if not expected:
        raise Unauthorized(f"no SMSBRIDGE_{carrier.upper()}_WEBHOOK_TOKEN configured")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("wrong webhook token")


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


async def carrier_inbound(request: Request) -> Response:
    runtime = _runtime(request)
    carrier = request.path_params["carrier"]
    module = CARRIERS.get(carrier)
    if module is None or carrier not in runtime.enabled:
        raise NotFound(f"unknown carrier {carrier!r}")
    if request.method == "GET" and carrier not in GET_INBOUND:
        raise SmsBridgeError(f"{carrier} webhooks are POST", code="method_not_allowed")
    check_token(runtime.settings, carrier, request.path_params["token"])
    now = runtime.clock()
    req = await webhook_request(request, now)
    config = runtime.configs.get(carrier) or carrier_config(runtime.settings, carrier)
    module.verify(req, config)
    messages = module.parse_inbound(req, config)
    accepted = await accept_inbound(runtime.store, messages, now, runtime.settings.dedup_window)
    runtime.workers.wakeup.set()
    new = sum(1 for a in accepted if not a.duplicate)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and new:
        metrics.inbound(carrier, new)
    if log.isEnabledFor(logging.DEBUG):
        for a in accepted:
            event(
                log,
                "inbound_accepted",
                logging.DEBUG,
                carrier=carrier,
                message=a.uuid,
                duplicate=a.duplicate,
            )
    reply = module.inbound_reply(messages, config)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)


# -- errors and limits ---------------------------------------------------------------------------


def _status_of(exc: SmsBridgeError) -> int:
    if exc.code == "method_not_allowed":
        return 405
    if exc.code == "unavailable":
        return 503
    return exc.http_status


async def handle_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SmsBridgeError):
        status = _status_of(exc)
        if status >= 500:
            event(log, "request_failed", logging.ERROR, path=_safe_path(request), error=exc.code)
        return JSONResponse(exc.to_json(), status_code=status)
    if isinstance(exc, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
    event(log, "request_crashed", logging.ERROR, path=_safe_path(request), error=type(exc).__name__)
    return JSONResponse({"error": "internal", "detail": "internal error"}, status_code=500)


def _safe_path(request: Request) -> str:
    """The path with any webhook token masked (tokens are secrets)."""
    parts = request.url.path.split("/")
    if len(parts) > 3 and parts[1] == "carriers":
        parts[3] = "****"
    return "/".join(parts)


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, by Content-Length before reading and
    by counting while reading (chunked bodies)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0:
                    await _send_json(send, 400, BadRequest("bad Content-Length").to_json())
                    return
                if length > self.max_bytes:
                    await _send_json(send, 413, _too_large(self.max_bytes).to_json())
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body over {limit} bytes")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# -- the app -------------------------------------------------------------------------------------


def create_app(
    settings: Settings,
    *,
    cht: ChtApi | None = None,
    clock: Callable[[], float] = time.time,
    store: Store | None = None,
    concurrency: int = 4,
    idle: float = 0.2,
    rng: random.Random | None = None,
    start_workers: bool = True,
) -> Starlette:
    """The bridge as an ASGI app. `cht` defaults to a ChtClient built from `settings`; `store`
    to the SQLite file SMSBRIDGE_DATABASE (opened in the lifespan, closed after).
    `start_workers=False` serves webhooks only (tests of the accept path, benchmarks)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            own_store = store is None
            db = store if store is not None else Store(settings.database)
            if own_store:
                stack.callback(db.close)
            client: ChtApi
            if cht is None:
                from smsbridge.cht import ChtClient

                client = await stack.enter_async_context(ChtClient.from_settings(settings))
            else:
                client = cht
            client = app.state.metrics.wrap_cht(client)
            runtime = build_runtime(settings, db, client, clock, concurrency, idle, rng)
            app.state.runtime = runtime
            _wire_readiness(app, runtime)
            app.state.metrics.attach_store(db)
            runtime.outbox.on_retry = app.state.metrics.retry
            if runtime.outbound is not None:
                runtime.outbound.on_send = app.state.metrics.send_latency
                runtime.outbound.on_reports = app.state.metrics.delivery_reports
            if start_workers:
                runtime.start()
            event(
                log,
                "started",
                carriers=",".join(sorted(runtime.enabled)) or "none",
                database=str(db.path),
            )
            try:
                yield
            finally:
                await runtime.stop()
                app.state.runtime = None

    routes = [
        Route("/carriers/{carrier}/{token}/inbound", carrier_inbound, methods=["GET", "POST"]),
        *OUTBOUND_ROUTES,  # delivery reports, cht-gateway phones (outbound_http.py)
        # OUTBOUND / OPS: add routes here.
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            SmsBridgeError: handle_error,
            HTTPException: handle_error,
            Exception: handle_error,
        },
    )
    app.state.runtime = None
    app.state.metrics = Metrics(clock=clock)
    app.state.openapi_carriers = webhook_carriers(enabled_carriers(settings))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def build_runtime(
    settings: Settings,
    store: Store,
    cht: ChtApi,
    clock: Callable[[], float],
    concurrency: int = 4,
    idle: float = 0.2,
    rng: random.Random | None = None,
) -> Runtime:
    outbox = Outbox(
        store,
        RetryPolicy(settings.retry_base, settings.retry_cap, settings.max_attempts),
        rng=rng,
    )
    cht_settings = ChtSettingsCache(store, settings)
    gate = ChtGate()
    outbound_workers = build_outbound(
        settings,
        store,
        outbox,
        cht,
        clock=clock,
        gate=gate,
        wake_inbound=lambda: workers.wakeup.set(),
        concurrency=concurrency,
        idle=idle,
    )
    pipeline = InboundPipeline(
        store,
        outbox,
        cht,
        settings,
        cht_settings,
        gate=gate,
        reply_hook=outgoing.queue_reply_in,
        outgoing_hook=outbound_workers.store_offered,
    )
    workers = InboundWorkers(
        pipeline, cht_settings, clock=clock, concurrency=concurrency, idle=idle
    )
    enabled = enabled_carriers(settings)
    return Runtime(
        settings=settings,
        store=store,
        outbox=outbox,
        cht=cht,
        cht_settings=cht_settings,
        pipeline=pipeline,
        workers=workers,
        clock=clock,
        enabled=enabled,
        configs={name: carrier_config(settings, name) for name in enabled if name in CARRIERS},
        outbound_workers=outbound_workers,
    )


def _wire_readiness(app: Starlette, runtime: Runtime) -> None:
    """Give /readyz what it reads: the store, a CHT probe, forms status, the 401 pause."""
    app.state.readiness = Readiness(
        store=runtime.store,
        cht_probe=runtime.cht.check_auth,
        forms_status=runtime.cht_settings.status,
        cht_paused=runtime.pipeline.gate.paused_reason,
    )
