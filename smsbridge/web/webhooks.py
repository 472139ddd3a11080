"""A carrier's webhook request on its way to the carrier module: the running service it is for,
the secret token in its URL, the `WebhookRequest` the module reads, and the module's signature
check. Shared by the inbound (app.py) and delivery-report (outbound_http.py) routes.

    current_runtime(request) -> Runtime          Unavailable (503) while the service starts
    webhook_carrier(runtime, carrier, entry) -> module   NotFound (404) unless an enabled
                                                 carrier with webhooks (`entry`: its parser)
    verified_webhook(runtime, request, carrier, module) -> (WebhookRequest, CarrierConfig, now)
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from types import ModuleType

from starlette.requests import Request

from smsbridge.carriers import CARRIERS
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.errors import NotFound, Unauthorized, Unavailable
from smsbridge.service import Runtime
from smsbridge.settings import Settings


def current_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise Unavailable("service is starting")
    return runtime


# Carriers that take no webhooks, and where their traffic goes instead.
NO_WEBHOOKS = {"chtgateway": "cht-gateway phones use /api/sms, not carrier webhooks"}


def webhook_carrier(runtime: Runtime, carrier: str, entry: str) -> ModuleType:
    """The module of `carrier` when it is enabled and takes this webhook (its module has
    `entry`: `parse_inbound`, `parse_status`); NotFound otherwise, before the token is looked
    at: a carrier without webhooks is not a webhook carrier."""
    module = CARRIERS.get(carrier)
    if module is None or not hasattr(module, entry):
        hint = NO_WEBHOOKS.get(carrier)
        raise NotFound(f"unknown carrier {carrier!r}" + (f": {hint}" if hint else ""))
    if carrier not in runtime.enabled:
        raise NotFound(f"unknown carrier {carrier!r}")
    return module


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
    as the carrier module sees it, that carrier's config, and `now`. `carrier` is enabled (the
    route checked), so the runtime holds its config."""
    check_token(runtime.settings, carrier, request.path_params["token"])
    now = runtime.clock()
    req = await webhook_request(request, now)
    config = runtime.configs[carrier]
    module.verify(req, config)
    return req, config, now
