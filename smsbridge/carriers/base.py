"""What every carrier shares: the plain request/response values, the `Carrier` protocol and
`BaseCarrier`, its defaults.

A carrier speaks only its wire format. Its module imports neither Starlette nor the store: the
app turns an HTTP request into a `WebhookRequest`, calls the carrier, and turns its
`WebhookReply` back into HTTP. Each carrier module exposes one `Carrier` object, `CARRIER`;
smsbridge/carriers/__init__.py maps names to them (`CARRIERS`). What a carrier can do is data
on the object (`inbound_methods`, `takes_status`, `sends`, `polls_status`), never a probe for an
attribute.

`parse_inbound` builds each message with `inbound_sms` (below): the checks every inbound SMS
passes — sender and text are strings, the sender is a phone number or an alphanumeric sender
id — live there, once for all carriers (cht-gateway phones' messages too, through
`string_fields` and `sender_of`).

Requests are decoded in smsbridge/carriers/webhook.py (`WebhookRequest`, re-exported here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from smsbridge.carriers.webhook import WebhookRequest
from smsbridge.errors import BadRequest, NotFound, PermanentError
from smsbridge.settings import Setting, Settings
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class CarrierConfig:
    """One carrier's settings (SMSBRIDGE_<CARRIER>_<NAME>, keyed by lower-case NAME) and the
    bridge-wide values a carrier needs."""

    carrier: str
    values: Mapping[str, str] = field(default_factory=dict)
    public_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, carrier: str) -> CarrierConfig:
        return cls(carrier, dict(settings.carrier.get(carrier, {})), settings.public_url)

    def get(self, name: str, default: str = "") -> str:
        value = self.values.get(name, "")
        return value if value else default

    def env(self, name: str) -> str:
        """The environment variable of one of this carrier's settings."""
        return f"SMSBRIDGE_{self.carrier}_{name}".upper()


@dataclass(frozen=True)
class WebhookReply:
    status: int = 200
    body: bytes = b""
    media_type: str = "text/plain"


# The settings a carrier needs to send (`send_needs`), names of its settings
# (SMSBRIDGE_<CARRIER>_<NAME>); a tuple of names is "any one of these".
Needs = tuple[str | tuple[str, ...], ...]

# What `Carrier.check` finds: (problems, warnings), each a line for `smsbridge check-config`.
Findings = tuple[list[str], list[str]]


class Carrier(Protocol):
    """A carrier, as the web routes, the outbound pipeline and check-config use it."""

    @property
    def name(self) -> str:
        """Its name in URLs and settings."""
        ...

    @property
    def settings(self) -> tuple[Setting, ...]:
        """Its SMSBRIDGE_<CARRIER>_<NAME> settings, named without the prefix."""
        ...

    @property
    def inbound_methods(self) -> frozenset[str]:
        """The HTTP methods its inbound webhook may use; empty: it takes no inbound webhook."""
        ...

    @property
    def takes_status(self) -> bool:
        """It takes delivery-report webhooks (`parse_status`)."""
        ...

    @property
    def sends(self) -> bool:
        """It sends SMS itself (`send`); cht-gateway phones pull theirs instead."""
        ...

    @property
    def sender_setting(self) -> str:
        """Its setting that holds the sender number of its SMS (a route's `format` rewrites it:
        smsbridge/outbound/routing.py); a setting it lacks is empty, which changes nothing."""
        ...

    @property
    def polls_status(self) -> bool:
        """It reports no delivery states: they are read from it (`poll_status`), periodically
        (smsbridge/outbound/statuspoll.py)."""
        ...

    @property
    def asks_status_url(self) -> bool:
        """Its sends name our status URL, so its reports need SMSBRIDGE_PUBLIC_URL."""
        ...

    @property
    def status_map(self) -> Mapping[str, DeliveryState | None]:
        """The carrier's delivery statuses -> ours (None: no change)."""
        ...

    @property
    def send_needs(self) -> Needs:
        """The settings without which its SMS cannot go."""
        ...

    def verify(self, req: WebhookRequest, config: CarrierConfig) -> None:
        """Signature check; raises Forbidden (403) when it fails."""
        ...

    def parse_inbound(self, req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]:
        """The SMS in an inbound webhook; raises BadRequest (400) on a malformed body."""
        ...

    def inbound_reply(self, messages: Sequence[InboundSms], config: CarrierConfig) -> WebhookReply:
        """The 2xx answer the carrier expects once the messages are stored."""
        ...

    def parse_status(self, req: WebhookRequest, config: CarrierConfig) -> list[StatusUpdate]:
        """The delivery reports in a status webhook."""
        ...

    async def send(
        self, http: httpx.AsyncClient, config: CarrierConfig, sms: OutboundSms
    ) -> SendResult:
        """Send one SMS; raises RetryableError, PermanentError or AuthFailure."""
        ...

    async def poll_status(
        self, http: httpx.AsyncClient, config: CarrierConfig, external_ids: Sequence[str]
    ) -> list[StatusUpdate]:
        """The states of the SMS it knows as `external_ids` (its ids, from the send responses),
        as it reports them now; none for an id it says nothing about. Raises as `send` does."""
        ...

    def check(self, config: CarrierConfig) -> Findings:
        """What `smsbridge check-config` reports of this carrier's settings: problems (they
        would fail `serve` or every request of a kind) and warnings (the carrier would work
        only in part; check-config shows them for enabled carriers only)."""
        ...


