"""A plain HTTP carrier, for Kannel/Jasmin-style gateways and anything custom: inbound webhooks,
sends and delivery reports (the outbound side is at the end of this module).

POST a form (`application/x-www-form-urlencoded`) or a JSON object — or GET with a query — with
the sender, the text and, if the gateway has one, its message id. Field names default to
`from`, `to`, `text`, `id`, `date` and are configurable (e.g. Kannel's `get-url` with
`?from=%p&to=%P&text=%a&id=%I`; Jasmin's MO fields `from`, `to`, `content`, `id`). Without an id
the bridge de-duplicates by sender + text within SMSBRIDGE_DEDUP_WINDOW. Answer: 200 JSON
`{"ok": true, "received": N}` (or the body set in SMSBRIDGE_GENERIC_REPLY_BODY, e.g.
`ACK/Jasmin` for Jasmin).

URL: `https://<public host>/carriers/generic/<SMSBRIDGE_GENERIC_WEBHOOK_TOKEN>/inbound`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

import httpx

from smsbridge.carriers.base import (
    BaseCarrier,
    CarrierConfig,
    Findings,
    Needs,
    WebhookReply,
    WebhookRequest,
    inbound_sms,
    parse_time,
    require,
    webhook_token_setting,
)
from smsbridge.carriers.sending import (
    PERMANENT,
    RETRYABLE,
    json_body,
    rejected,
    request,
    require_settings,
    status_update,
    status_url,
)
from smsbridge.errors import BadRequest
from smsbridge.settings import Setting
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate

NAME = "generic"
INBOUND_METHODS = frozenset({"GET", "POST"})  # how the inbound webhook may arrive

SETTINGS: tuple[Setting, ...] = (
    webhook_token_setting(NAME, "the generic carrier's"),
    Setting("from_field", "from", "Generic carrier: name of the sender field."),
    Setting("to_field", "to", "Generic carrier: name of the recipient field."),
    Setting("text_field", "text", "Generic carrier: name of the message text field."),
    Setting(
        "id_field",
        "id",
        "Generic carrier: name of the gateway's message id field (optional in requests).",
    ),
    Setting(
        "date_field",
        "date",
        "Generic carrier: name of the received-time field "
        "(optional; ISO 8601, `YYYY-MM-DD HH:MM:SS` UTC, or epoch s/ms).",
    ),
    Setting(
        "reply_body",
        "",
        "Generic carrier: fixed body to answer inbound webhooks with "
        "(e.g. `ACK/Jasmin`); empty for JSON.",
    ),
    Setting(
        "send_url",
        "",
        "Generic carrier: URL to POST outgoing SMS to (fields `to`, "
        "`text`, `from`, `id` = our reference, `callback` = our delivery-report URL); "
        'answer 2xx, JSON `{"id": ...}` naming the gateway\'s message id.',
    ),
    Setting("send_format", "json", "Generic carrier: body of sends, `json` or `form`."),
    Setting(
        "send_token",
        "",
        "Generic carrier: bearer token sent with each send "
        "(`Authorization: Bearer ...`); empty: none.",
        secret=True,
    ),
    Setting("sender", "", "Generic carrier: the `from` of outgoing SMS."),
)


def verify(req: WebhookRequest, config: CarrierConfig) -> None:
    """No signature scheme: the URL token (checked by the app) is the check."""


def parse_inbound(req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]:
    params = req.params()
    external_id = params.get(config.get("id_field", "id"), "").strip() or None
    return [
        inbound_sms(
            NAME,
            req,
            params,
            sender=config.get("from_field", "from"),
            text=config.get("text_field", "text"),
            external_id=external_id,
            received_at=parse_time(params.get(config.get("date_field", "date")), req.arrived_at),
            recipient=params.get(config.get("to_field", "to")) or None,
        )
    ]


def inbound_reply(messages: Sequence[InboundSms], config: CarrierConfig) -> WebhookReply:
    body = config.get("reply_body")
    if body:
        return WebhookReply(200, body.encode(), "text/plain")
    return WebhookReply(200, _received(len(messages)), "application/json")


@functools.lru_cache(maxsize=8)
def _received(count: int) -> bytes:
    """The default answer, `{"ok": true, "received": N}` (the same N on nearly every call)."""
    return json.dumps({"ok": True, "received": count}).encode()


# -- outbound side (OUTBOUND): parse_status, send, STATUS_MAP, ERRORS ------------------------

# Delivery report `status` -> our state: words, and Kannel's dlr-mask numbers (1 delivered,
# 2 non-delivered, 4 queued on SMSC, 8 delivered to SMSC, 16 SMSC reject).
STATUS_MAP: dict[str, DeliveryState] = {
    "queued": DeliveryState.SENDING,
    "accepted": DeliveryState.SENT,
    "sent": DeliveryState.SENT,
    "submitted": DeliveryState.SENT,
    "buffered": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "success": DeliveryState.DELIVERED,
    "delivrd": DeliveryState.DELIVERED,
    "failed": DeliveryState.FAILED,
    "undelivered": DeliveryState.FAILED,
    "undeliv": DeliveryState.FAILED,
    "rejected": DeliveryState.FAILED,
    "rejectd": DeliveryState.FAILED,
    "expired": DeliveryState.FAILED,
    "1": DeliveryState.DELIVERED,
    "2": DeliveryState.FAILED,
    "4": DeliveryState.SENT,
    "8": DeliveryState.SENT,
    "16": DeliveryState.FAILED,
}

# The `error` member of a non-2xx JSON answer -> retryable or permanent.
ERRORS: dict[str, str] = {
    "throttled": RETRYABLE,
    "unavailable": RETRYABLE,
    "invalid_number": PERMANENT,
    "rejected": PERMANENT,
}

SEND_NEEDS: Needs = ("send_url",)
SEND_FORMATS = ("json", "form")


async def send(http: httpx.AsyncClient, config: CarrierConfig, sms: OutboundSms) -> SendResult:
    require_settings(config, SEND_NEEDS)
    fields = {"to": sms.to, "text": sms.content, "id": sms.cht_id}
    if config.get("sender"):
        fields["from"] = config.get("sender")
    callback = status_url(config)
    if callback:
        fields["callback"] = callback
    headers = {"Accept": "application/json"}
    if config.get("send_token"):
        headers["Authorization"] = f"Bearer {config.get('send_token')}"
    body_arg = {"data": fields} if config.get("send_format", "json") == "form" else {"json": fields}
    response = await request(
        http, NAME, "POST", config.get("send_url"), headers=headers, **body_arg
    )
    body = json_body(response)
    if response.status_code < 300:
        external = body.get("id") if isinstance(body, dict) else None
        return SendResult(NAME, str(external) if external else sms.cht_id, DeliveryState.SENT)
    raise rejected(NAME, response, body, ERRORS, code_key="error")


def parse_status(req: WebhookRequest, config: CarrierConfig) -> list[StatusUpdate]:
    """A delivery report names the message by the gateway's `id` (as answered to the send) or by
    our `ref` (the `id` we sent it), or both."""
    params = req.params()
    (status,) = require(params, "status")
    external_id, ref = params.get("id", "").strip(), params.get("ref", "").strip()
    if not external_id and not ref:
        raise BadRequest("missing field(s): id or ref")
    state = STATUS_MAP.get(status.strip().lower())
    reason = params.get("reason")
    return status_update(NAME, req, external_id, status, state, reason=reason, ref=ref)


class Generic(BaseCarrier):
    """The plain HTTP carrier (this module's functions, as a `Carrier`)."""

    name = NAME
    settings = SETTINGS
    inbound_methods = INBOUND_METHODS
    takes_status = True
    sends = True
    asks_status_url = True
    status_map = STATUS_MAP
    send_needs = SEND_NEEDS
    url_settings = ("send_url",)
    verify = staticmethod(verify)
    parse_inbound = staticmethod(parse_inbound)
    inbound_reply = staticmethod(inbound_reply)
    parse_status = staticmethod(parse_status)
    send = staticmethod(send)

    def check(self, config: CarrierConfig) -> Findings:
        problems, warnings = super().check(config)
        send_format = config.get("send_format", "json")
        if send_format not in SEND_FORMATS:
            problems.append(
                f"{config.env('send_format')}: expected json or form, got {send_format!r}"
            )
        return problems, warnings


CARRIER = Generic()
