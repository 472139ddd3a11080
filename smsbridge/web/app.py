"""The Starlette app: its routes, the one error handler, and the lifespan that opens the store,
builds the service (service.py) and starts its workers.

    create_app(settings, *, cht=None, clock=time.time, store=None) -> Starlette

Routes: the carriers' and phones' (routes.py), /healthz and /readyz (health.py), /metrics
(metrics.py), /openapi.json (openapi.py). Every error is JSON `{"error": "<code>", "detail":
"<text>"}` with the status of its errors.py class; a body over SMSBRIDGE_MAX_BODY_BYTES is
refused with 413 (bodylimit.py).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smsbridge import __version__
from smsbridge.cht.breaker import ChtApi
from smsbridge.errors import SmsBridgeError
from smsbridge.logs import event
from smsbridge.service import Service, build_service
from smsbridge.settings import Settings
from smsbridge.store import Store
from smsbridge.web.bodylimit import BodyLimit
from smsbridge.web.health import Readiness, healthz, readyz
from smsbridge.web.metrics import Metrics, metrics_endpoint
from smsbridge.web.openapi import openapi_endpoint, webhook_carriers
from smsbridge.web.routes import ROUTES as CARRIER_ROUTES

log = logging.getLogger(__name__)

# -- errors -----------------------------------------------------------------------------------


async def handle_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SmsBridgeError):
        status = exc.http_status
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
            app.state.readiness = readiness_of(service)
            app.state.service = service
            if start_workers:
                service.start()
            event(
                log,
                "started",
                version=__version__,
                carriers=",".join(sorted(service.enabled)) or "none",
                database=str(db.path),
            )
            try:
                yield
            finally:
                await service.stop()
                app.state.service = None

    routes = [
        *CARRIER_ROUTES,  # carrier webhooks, delivery reports, cht-gateway phones
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
    app.state.service = None
    app.state.metrics = Metrics(clock=clock)
    app.state.openapi_carriers = webhook_carriers(settings.enabled_carriers)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def readiness_of(service: Service) -> Readiness:
    """What /readyz reads: the store, a CHT probe, forms status, the 401 pause."""
    return Readiness(
        store=service.store,
        cht_probe=service.cht.check_auth,
        forms_status=service.cht_settings.status,
        cht_paused=service.gate.paused_reason,
    )
