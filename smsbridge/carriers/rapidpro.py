"""RapidPro (and TextIt, the hosted RapidPro) as a channel: the wire format CHT's own RapidPro
integration uses, so a deployment that follows CHT's RapidPro guide only changes URLs.

Inbound: a RapidPro flow, started by a trigger on every incoming message, calls the bridge
with a webhook node: `POST /carriers/rapidpro/<token>/inbound`, JSON

    @(json(object("id", run.uuid, "from", replace(urns.tel, "tel:+", "+"),
                  "content", input.text, "date", input.created_on)))

(`text` is taken for `content`, a `tel:` prefix is dropped; `date` is optional). The answer
is CHT's: `{"saved": 1}`.

Outbound: `POST <api_url>/api/v2/broadcasts.json` with `Authorization: Token <api_token>` and
`{"urns": ["tel:+2547..."], "text": "..."}`; RapidPro answers 201 with the broadcast (its `id`
is the message's id here). RapidPro calls no one back about delivery: the states are read with
`GET /api/v2/messages.json?broadcast=<id>` (`poll_status`, which the service runs every
SMSBRIDGE_STATUS_POLL_INTERVAL: smsbridge/outbound/statuspoll.py), whose `status` is one of
initializing, queued, wired, sent, delivered, handled, errored (RapidPro retries), failed,
resent. Errors: 400 with the invalid fields, 401/403 for the token, 429 with Retry-After.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from smsbridge.carriers.base import (
    BaseCarrier,
    CarrierConfig,
    Needs,
    WebhookReply,
    WebhookRequest,
    inbound_sms,
    parse_time,
    webhook_token_setting,
)
from smsbridge.carriers.sending import (
    RETRYABLE,
    json_body,
    rejected,
    request,
    require_settings,
)
from smsbridge.errors import BadRequest
from smsbridge.settings import Setting
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate

NAME = "rapidpro"
INBOUND_METHODS = frozenset({"POST"})

SETTINGS: tuple[Setting, ...] = (
    webhook_token_setting(NAME, "the RapidPro flow webhook's"),
    Setting(
        "api_url",
        "",
        "RapidPro: the workspace's host, e.g. `https://textit.com` or your RapidPro's URL.",
    ),
    Setting(
        "api_token",
        "",
        "RapidPro: the workspace's API token (`Authorization: Token ...`).",
        secret=True,
    ),
)

# -- inbound ---------------------------------------------------------------------------------


def parse_inbound(req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]:
    params = req.params()
    text_field = "content" if "content" in params else "text"
    raw_sender = params.get("from", "").strip()
    if raw_sender.lower().startswith("tel:"):
        params["from"] = raw_sender[4:]
    if text_field not in params:
        raise BadRequest("missing field(s): content")
    return [
        inbound_sms(
            NAME,
            req,
            params,
            sender="from",
            text=text_field,
            external_id=params.get("id", "").strip() or None,
            received_at=parse_time(params.get("date"), req.arrived_at),
        )
    ]


def inbound_reply(messages: Sequence[InboundSms], config: CarrierConfig) -> WebhookReply:
    """CHT's answer to the same webhook."""
    return WebhookReply(200, b'{"saved": %d}' % len(messages), "application/json")


# -- outbound ----------------------------------------------------------------------------------

# A RapidPro message status -> ours. `errored` is RapidPro retrying: still on its way.
STATUS_MAP: dict[str, DeliveryState] = {
    "initializing": DeliveryState.SENDING,
    "pending": DeliveryState.SENDING,
    "queued": DeliveryState.SENT,
    "errored": DeliveryState.SENT,
    "wired": DeliveryState.SENT,
    "sent": DeliveryState.SENT,
    "resent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "failed": DeliveryState.FAILED,
}

# RapidPro names no error codes; DRF's `detail` of a throttled request says so.
ERRORS: dict[str, str] = {"throttled": RETRYABLE}

SEND_NEEDS: Needs = ("api_url", "api_token")


