"""The Starlette app: its routes, the one error handler, and the lifespan that opens the store,
builds the service (service.py) and starts its workers.

    create_app(settings, *, cht=None, clock=time.time, store=None) -> Starlette

Routes: the carriers' and phones' (routes.py), /healthz and /readyz (health.py), /metrics
(metrics.py), /openapi.json (openapi.py), the operator console under /console (console/, its
pages HTML). Every other error is JSON `{"error": "<code>", "detail": "<text>"}` (on /api/sms
the shape cht-gateway reads: bodylimit.py `error_json`) with the status of its errors.py class;
a body over SMSBRIDGE_MAX_BODY_BYTES is refused with 413 (bodylimit.py).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from smsbridge import __version__
from smsbridge.cht.appsettings import ChtSettingsCache
from smsbridge.cht.breaker import ChtApi
from smsbridge.cht.requirements import GATEWAY_SERVICE, outgoing_service_problem
from smsbridge.errors import RequestError, SmsBridgeError
from smsbridge.logs import event
from smsbridge.service import Service, build_service
from smsbridge.settings import Settings
from smsbridge.store import Store, open_store
from smsbridge.web.bodylimit import BodyLimit, error_json
from smsbridge.web.console import Console, console_routes
from smsbridge.web.health import (
    CheckResult,
    Probe,
    Readiness,
    channels_check,
    healthz,
    readyz,
)
from smsbridge.web.httpmetrics import HttpMetrics
from smsbridge.web.logins import PhoneLogins
from smsbridge.web.metrics import Metrics, metrics_endpoint
from smsbridge.web.openapi import openapi_endpoint, webhook_carriers
from smsbridge.web.routes import (
    LEAN_ROUTES,
    REFUSALS,
    UNKNOWN_CARRIER,
    LeanRoute,
    LeanWebhooks,
    refused_webhook,
)
from smsbridge.web.routes import ROUTES as CARRIER_ROUTES

log = logging.getLogger(__name__)

# -- errors -----------------------------------------------------------------------------------


async def handle_error(request: Request, exc: Exception) -> Response:
    metrics: Metrics = request.app.state.metrics
    if isinstance(exc, SmsBridgeError):
        status = exc.http_status
        if status >= 500:
            event(log, "request_failed", logging.ERROR, path=_safe_path(request), error=exc.code)
        refused_webhook(request.scope, status, exc.detail, metrics.webhook_rejected)
        return JSONResponse(
            error_json(request.scope, exc.code, exc.detail),
            status_code=status,
            headers=getattr(exc, "headers", None),  # e.g. Retry-After (web/logins.py)
        )
    if isinstance(exc, HTTPException):
        refused_webhook(request.scope, exc.status_code, str(exc.detail), metrics.webhook_rejected)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_json(request.scope, code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
    event(log, "request_crashed", logging.ERROR, path=_safe_path(request), error=type(exc).__name__)
    return JSONResponse(error_json(request.scope, "internal", "internal error"), status_code=500)


def _safe_path(request: Request) -> str:
    """The path with any webhook token masked (tokens are secrets)."""
    parts = request.url.path.split("/")
    if len(parts) > 3 and parts[1] == "carriers":
        parts[3] = "****"
    return "/".join(parts)


# -- the app -------------------------------------------------------------------------------------


class BridgeApp(Starlette):
    """Starlette, with a lean path for the carriers' webhooks, inbound SMS and delivery reports
    (routes.py `LeanRoute`, `LeanWebhooks`): a request to one of those routes goes through the
    app's middleware (the same list, `add_middleware`'s, built again around each: the body
    limit, the HTTP metrics) straight to its handler, without Starlette's exception layers and
    router. Every other request is Starlette's."""

    def build_middleware_stack(self) -> ASGIApp:
        lean: list[tuple[Route, ASGIApp]] = []
        for route, handler in LEAN_ROUTES:
            app: ASGIApp = LeanWebhooks(route, handler, self.state, handle_error)
            for cls, args, kwargs in reversed(self.user_middleware):
                app = cls(app, *args, **kwargs)
            lean.append((route, app))
        return LeanRoute(lean, super().build_middleware_stack())


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
            db = (
                store
                if store is not None
                else open_store(settings.database, commit_wait=settings.commit_wait)
            )
            if own_store:
                stack.callback(db.close)
            client: ChtApi
            if cht is None:
                from smsbridge.cht.client import ChtClient

                client = await stack.enter_async_context(ChtClient.from_settings(settings))
            else:
                client = cht
            metrics: Metrics = app.state.metrics
            metrics.attach_store(db)
            service = build_service(
                settings,
                db,
                metrics.wrap_cht(client),
                clock=clock,
                observer=metrics,
                concurrency=concurrency,
                idle=idle,
                rng=rng,
            )
            metrics.expect(service.enabled, service.outbound.routes.channels)
            metrics.watch_cht_gate(service.gate.paused_reason)
            routed = service.outbound.routes.channels
            metrics.watch_channels(lambda: service.outbound.channels.open_map(routed))
            app.state.readiness = readiness_of(service)
            app.state.service = service
            if console is not None:  # its CHT client for sign-ins
                await stack.enter_async_context(console.running())
            if start_workers:
                service.start()
            event(
                log,
                "started",
                version=__version__,
                carriers=",".join(sorted(service.enabled)) or "none",
                database=db.name,
            )
            try:
                yield
            finally:
                await service.stop()
                app.state.service = None

    console = Console(settings, clock=clock) if settings.console else None  # /console
    routes = [
        *CARRIER_ROUTES,  # carrier webhooks, delivery reports, cht-gateway phones
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *([] if settings.metrics_listen else [metrics_route(settings)]),  # else its own port
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        *(console_routes(console) if console is not None else []),
    ]
    app = BridgeApp(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            SmsBridgeError: handle_error,
            HTTPException: handle_error,
            Exception: handle_error,
        },
    )
    metrics = Metrics(clock=clock, phone_labels=settings.metrics_phone_labels)
    app.state.service = None
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.logins = PhoneLogins(
        attempts=settings.phone_login_attempts,
        lockout=settings.phone_login_lockout,
        clock=clock,
        on_refused=metrics.phone_login_refused,
    )
    app.state.openapi_carriers = webhook_carriers(settings.enabled_carriers)
    metrics.expect_rejections([*app.state.openapi_carriers, UNKNOWN_CARRIER], REFUSALS.values())

    def refused(scope: Scope, error: RequestError) -> None:
        refused_webhook(scope, error.http_status, error.detail, metrics.webhook_rejected)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, on_refuse=refused)
    app.add_middleware(HttpMetrics, metrics=app.state.metrics.http)  # outermost: counts 413s
    return app