class BaseCarrier:
    """A carrier that takes nothing and sends nothing: each carrier class overrides what it
    does, and `check` finds what every carrier shares (URLs that are not URLs, a webhook
    carrier without a webhook token)."""

    name: str
    settings: tuple[Setting, ...] = ()
    inbound_methods: frozenset[str] = frozenset()
    takes_status: bool = False
    sends: bool = False
    sender_setting: str = "sender"
    polls_status: bool = False
    asks_status_url: bool = False
    status_map: Mapping[str, DeliveryState | None] = {}
    send_needs: Needs = ()
    url_settings: tuple[str, ...] = ()  # settings that must be http(s) URLs

    def verify(self, req: WebhookRequest, config: CarrierConfig) -> None:
        """No signature scheme: the URL token (checked by the app) is the check."""

    def parse_inbound(self, req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]:
        raise NotFound(f"{self.name} takes no webhooks")

    def inbound_reply(self, messages: Sequence[InboundSms], config: CarrierConfig) -> WebhookReply:
        return ok_reply()

    def parse_status(self, req: WebhookRequest, config: CarrierConfig) -> list[StatusUpdate]:
        raise NotFound(f"{self.name} takes no delivery reports")

    async def send(
        self, http: httpx.AsyncClient, config: CarrierConfig, sms: OutboundSms
    ) -> SendResult:
        raise PermanentError(f"{self.name}: does not send SMS itself", code="config")

    async def poll_status(
        self, http: httpx.AsyncClient, config: CarrierConfig, external_ids: Sequence[str]
    ) -> list[StatusUpdate]:
        raise PermanentError(f"{self.name}: has no delivery states to read", code="config")

    def check(self, config: CarrierConfig) -> Findings:
        problems = [
            f"{config.env(name)}: expected an http(s)://host[:port][/path] URL, got {raw!r}"
            for name in self.url_settings
            if (raw := config.get(name)) and not url_ok(raw)
        ]
        warnings = []
        if self.inbound_methods and not config.get("webhook_token"):
            warnings.append(
                f"{config.env('webhook_token')} is empty: {self.name} is enabled but every "
                "webhook to it gets 401"
            )
        return problems, warnings


def url_ok(raw: str) -> bool:
    """An http(s) URL with a host (and a port in range, if any)."""
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018  (raises ValueError when out of range)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# -- helpers the modules share -------------------------------------------------------------------


def webhook_token_setting(carrier: str, who: str) -> Setting:
    """The `webhook_token` setting every webhook carrier declares: the secret path segment of
    its URLs, compared in constant time (`who` names the carrier in the text)."""
    return Setting(
        "webhook_token",
        "",
        f"Secret path segment of {who} URLs (`/carriers/{carrier}/<token>/inbound`).",
        secret=True,
    )


def require(params: Mapping[str, str], *names: str) -> list[str]:
    """The values of `names`; BadRequest naming every missing or empty one."""
    missing = [n for n in names if not params.get(n, "").strip()]
    if missing:
        raise BadRequest("missing field(s): " + ", ".join(missing))
    return [params[n] for n in names]


# A sender: a phone number (digits with the usual separators, at most 20 digits after an
# international prefix) or an alphanumeric sender id (at most 11 GSM letters, digits, spaces).
_PHONE = re.compile(r"\+?[0-9 ().\-]+")
_SEPARATORS = str.maketrans("", "", "+ ().-")  # what _PHONE allows besides ASCII digits
MAX_PHONE_DIGITS = 20
MAX_SENDER_ID = 11
_SENDER_ID_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 "
    "ÄÖÑÜäöñüàèéùìòÇØøÅåÆæßÉΔΦΓΛΩΠΨΣΘΞ"  # the other letters of the GSM 7-bit alphabet
)


