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
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smsbridge.carriers import CARRIERS
from smsbridge.cht.breaker import ChtApi
from smsbridge.errors import MethodNotAllowed, SmsBridgeError
from smsbridge.inbound.submit import accept_inbound
from smsbridge.logs import event
from smsbridge.service import Runtime, build_runtime
from smsbridge.settings import Settings
from smsbridge.store import Store
from smsbridge.web.bodylimit import BodyLimit
from smsbridge.web.health import Readiness, healthz, readyz
from smsbridge.web.metrics import Metrics, metrics_endpoint
from smsbridge.web.openapi import openapi_endpoint, webhook_carriers
from smsbridge.web.outbound_http import ROUTES as OUTBOUND_ROUTES
from smsbridge.web.webhooks import current_runtime, verified_webhook, webhook_carrier

log = logging.getLogger(__name__)

# Carriers whose inbound webhook may arrive by GET (query string) as well as POST.
GET_INBOUND = frozenset(
    name for name, module in CARRIERS.items() if "GET" in getattr(module, "INBOUND_METHODS", ())
)


# -- routes --------------------------------------------------------------------------------------


async def carrier_inbound(request: Request) -> Response:
    runtime = current_runtime(request)
    carrier = request.path_params["carrier"]
    module = webhook_carrier(runtime, carrier, "parse_inbound")
    if request.method == "GET" and carrier not in GET_INBOUND:
        raise MethodNotAllowed(f"{carrier} webhooks are POST")
    req, config, now = await verified_webhook(runtime, request, carrier, module)
    messages = module.parse_inbound(req, config)
    accepted = await accept_inbound(runtime.store, messages, now, runtime.settings.dedup_window)
    runtime.workers.wakeup.set()
    new = sum(1 for a in accepted if not a.duplicate)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and new:
        metrics.inbound(carrier, new)
    reply = module.inbound_reply(messages, config)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)


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
            client = app.state.metrics.wrap_cht(client)
            runtime = build_runtime(settings, db, client, clock, concurrency, idle, rng)
            app.state.runtime = runtime
            _wire_readiness(app, runtime)
            app.state.metrics.attach_store(db)
            runtime.outbox.on_retry = app.state.metrics.retry
            if runtime.outbound is not None:
                runtime.outbound.on_send = app.state.metrics.send_latency
                runtime.outbound.on_changes = app.state.metrics.outgoing_changes
                runtime.outbound.on_inbound = app.state.metrics.inbound
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
    app.state.openapi_carriers = webhook_carriers(settings.enabled_carriers)
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
