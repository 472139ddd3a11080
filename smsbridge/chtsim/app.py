"""The simulator's ASGI app: CHT's routes, error handling, gzip, the failed-login limiter and,
outermost, fault injection and request counting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smsbridge.chtsim import (
    aggregators,
    contacts,
    controls,
    medic_db,
    monitoring,
    records_api,
    settings_api,
    sms_api,
)
from smsbridge.chtsim.auth import LimiterMiddleware
from smsbridge.chtsim.faults import FaultMiddleware
from smsbridge.chtsim.responses import ChtHttpError, NotLoggedIn, error_response, not_logged_in

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim

Handler = Callable[..., Awaitable[Response]]


def build_app(sim: ChtSim) -> Any:
    def bind(handler: Handler, *args: Any) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(sim, request, *args)

        return endpoint

    def route(path: str, handler: Handler, methods: list[str], *args: Any) -> list[Route]:
        endpoint = bind(handler, *args)
        paths = [path, path + "/"] if path.startswith("/api/") else [path]
        return [Route(p, endpoint, methods=methods) for p in paths]

    routes = [
        *route("/api/sms", sms_api.get_sms, ["GET"]),
        *route("/api/sms", sms_api.post_sms, ["POST"]),
        *route("/api/v1/records", records_api.post_records, ["POST"], 1),
        *route("/api/v2/records", records_api.post_records, ["POST"], 2),
        *route("/api/v1/contacts-by-phone", contacts.contacts_by_phone, ["GET", "POST"]),
        *route("/api/v1/settings", settings_api.get_settings, ["GET"]),
        *route("/api/v1/forms", settings_api.list_forms, ["GET"]),
        Route("/api/v1/forms/{name}", bind(settings_api.get_form), methods=["GET"]),
        *route("/api/v1/monitoring", monitoring.get_monitoring, ["GET"], 1),
        *route("/api/v2/monitoring", monitoring.get_monitoring, ["GET"], 2),
        *route("/_session", settings_api.post_session, ["POST"]),
        *route("/_session", settings_api.get_session, ["GET"]),
        *route("/_session", settings_api.delete_session, ["DELETE"]),
        *route("/medic/login", settings_api.login_page, ["GET"]),
        *route("/medic/_all_docs", medic_db.all_docs, ["GET"]),
        *route(medic_db.GATEWAY_REF_VIEW, medic_db.messages_by_gateway_ref, ["GET"]),
        Route("/medic/{doc_id}", bind(medic_db.get_doc), methods=["GET"]),
        Route("/api/v1/credentials/{key}", bind(aggregators.put_credential), methods=["PUT"]),
        *route("/api/v1/sms/africastalking/incoming-messages", aggregators.at_incoming, ["POST"]),
        *route("/api/v1/sms/africastalking/delivery-reports", aggregators.at_delivery, ["POST"]),
        *route("/api/v2/sms/rapidpro/incoming-messages", aggregators.rapidpro_incoming, ["POST"]),
        *route("/api/v1/sms/radpidpro/incoming-messages", aggregators.rapidpro_incoming, ["POST"]),
        *controls.routes(sim),
    ]

    async def cht_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ChtHttpError)
        return error_response(
            request, exc.status, exc.message, exc.details, always_json=exc.always_json
        )

    async def logged_out(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NotLoggedIn)
        return not_logged_in(request, basic_prompt=exc.basic_prompt)

    app = Starlette(
        routes=routes,
        exception_handlers={ChtHttpError: cht_error, NotLoggedIn: logged_out},
    )
    gzipped = GZipMiddleware(app, minimum_size=1024)
    limited = LimiterMiddleware(gzipped, lambda: sim.auth.limiter)
    return FaultMiddleware(limited, sim.faults)
