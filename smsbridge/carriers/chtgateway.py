"""cht-gateway phones: Android phones running medic/cht-gateway, pointed at the bridge.

A phone speaks the protocol CHT itself serves at `/api/sms` (smsbridge/chtsim/sms_api.py
simulates it), so the bridge serves the same endpoint: `GET /api/sms` ->
`{"medic-gateway": true}`; `POST /api/sms`
(Content-Type exactly `application/json`) with `{"messages": [{id, from, content, sms_sent,
sms_received}], "updates": [{id, status, reason}]}` -> `{"messages": [{id, to, content}]}`.
Basic auth, one account per phone: SMSBRIDGE_CHTGATEWAY_ACCOUNTS=`phone1:secret1,phone2:secret2`.
In the phone app set the URL to `https://phone1:secret1@<public host>/api/sms`.

Phones pull: messages routed to `chtgateway` (any phone) or `chtgateway:<user>` (that phone) are
handed out in poll responses. Like CHT, a message is offered again until the phone reports a
status for it (the phone ignores ids it already has). The phone reports UNSENT (stored on the
phone), PENDING (handed to the radio), SENT, DELIVERED or FAILED with a reason.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from smsbridge.carriers.base import (
    BaseCarrier,
    CarrierConfig,
    Findings,
    Needs,
    sender_of,
    string_fields,
)
from smsbridge.carriers.webhook import loads_json
from smsbridge.errors import BadRequest, Unauthorized
from smsbridge.settings import Setting
from smsbridge.sms import DeliveryState, InboundSms

NAME = "chtgateway"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "accounts",
        "",
        "cht-gateway phone accounts, `user:password,...`: each phone logs "
        "in to `/api/sms` with its own (Basic auth).",
        secret=True,
    ),
    Setting("batch", "25", "Most SMS handed to one phone per poll (CHT's own batch is 25)."),
)

# what a phone needs to fetch its SMS: an account to log in with (check-config warns)
SEND_NEEDS: Needs = ("accounts",)

# A phone's `status` -> our state. UNSENT only says the phone has stored the SMS: no change.
STATUS_MAP: dict[str, DeliveryState | None] = {
    "UNSENT": None,
    "PENDING": DeliveryState.SENDING,
    "SENT": DeliveryState.SENT,
    "DELIVERED": DeliveryState.DELIVERED,
    "FAILED": DeliveryState.FAILED,
}

# The phone's own failure reasons: radio trouble it retries itself before reporting FAILED.
ERRORS: dict[str, str] = {
    "no-service": "retryable",
    "null-pdu": "retryable",
    "radio-off": "retryable",
    "generic": "permanent",
    "destination.invalid": "permanent",
}


@dataclass(frozen=True)
class PhoneUpdate:
    id: str
    status: str
    state: DeliveryState | None  # None: no change (UNSENT) or a status we do not know
    reason: str | None


@dataclass(frozen=True)
class Exchange:
    messages: list[InboundSms]
    updates: list[PhoneUpdate]
    refused: list[str] = field(default_factory=list)  # why each skipped message was refused


def accounts(values: Mapping[str, str]) -> dict[str, str]:
    """`user:password,...` -> {user: password}."""
    out: dict[str, str] = {}
    for item in values.get("accounts", "").split(","):
        user, sep, password = item.strip().partition(":")
        if sep and user:
            out[user] = password
    return out


class LoginGuard(Protocol):
    """A failed-login limit (smsbridge/web/logins.py): `admit` raises to refuse a login before
    its password is checked; `failed` and `succeeded` are told how each checked one went."""

    def admit(self, user: str) -> None: ...

    def failed(self, user: str) -> None: ...

    def succeeded(self, user: str) -> None: ...


def authenticate(
    headers: Mapping[str, str], known: Mapping[str, str], guard: LoginGuard | None = None
) -> str:
    """The phone's user name from `Authorization: Basic ...`; Unauthorized otherwise.
    cht-gateway encodes user:password as ISO-8859-1. With `guard`, a login it does not admit
    is refused (its exception) and each password checked is reported to it."""
    raw = headers.get("authorization", "")
    scheme, _, encoded = raw.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthorized("Basic authentication required")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError) as exc:
        raise Unauthorized("malformed Basic credentials") from exc
    user, _, password = decoded.partition(":")
    if guard is not None:
        guard.admit(user)
    expected = known.get(user)
    # compare even for unknown users so timing does not tell which users exist
    ok = hmac.compare_digest(password.encode(), (expected or "\0" + password).encode())
    if expected is None or not ok:
        if guard is not None:
            guard.failed(user)
        raise Unauthorized("wrong user or password")
    if guard is not None:
        guard.succeeded(user)
    return user


def parse_exchange(content_type: str, body: bytes, user: str, arrived_at: datetime) -> Exchange:
    """A phone's POST body (already inflated when it came gzip-encoded). Like CHT: the
    Content-Type must be exactly application/json; messages without a truthy id, from and
    content are skipped (not an error). Like a carrier webhook (smsbridge/carriers/base.py):
    `id`, `from`, `content`, `status` and `reason` must be strings, else the exchange is refused
    (400) and nothing is stored; a message whose sender is not a phone number or sender id
    (`sender_of`) is refused alone (listed in `refused`, never stored) so that it cannot block
    the rest of the phone's batch, which the phone would resend forever. The JSON nesting is
    bounded before parsing (smsbridge/carriers/webhook.py)."""
    if content_type.strip().lower() != "application/json":
        raise BadRequest("Content-Type must be application/json")
    data: Any = loads_json(body or b"{}")
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    raw_messages = data.get("messages")
    raw_updates = data.get("updates")
    raw_messages = [] if raw_messages is None else raw_messages
    raw_updates = [] if raw_updates is None else raw_updates
    if not isinstance(raw_messages, list) or not isinstance(raw_updates, list):
        raise BadRequest("messages and updates must be arrays")
    messages = []
    refused: list[str] = []
    for n, m in enumerate(raw_messages):
        if not isinstance(m, dict):
            continue
        _strings(m, f"messages[{n}]", "id", "from", "content")
        if not (m.get("id") and m.get("from") and m.get("content")):
            continue
        try:
            sender = sender_of(m["from"], f"messages[{n}].from")
        except BadRequest as exc:
            refused.append(exc.detail)  # skipped: one bad sender must not block the phone's batch
            continue
        messages.append(
            InboundSms(
                carrier=NAME,
                external_id=m["id"],
                sender=sender,
                text=m["content"],
                received_at=_ms(m.get("sms_received"), arrived_at),
                extra={"phone": user},
            )
        )
    updates = []
    for n, u in enumerate(raw_updates):
        if not isinstance(u, dict):
            continue
        _strings(u, f"updates[{n}]", "id", "status", "reason")
        if not u.get("id"):
            continue
        status = (u.get("status") or "").upper()
        reason = u.get("reason")
        updates.append(PhoneUpdate(u["id"], status, STATUS_MAP.get(status), reason or None))
    return Exchange(messages, updates, refused)


def _strings(item: Mapping[str, Any], where: str, *names: str) -> None:
    try:
        string_fields(item, *names)
    except BadRequest as exc:
        raise BadRequest(f"{where}.{exc.detail}") from exc


def _ms(value: object, default: datetime) -> datetime:
    if isinstance(value, int | float) and value > 0:
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return default
    return default


PATHS = frozenset({"/api/sms", "/api/sms/"})
"""Where phones talk to the bridge: errors there take the shape below."""


def error_body(message: str) -> dict[str, Any]:
    """An error answer as cht-gateway reads it (its README, "HTTP Status 400+"): it parses a
    JSON error body and shows `message` in its UI and log."""
    return {"error": True, "message": message}


def reply(messages: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
    """The response body: the SMS this phone should send, as (id, to, content)."""
    return {"messages": [{"id": i, "to": to, "content": c} for i, to, c in messages]}


def channel_names(user: str) -> tuple[str, str]:
    """The routing channels a phone serves: its own and the shared one."""
    return (f"{NAME}:{user}", NAME)


class ChtGateway(BaseCarrier):
    """cht-gateway phones: no webhooks and no sends of its own (phones poll `/api/sms`, served
    by the web routes with this module's functions); its settings and status map."""

    name = NAME
    settings = SETTINGS
    status_map = STATUS_MAP
    send_needs = SEND_NEEDS

    def check(self, config: CarrierConfig) -> Findings:
        problems, warnings = super().check(config)
        batch = config.get("batch", "25")
        if not (batch.strip().isdigit() and int(batch) > 0):
            problems.append(
                f"{config.env('batch')}: expected a whole number above 0, got {batch!r}"
            )
        for item in config.get("accounts").split(","):
            user, sep, password = item.strip().partition(":")
            if item.strip() and (not sep or not user or not password):
                problems.append(
                    f"{config.env('accounts')}: expected user:password,... "
                    f"(an account without a user or a password: {user or item.strip()!r})"
                )
        return problems, warnings


CARRIER = ChtGateway()
