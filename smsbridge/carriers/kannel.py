"""Kannel (bearerbox + smsbox), and through it any SMSC Kannel speaks: SMPP to an operator, or
CIMD2, UCP/EMI, AT modems. The bridge speaks only HTTP to smsbox; the SMSC side is Kannel's
configuration (deploy/kannel/kannel.conf, the tested one).

Inbound: smsbox's `sms-service` calls the bridge with `get-url` (a form POST with the same
fields is taken too):

    /carriers/kannel/<token>/inbound?from=%p&to=%P&text=%a&id=%I&time=%T&charset=%C&smsc=%i

`text` is read in the charset Kannel names (`charset`, its %C: UTF-8 with smsbox's
`mo-recode`, UTF-16BE for a UCS-2 SMS without it, or ISO-8859-1); `id` (Kannel's message UUID)
makes a repeated call a duplicate; `time` is epoch seconds.

Outbound: smsbox's `sendsms` interface (`GET /cgi-bin/sendsms?username=&password=&to=&text=`),
with `charset=UTF-8`, `coding=2` when the text is not GSM-7, the SMSC (`smsc`) when set, and a
`dlr-url` naming our reference, so Kannel's delivery reports (`type` = %d, the DLR mask bits:
1 delivered, 2 failed, 4 buffered, 8 accepted by the SMSC, 16 rejected by the SMSC) find the
message without any id from Kannel (sendsms answers none: "0: Accepted for delivery").
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, quote

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
    AUTH,
    PERMANENT,
    RETRYABLE,
    failure,
    request,
    require_settings,
    status_update,
    status_url,
)
from smsbridge.errors import BadRequest
from smsbridge.retryafter import retry_after
from smsbridge.segments import Encoding, encoding_of
from smsbridge.settings import Setting
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate

NAME = "kannel"
INBOUND_METHODS = frozenset({"GET", "POST"})
DEFAULT_DLR_MASK = "31"  # every report Kannel has: 1 + 2 + 4 + 8 + 16

SETTINGS: tuple[Setting, ...] = (
    webhook_token_setting(NAME, "Kannel's get-url and dlr-url"),
    Setting(
        "sendsms_url",
        "",
        "Kannel: smsbox's sendsms URL, e.g. `http://127.0.0.1:13013/cgi-bin/sendsms`.",
    ),
    Setting("username", "", "Kannel: the `sendsms-user` username."),
    Setting("password", "", "Kannel: the `sendsms-user` password.", secret=True),
    Setting(
        "smsc",
        "",
        "Kannel: the `smsc-id` to send through (empty: Kannel's own routing).",
    ),
    Setting("sender", "", "Kannel: the `from` of outgoing SMS (empty: smsbox's global-sender)."),
    Setting(
        "dlr_mask",
        DEFAULT_DLR_MASK,
        "Kannel: the `dlr-mask` of sends (1 delivered, 2 failed, 4 buffered, 8 SMSC "
        "accepted, 16 SMSC rejected; 0: no delivery reports).",
    ),
)

# -- inbound ---------------------------------------------------------------------------------


def _text(req: WebhookRequest, params: dict[str, str]) -> str:
    """`text` in the charset Kannel names (%C); the generic decoding when it names none (or
    UTF-8, which the request decoding already assumed)."""
    charset = params.get("charset", "").strip()
    if not charset or charset.upper().replace("_", "-") in ("UTF-8", "UTF8"):
        return params.get("text", "")
    raw = req.query_string if req.method == "GET" else req.body.decode("latin-1")
    pairs = parse_qsl(raw, keep_blank_values=True, encoding="latin-1")
    found = [value for key, value in pairs if key == "text"]
    if not found:
        return params.get("text", "")
    try:
        return found[-1].encode("latin-1").decode(charset)
    except LookupError as exc:
        raise BadRequest(f"unknown charset {charset!r}") from exc
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise BadRequest(f"text is not valid {charset}") from exc


def parse_inbound(req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]:
    params = req.params()
    params["text"] = _text(req, params)
    extra = {"smsc": params["smsc"]} if params.get("smsc", "").strip() else None
    return [
        inbound_sms(
            NAME,
            req,
            params,
            sender="from",
            text="text",
            external_id=params.get("id", "").strip() or None,
            received_at=parse_time(params.get("time"), req.arrived_at),
            recipient=params.get("to") or None,
            extra=extra,
        )
    ]


def inbound_reply(messages: Sequence[InboundSms], config: CarrierConfig) -> WebhookReply:
    """An empty 200: smsbox sends no reply SMS (its `max-messages = 0`, `omit-empty`)."""
    return WebhookReply(200, b"", "text/plain")


# -- outbound ----------------------------------------------------------------------------------

# The DLR type (%d) -> our state.
STATUS_MAP: dict[str, DeliveryState] = {
    "1": DeliveryState.DELIVERED,
    "2": DeliveryState.FAILED,
    "4": DeliveryState.SENT,
    "8": DeliveryState.SENT,
    "16": DeliveryState.FAILED,
}
FAILURES = {"2": "non-delivered", "16": "rejected by the SMSC"}

# What sendsms says when it refuses (its answer is text): the start of the answer -> our code.
REPLIES = (
    ("Authorization failed", "auth_failed"),
    ("Number(s) has/have been denied", "denied"),
    ("Temporal failure", "temporal_failure"),
    ("Sending failed", "sending_failed"),
)
ERRORS: dict[str, str] = {
    "auth_failed": AUTH,
    "denied": PERMANENT,
    # 503: bearerbox will not take it now (its queue is full, or no SMSC is up to take it).
    # Not a rate limit Kannel documents: a transient failure, counted by the channel's breaker.
    "temporal_failure": RETRYABLE,
    "sending_failed": RETRYABLE,
}

SEND_NEEDS: Needs = ("sendsms_url", "username", "password")


def dlr_url(config: CarrierConfig, ref: str) -> str:
    """Our delivery-report URL as Kannel's `dlr-url`: our ref, and Kannel's escapes for the
    report type (%d), the SMSC's answer (%A) and its message id (%F). Every `%` of our own is
    doubled (`%%`), so Kannel does not read `%C3` of a ref as its %C."""
    base = status_url(config)
    if not base:
        return ""
    ours = f"{base}?ref={quote(ref, safe='')}".replace("%", "%%")
    return ours + "&type=%d&reply=%A&smsc_id=%F"


async def send(http: httpx.AsyncClient, config: CarrierConfig, sms: OutboundSms) -> SendResult:
    require_settings(config, SEND_NEEDS)
    params = {
        "username": config.get("username"),
        "password": config.get("password"),
        "to": sms.to,
        "text": sms.content,
        "charset": "UTF-8",
    }
    if encoding_of(sms.content) is Encoding.UCS2:
        params["coding"] = "2"
    for setting, field_name in (("sender", "from"), ("smsc", "smsc")):
        if config.get(setting):
            params[field_name] = config.get(setting)
    mask = config.get("dlr_mask", DEFAULT_DLR_MASK).strip()
    callback = dlr_url(config, sms.cht_id)
    if callback and mask not in ("", "0"):
        params["dlr-mask"] = mask
        params["dlr-url"] = callback
    response = await request(http, NAME, "GET", config.get("sendsms_url"), params=params)
    answer = response.text.strip()
    if response.status_code < 300:
        return SendResult(NAME, sms.cht_id, DeliveryState.SENT, carrier_status=answer[:60] or None)
    code = next((c for prefix, c in REPLIES if answer.startswith(prefix)), None)
    raise failure(
        NAME,
        code=code,
        detail=answer.splitlines()[0][:120] if answer else f"HTTP {response.status_code}",
        errors=ERRORS,
        status=response.status_code,
        after=retry_after(response.headers),
    )


def parse_status(req: WebhookRequest, config: CarrierConfig) -> list[StatusUpdate]:
    """A Kannel DLR: `type` (%d) and our `ref`; `reply` (%A) is the SMSC's own words."""
    params = req.params()
    status, ref = require(params, "type", "ref")
    status = status.strip()
    reason = params.get("reply", "").strip() or None
    state = STATUS_MAP.get(status)
    return status_update(
        NAME,
        req,
        ref,
        status,
        state,
        reason=reason if state is DeliveryState.FAILED else None,
        failure_reason=FAILURES.get(status),
        ref=ref,
    )


class Kannel(BaseCarrier):
    """Kannel's smsbox (this module's functions, as a `Carrier`)."""

    name = NAME
    settings = SETTINGS
    inbound_methods = INBOUND_METHODS
    takes_status = True
    sends = True
    asks_status_url = True
    status_map = STATUS_MAP
    send_needs = SEND_NEEDS
    url_settings = ("sendsms_url",)
    parse_inbound = staticmethod(parse_inbound)
    inbound_reply = staticmethod(inbound_reply)
    parse_status = staticmethod(parse_status)
    send = staticmethod(send)

    def check(self, config: CarrierConfig) -> Findings:
        problems, warnings = super().check(config)
        mask = config.get("dlr_mask", DEFAULT_DLR_MASK).strip()
        if mask and not (mask.isdigit() and 0 <= int(mask) <= 31):
            problems.append(f"{config.env('dlr_mask')}: expected a number 0..31, got {mask!r}")
        return problems, warnings


CARRIER = Kannel()