def _headers(config: CarrierConfig) -> dict[str, str]:
    return {"Authorization": f"Token {config.get('api_token')}", "Accept": "application/json"}


def _url(config: CarrierConfig, path: str) -> str:
    return config.get("api_url").rstrip("/") + path


def _failure(response: httpx.Response, body: Any) -> Exception:
    members = body if isinstance(body, dict) else {}
    detail = members.get("detail")
    code = "throttled" if response.status_code == 429 else None
    if detail is None and members:  # a 400: {"urns": ["..."], ...}
        detail = "invalid " + ", ".join(sorted(str(k) for k in members))
    return rejected(
        NAME,
        response,
        {"code": code, "detail": detail},
        ERRORS,
        code_key="code",
        detail_key="detail",
    )


async def send(http: httpx.AsyncClient, config: CarrierConfig, sms: OutboundSms) -> SendResult:
    require_settings(config, SEND_NEEDS)
    payload = {"urns": [f"tel:{sms.to}"], "text": sms.content}
    response = await request(
        http,
        NAME,
        "POST",
        _url(config, "/api/v2/broadcasts.json"),
        headers=_headers(config),
        json=payload,
    )
    body = json_body(response)
    if response.status_code < 300 and isinstance(body, dict) and body.get("id") is not None:
        status = str(body.get("status") or "queued")
        state = STATUS_MAP.get(status, DeliveryState.SENT)
        if state is DeliveryState.SENDING:
            state = DeliveryState.SENT  # RapidPro took it: the broadcast exists
        return SendResult(NAME, str(body["id"]), state, carrier_status=status)
    raise _failure(response, body)


def message_status(
    external_id: str, message: Any, at: datetime | None = None
) -> list[StatusUpdate]:
    """One result of messages.json as our StatusUpdate (none for a status we do not map)."""
    if not isinstance(message, dict):
        return []
    status = str(message.get("status") or "")
    state = STATUS_MAP.get(status)
    if state is None:
        return []
    reason = f"rapidpro: {status}" if state is DeliveryState.FAILED else None
    return [StatusUpdate(NAME, external_id, state, reason=reason, carrier_status=status, at=at)]


async def poll_status(
    http: httpx.AsyncClient, config: CarrierConfig, external_ids: Sequence[str]
) -> list[StatusUpdate]:
    """The states of the SMS sent as the broadcasts `external_ids`, read from messages.json
    (what CHT's own integration polls), one request each. Raises as `send` does when RapidPro
    refuses: the states read before that are not lost, the next round reads them again."""
    require_settings(config, SEND_NEEDS)
    updates: list[StatusUpdate] = []
    for external_id in external_ids:
        updates += await _poll_one(http, config, external_id)
    return updates


async def _poll_one(
    http: httpx.AsyncClient, config: CarrierConfig, external_id: str
) -> list[StatusUpdate]:
    response = await request(
        http,
        NAME,
        "GET",
        _url(config, "/api/v2/messages.json"),
        headers=_headers(config),
        params={"broadcast": external_id},
    )
    body = json_body(response)
    if response.status_code >= 300 or not isinstance(body, dict):
        raise _failure(response, body)
    results = body.get("results")
    if not isinstance(results, list) or not results:
        return []
    return message_status(external_id, results[0])


class RapidPro(BaseCarrier):
    """RapidPro / TextIt (this module's functions, as a `Carrier`)."""

    name = NAME
    settings = SETTINGS
    inbound_methods = INBOUND_METHODS
    takes_status = False  # RapidPro reports nothing: `poll_status` reads the states
    sends = True
    polls_status = True
    status_map = STATUS_MAP
    send_needs = SEND_NEEDS
    url_settings = ("api_url",)
    parse_inbound = staticmethod(parse_inbound)
    inbound_reply = staticmethod(inbound_reply)
    send = staticmethod(send)
    poll_status = staticmethod(poll_status)


CARRIER = RapidPro()
