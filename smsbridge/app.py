"""The Starlette app: its routes, the one error handler, and the lifespan that opens the store
and starts the service's workers (built by runtime.py).

    create_app(settings, *, cht=None, clock=time.time, store=None) -> Starlette

Routes (inbound; outbound_http.py adds the delivery reports and cht-gateway phones):
    POST /carriers/{carrier}/{token}/inbound      (GET too, for carriers that may use it)

Every error is JSON `{"error": "<code>", "detail": "<text>"}` with the status of its
errors.py class; a body over SMSBRIDGE_MAX_BODY_BYTES is refused with 413 (bodylimit.py).

Other parts add their routes to `routes` in `create_app` and their background work to
`Runtime.start`/`Runtime.stop` (runtime.py) with small edits.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from types import ModuleType

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smsbridge.bodylimit import BodyLimit
from smsbridge.carriers import CARRIERS
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.chtgate import ChtApi
from smsbridge.errors import NotFound, SmsBridgeError, Unauthorized
from smsbridge.health import Readiness, healthz, readyz
from smsbridge.logs import event
from smsbridge.metrics import Metrics, metrics_endpoint
from smsbridge.openapi import openapi_endpoint, webhook_carriers
from smsbridge.outbound_http import ROUTES as OUTBOUND_ROUTES
from smsbridge.pipeline import accept_inbound
from smsbridge.runtime import Runtime, build_runtime, carrier_config, enabled_carriers
from smsbridge.settings import Settings
from smsbridge.store import Store

log = logging.getLogger("smsbridge.app")

# Carriers whose inbound webhook may arrive by GET (query string) as well as POST.
GET_INBOUND = frozenset({"vonage", "generic"})


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


async def verified_webhook(
    runtime: Runtime, request: Request, carrier: str, module: ModuleType
) -> tuple[WebhookRequest, CarrierConfig, float]:
    """A carrier's webhook after the URL token and the carrier's signature check: the request
    as the carrier module sees it, that carrier's config, and `now`."""
    check_token(runtime.settings, carrier, request.path_params["token"])
    now = runtime.clock()
    req = await webhook_request(request, now)
    config = runtime.configs.get(carrier) or carrier_config(runtime.settings, carrier)
    module.verify(req, config)
    return req, config, now


async def carrier_inbound(request: Request) -> Response:
    runtime = _runtime(request)
    carrier = request.path_params["carrier"]
    module = CARRIERS.get(carrier)
    if module is None or carrier not in runtime.enabled:
        raise NotFound(f"unknown carrier {carrier!r}")
    if request.method == "GET" and carrier not in GET_INBOUND:
        raise SmsBridgeError(f"{carrier} webhooks are POST", code="method_not_allowed")
    req, config, now = await verified_webhook(runtime, request, carrier, module)
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


# -- errors -----------------------------------------------------------------------------------


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


def _wire_readiness(app: Starlette, runtime: Runtime) -> None:
    """Give /readyz what it reads: the store, a CHT probe, forms status, the 401 pause."""
    app.state.readiness = Readiness(
        store=runtime.store,
        cht_probe=runtime.cht.check_auth,
        forms_status=runtime.cht_settings.status,
        cht_paused=runtime.pipeline.gate.paused_reason,
    )