def sender_of(value: str, name: str, *, bare_international: bool = False) -> str:
    """A carrier's sender field as we store it: a phone number as `+digits` when it is written
    internationally (`+`, `00`, or always when `bare_international`: Vonage's `msisdn`),
    otherwise as given, stripped (the pipeline applies CHT's own normalisation); or an
    alphanumeric sender id as given. BadRequest for anything else: nothing is stored."""
    raw = value.strip()
    if _PHONE.fullmatch(raw):
        digits = raw.translate(_SEPARATORS)
        international_form = raw.startswith(("+", "00")) or bare_international
        if raw.startswith("00"):
            digits = digits[2:]
        if 0 < len(digits) <= MAX_PHONE_DIGITS:
            return "+" + digits if international_form else raw
    elif 0 < len(raw) <= MAX_SENDER_ID and all(c in _SENDER_ID_CHARS for c in raw):
        return raw
    raise BadRequest(f"{name} is not a phone number or sender id")


def string_fields(values: Mapping[str, Any], *names: str) -> None:
    """BadRequest when one of `names` in a JSON object is present (not null) and not a string:
    `["a"]` or `{"x": 1}` must not be stored as their Python spelling."""
    for name in names:
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")


def inbound_sms(
    carrier: str,
    req: WebhookRequest,
    params: Mapping[str, str],
    *,
    sender: str,
    text: str,
    external_id: str | None,
    received_at: datetime,
    recipient: str | None = None,
    extra: dict[str, str] | None = None,
    bare_international: bool = False,
) -> InboundSms:
    """One inbound SMS from `params` (`req.params()`): `sender` and `text` name the fields that
    hold the sender and the text. Every carrier builds its messages here, so every inbound SMS
    passes the same checks (BadRequest, nothing stored): a sender is required and must be a
    phone number or an alphanumeric sender id (`sender_of`), and neither field may be a JSON
    value other than a string."""
    if isinstance(req.json, dict):
        string_fields(req.json, sender, text)
    (raw_sender,) = require(params, sender)
    return InboundSms(
        carrier=carrier,
        external_id=external_id,
        sender=sender_of(raw_sender, sender, bare_international=bare_international),
        text=params.get(text, ""),
        received_at=received_at,
        recipient=recipient,
        extra=extra or {},
    )


def international(number: str) -> str:
    """A carrier's sender number as `+digits` when it is an international number written
    without the plus (Vonage's `msisdn`), otherwise as given, stripped. The pipeline applies
    CHT's own normalisation (phone.normalize with CHT's settings) before any lookup."""
    raw = number.strip()
    if raw.startswith("+"):
        return "+" + "".join(c for c in raw[1:] if c.isdigit())
    if raw.startswith("00") and raw[2:].isdigit():
        return "+" + raw[2:]
    return raw


MAX_EPOCH_DIGITS = 16
"""Epoch timestamps longer than this (milliseconds have 13 digits) are not read as numbers."""


MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far a carrier's clock may run ahead of ours before its date is not believed."""


def parse_time(value: str | None, default: datetime) -> datetime:
    """A carrier timestamp as an aware UTC datetime: ISO 8601 (`2017-05-03T06:04:45Z`),
    `YYYY-MM-DD HH:MM:SS` (UTC), or epoch seconds/milliseconds. `default` (the arrival time)
    when absent or unreadable, including dates that exist in no calendar Python keeps
    (`0001-01-01T00:00:00+01:00` is in year 0 in UTC), and dates after the arrival (beyond
    MAX_CLOCK_SKEW): an SMS cannot have been received after it reached us. A wrong date must
    not lose the SMS."""
    if not value or not value.strip():
        return default
    raw = value.strip()
    try:
        if raw.isdigit():
            # ASCII digits only (`²` is a digit to isdigit but not to int), and a length int()
            # reads without hitting Python's digit limit
            if not raw.isascii() or len(raw) > MAX_EPOCH_DIGITS:
                return default
            number = int(raw)
            parsed = datetime.fromtimestamp(number / 1000 if number > 10**11 else number, UTC)
        else:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            parsed = parsed.astimezone(UTC)
        return default if parsed - default > MAX_CLOCK_SKEW else parsed
    except (OverflowError, OSError, ValueError):
        return default


def ok_reply() -> WebhookReply:
    return WebhookReply(200, b"", "text/plain")
