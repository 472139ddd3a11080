"""What every carrier module shares: the plain request/response values and the Carrier protocol.

A carrier module speaks only its wire format (DESIGN.md rule 3). It imports neither Starlette nor
the store: the app turns an HTTP request into a `WebhookRequest`, calls the module, and turns
its `WebhookReply` back into HTTP.

A carrier module provides (the inbound side):
    NAME                                  its name in URLs and settings
    INBOUND_METHODS                       the HTTP methods its inbound webhook may use
    verify(req, config) -> None           signature check; raises Forbidden (403) when it fails
    parse_inbound(req, config) -> list[InboundSms]   raises BadRequest (400) on a malformed body
    inbound_reply(messages, config) -> WebhookReply  the 2xx body the carrier expects
and (the outbound side, OUTBOUND): parse_status, send, STATUS_MAP, ERRORS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from smsbridge.errors import BadRequest
from smsbridge.sms import InboundSms


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request as a carrier module sees it. `form` is the urlencoded body (or multipart
    fields), `json` the parsed JSON body (None if the body is not JSON), `query` the query
    string; all keep repeated keys as lists of pairs."""

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
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

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
        """Decode the body by content type (urlencoded or JSON); raises BadRequest when the body
        does not decode."""
        headers = {k.lower(): v for k, v in headers.items()}
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        query = tuple(parse_qsl(query_string, keep_blank_values=True))
        form: tuple[tuple[str, str], ...] = ()
        parsed_json: Any = None
        if body:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest("body is not UTF-8") from exc
            if ctype == "application/x-www-form-urlencoded":
                try:
                    form = tuple(
                        parse_qsl(
                            text, keep_blank_values=True, strict_parsing=False, errors="strict"
                        )
                    )
                except (ValueError, UnicodeDecodeError) as exc:
                    raise BadRequest("malformed form body") from exc
            elif ctype == "application/json" or ctype.endswith("+json"):
                try:
                    parsed_json = json.loads(text)
                except ValueError as exc:
                    raise BadRequest("malformed JSON body") from exc
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

    def get(self, name: str, default: str = "") -> str:
        value = self.values.get(name, "")
        return value if value else default


@dataclass(frozen=True)
class WebhookReply:
    status: int = 200
    body: bytes = b""
    media_type: str = "text/plain"


class Carrier(Protocol):
    """The module-level interface of a carrier module (modules are checked structurally)."""

    NAME: str

    def verify(self, req: WebhookRequest, config: CarrierConfig) -> None: ...

    def parse_inbound(self, req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]: ...

    def inbound_reply(
        self, messages: Sequence[InboundSms], config: CarrierConfig
    ) -> WebhookReply: ...


# -- helpers the modules share -------------------------------------------------------------------


def require(params: Mapping[str, str], *names: str) -> list[str]:
    """The values of `names`; BadRequest naming every missing or empty one."""
    missing = [n for n in names if not params.get(n, "").strip()]
    if missing:
        raise BadRequest("missing field(s): " + ", ".join(missing))
    return [params[n] for n in names]


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
