"""What every carrier shares: the plain request/response values, the `Carrier` protocol and
`BaseCarrier`, its defaults.

A carrier speaks only its wire format. Its module imports neither Starlette nor the store: the
app turns an HTTP request into a `WebhookRequest`, calls the carrier, and turns its
`WebhookReply` back into HTTP. Each carrier module exposes one `Carrier` object, `CARRIER`;
smsbridge/carriers/__init__.py maps names to them (`CARRIERS`). What a carrier can do is data
on the object (`inbound_methods`, `takes_status`, `sends`), never a probe for an attribute.

`parse_inbound` builds each message with `inbound_sms` (below): the checks every inbound SMS
passes — sender and text are strings, the sender is a phone number or an alphanumeric sender
id — live there, once for all carriers.

Bodies are decoded here, once: a form in its Content-Type's `charset` when it names one, else
UTF-8, or Latin-1 when it is not UTF-8 (what Kannel sends by default); the query string the
same way. A body that is neither a form nor JSON is refused (415).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from smsbridge.errors import BadRequest, NotFound, PermanentError, UnsupportedMediaType
from smsbridge.settings import Setting, Settings
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request as a carrier module sees it. `form` is the urlencoded body, `json` the
    parsed JSON body (None if the body is not JSON), `query` the query string; all keep
    repeated keys as lists of pairs."""

    method: str
    url: str  # the URL as received (scheme://host/path?query)
    path: str  # the path as received, e.g. /carriers/twilio/TOKEN/inbound
    headers: Mapping[str, str]  # lower-case names
    query: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] = ()
    json: Any = None
    body: bytes = b""
    query_string: str = ""
    arrived_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)  # our clock when it arrived

    @property
    def content_type(self) -> str:
        return media_type(self.headers.get("content-type", ""))[0]

    def params(self) -> dict[str, str]:
        """The request's parameters as one flat dict: query, then form, then a JSON object's
        scalar members (later wins). What most carriers mean by "the fields"."""
        out: dict[str, str] = dict(self.query)
        out.update(self.form)
        if isinstance(self.json, dict):
            for key, value in self.json.items():
                if value is None:
                    continue
                out[str(key)] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def build(
        cls,
        method: str,
        url: str,
        path: str,
        headers: Mapping[str, str],
        query_string: str,
        body: bytes,
        arrived_at: datetime,
    ) -> WebhookRequest:
        """Decode the query string and the body by content type (urlencoded or JSON); raises
        BadRequest when the body does not decode, UnsupportedMediaType for any other type."""
        headers = {k.lower(): v for k, v in headers.items()}
        ctype, charset = media_type(headers.get("content-type", ""))
        query = _form_pairs(_query_bytes(query_string), None)
        form: tuple[tuple[str, str], ...] = ()
        parsed_json: Any = None
        if body:
            if ctype == "application/x-www-form-urlencoded":
                form = _form_pairs(body, charset)
            elif ctype == "application/json" or ctype.endswith("+json"):
                try:
                    parsed_json = json.loads(_text(body, charset))
                except ValueError as exc:
                    raise BadRequest("malformed JSON body") from exc
            else:
                named = repr(ctype) if ctype else "(none)"
                raise UnsupportedMediaType(
                    f"unsupported Content-Type {named}: send "
                    "application/x-www-form-urlencoded or application/json"
                )
        return cls(
            method=method.upper(),
            url=url,
            path=path,
            headers=headers,
            query=query,
            form=form,
            json=parsed_json,
            body=body,
            query_string=query_string,
            arrived_at=arrived_at,
        )


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


def media_type(header: str) -> tuple[str, str | None]:
    """A Content-Type header as (lower-case media type, its `charset` parameter or None)."""
    kind, *params = header.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').strip():
            charset = value.strip().strip('"').strip()
    return kind.strip().lower(), charset


def _query_bytes(query_string: str) -> bytes:
    """The query string as the bytes that arrived (the app hands it over decoded as Latin-1)."""
    try:
        return query_string.encode("latin-1")
    except UnicodeEncodeError:
        return query_string.encode("utf-8")


def _text(data: bytes, charset: str | None) -> str:
    """`data` in `charset` when the sender named one (BadRequest when it is not valid in it);
    else UTF-8, or Latin-1 when it is not UTF-8. Nothing is replaced by U+FFFD: a character is
    either read as sent or the request is refused."""
    if charset is not None:
        try:
            return data.decode(charset)
        except LookupError as exc:  # unknown, or not a text encoding (`hex`, `rot13`)
            raise BadRequest(f"unknown charset {charset!r}") from exc
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body is not valid {charset}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _form_pairs(data: bytes, charset: str | None) -> tuple[tuple[str, str], ...]:
    """A urlencoded form (or query string): the %-escapes are undone on bytes, then each name and
    value is read as text by `_text`."""
    pairs = parse_qsl(data.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return tuple(
        (_text(k.encode("latin-1"), charset), _text(v.encode("latin-1"), charset)) for k, v in pairs
    )


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
        digits = "".join(c for c in raw if c.isdigit())
        international_form = raw.startswith(("+", "00")) or bare_international
        if raw.startswith("00"):
            digits = digits[2:]
        if 0 < len(digits) <= MAX_PHONE_DIGITS:
            return "+" + digits if international_form else raw
    elif 0 < len(raw) <= MAX_SENDER_ID and all(c in _SENDER_ID_CHARS for c in raw):
        return raw
    raise BadRequest(f"{name} is not a phone number or sender id")


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
        for name in (sender, text):
            value = req.json.get(name)
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{name} must be a string")
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


def parse_time(value: str | None, default: datetime) -> datetime:
    """A carrier timestamp as an aware UTC datetime: ISO 8601 (`2017-05-03T06:04:45Z`),
    `YYYY-MM-DD HH:MM:SS` (UTC), or epoch seconds/milliseconds. `default` when absent or
    unreadable (a wrong date must not lose the SMS)."""
    if not value or not value.strip():
        return default
    raw = value.strip()
    if raw.isdigit():
        number = int(raw)
        seconds = number / 1000 if number > 10**11 else number
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return default
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return default
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def ok_reply() -> WebhookReply:
    return WebhookReply(200, b"", "text/plain")