def readiness_of(service: Service) -> Readiness:
    """What /readyz reads: the store, a CHT probe, forms status, the 401 pause."""
    return Readiness(
        store=service.store,
        cht_probe=lambda: service.gate.readiness_probe(service.cht, service.clock()),
        forms_status=service.cht_settings.status,
        cht_paused=service.gate.paused_reason,
        min_free_bytes=service.settings.min_free_disk_mb * 2**20,
        extra={
            "cht_outgoing": outgoing_service_check(service.cht_settings),
            "channels": channels_check(
                lambda: service.outbound.channels.report(
                    service.outbound.routes.channels, service.clock()
                )
            ),
        },
    )


def outgoing_service_check(cache: ChtSettingsCache) -> Probe:
    """/readyz's `cht_outgoing`: CHT's settings (as last read) hand outgoing SMS to /api/sms
    (smsbridge/cht/requirements.py); not judged before they have been read from CHT."""

    async def probe() -> CheckResult:
        if cache.fetched_at is None:
            return CheckResult(True, "CHT's settings not read yet")
        problem = outgoing_service_problem(cache.app_settings)
        return CheckResult(problem is None, problem or f"outgoing_service {GATEWAY_SERVICE}")

    return probe


# -- /metrics --------------------------------------------------------------------------------


def metrics_route(settings: Settings) -> Route:
    """GET /metrics, behind SMSBRIDGE_METRICS_TOKEN when one is set (`Authorization: Bearer
    <token>`; 401 otherwise)."""
    token = settings.metrics_token.reveal().encode()

    async def endpoint(request: Request) -> Response:
        if token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
                return JSONResponse(
                    error_json(request.scope, "unauthorized", "bearer token required"),
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return await metrics_endpoint(request)

    return Route("/metrics", endpoint, methods=["GET"])


def create_metrics_app(app: Starlette) -> Starlette:
    """/metrics alone, from `app`'s metrics, for the listener of SMSBRIDGE_METRICS_LISTEN
    (server.py); the token applies there too."""
    metrics_app = Starlette(routes=[metrics_route(app.state.settings)])
    metrics_app.state.metrics = app.state.metrics
    return metrics_app
