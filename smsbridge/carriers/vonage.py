"""Vonage (Nexmo) SMS API: inbound SMS webhooks, sends and delivery receipts (the outbound side
is at the end of this module).

Vonage calls the account's inbound webhook by GET (query) or POST (form or JSON, per the
dashboard's "HTTP method"): `msisdn` (sender, international without `+`), `to`, `messageId`,
`text`, `type`, `keyword`, `message-timestamp` (`YYYY-MM-DD HH:MM:SS`, UTC), and for long SMS
`concat`, `concat-ref`, `concat-total`, `concat-part` (each part arrives as its own webhook;
the bridge keeps the parts and joins them into one message: smsbridge/inbound/messages.py).
Vonage resends for 24 hours until it gets 200 or 204; we answer 204 once stored.

Signed webhooks (optional; turn on in the dashboard and set SMSBRIDGE_VONAGE_SIGNATURE_SECRET):
the parameters minus `sig`, sorted by name, each appended as `&name=value` with `&` and `=`
inside values replaced by `_`; then `md5hash`: MD5 of that string + the secret, or
`md5`/`sha1`/`sha256`/`sha512`: HMAC keyed with the secret; lower-case hex in `sig`.

Dashboard: Settings → Default SMS setting → Inbound messages webhook URL =
`https://<public host>/carriers/vonage/<SMSBRIDGE_VONAGE_WEBHOOK_TOKEN>/inbound`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

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
    THROTTLE,
    failure,
    json_body,
    rejected,
    request,
    require_settings,
    status_update,
    status_url,
)
from smsbridge.errors import ConfigError, Forbidden
from smsbridge.segments import Encoding, encoding_of
from smsbridge.settings import Setting
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate

NAME = "vonage"
INBOUND_METHODS = frozenset({"GET", "POST"})  # how the inbound webhook may arrive

SETTINGS: tuple[Setting, ...] = (
    webhook_token_setting(NAME, "Vonage's webhook"),
    Setting(
        "signature_secret",
        "",
        "Vonage signature secret; when set, inbound webhooks must carry a valid `sig`.",
        secret=True,
    ),
    Setting(
        "signature_method",
        "md5hash",
        "Vonage signature method: md5hash, md5, sha1, "
        "sha256 or sha512 (as chosen in the Vonage dashboard).",
    ),
    Setting("api_key", "", "Vonage API key, for sending."),
    Setting("api_secret", "", "Vonage API secret, for sending.", secret=True),
    Setting("sender", "", "Vonage sender (`from`): a number or an alphanumeric id."),
    Setting("api_url", "https://rest.nexmo.com", "Vonage SMS API base URL."),
)

METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")


def compute_signature(params: Mapping[str, str], secret: str, method: str = "md5hash") -> str:
    """Vonage's request signature over `params` (any `sig` member is left out)."""
    method = method.lower()
    if method not in METHODS:
        raise ConfigError(f"SMSBRIDGE_VONAGE_SIGNATURE_METHOD: unknown method {method!r}")
    payload = "".join(
        "&{}={}".format(key, str(params[key]).replace("&", "_").replace("=", "_"))
        for key in sorted(params)
        if key != "sig"
    )
    if method == "md5hash":
        return hashlib.md5((payload + secret).encode("utf-8")).hexdigest()
    return hmac.new(secret.encode(), payload.encode("utf-8"), method).hexdigest()


def verify(req: WebhookRequest, config: CarrierConfig) -> None:
    secret = config.get("signature_secret")
    if not secret:
        return
    params = req.params()
    signature = params.get("sig", "").lower()
    if not signature:
        raise Forbidden("missing sig")
    expected = compute_signature(params, secret, config.get("signature_method", "md5hash"))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Forbidden("sig does not match")


def parse_inbound(req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]:
    params = req.params()
    _, external_id = require(params, "msisdn", "messageId")
    extra = {k: params[k] for k in ("type", "keyword") if params.get(k)}
    extra.update(_concat(params))
    return [
        inbound_sms(
            NAME,
            req,
            params,
            sender="msisdn",
            text="text",
            external_id=external_id.strip(),
            received_at=parse_time(params.get("message-timestamp"), req.arrived_at),
            recipient=params.get("to") or None,
            extra=extra,
            bare_international=True,
        )
    ]


MAX_PARTS = 255
"""A concatenated SMS has at most 255 parts (the UDH counts them in one byte)."""


def _concat(params: Mapping[str, str]) -> dict[str, str]:
    """The `concat-*` fields of one part of a long SMS, when they describe one: a ref, and a
    part 1..total of a total 2..MAX_PARTS in ASCII digits. Anything else (`concat-total=
    99999999999999999999`) is not a part we could ever join: the SMS is kept as a message of its
    own rather than refused (a refusal would lose it; Vonage gives up after 24 hours)."""
    ref, total, part = (params.get(f"concat-{k}", "").strip() for k in ("ref", "total", "part"))
    if not (ref and _count(total) and _count(part)):
        return {}
    if not (2 <= int(total) <= MAX_PARTS and 1 <= int(part) <= int(total)):
        return {}
    return {"concat": "true", "concat-ref": ref, "concat-total": total, "concat-part": part}


def _count(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 3


def inbound_reply(messages: Sequence[InboundSms], config: CarrierConfig) -> WebhookReply:
    return WebhookReply(204, b"", "text/plain")


# -- outbound side (OUTBOUND): parse_status, send, STATUS_MAP, ERRORS ------------------------

# Delivery receipt `status` -> our state ("unknown": no information, ignored).
STATUS_MAP: dict[str, DeliveryState] = {
    "accepted": DeliveryState.SENT,
    "buffered": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "failed": DeliveryState.FAILED,
    "expired": DeliveryState.FAILED,
    "rejected": DeliveryState.FAILED,
}

# Send response `status` (answered with HTTP 200; Vonage's SMS API error codes): THROTTLE pauses
# the channel; RETRYABLE tries this SMS again later; PERMANENT hands it to the route's next
# channel (or fails it); AUTH: nothing can go on this account until an operator acts (it fails
# over meanwhile, or keeps retrying).
ERRORS: dict[str, str] = {
    "1": THROTTLE,  # Throttled: faster than the account's limit (THROTTLE_TEXT says how long)
    "2": PERMANENT,  # Missing parameters
    "3": PERMANENT,  # Invalid parameters (e.g. the to address)
    "4": AUTH,  # Invalid credentials
    "5": RETRYABLE,  # Internal error
    "6": PERMANENT,  # Invalid message (e.g. an unrecognised number prefix)
    "7": PERMANENT,  # Number barred
    "8": AUTH,  # Partner account barred: the account is suspended
    "9": AUTH,  # Partner quota violation: no credit left, top up
    "10": RETRYABLE,  # Too many existing binds: back off and retry
    "11": AUTH,  # Account not enabled for HTTP (the SMS API)
    "12": PERMANENT,  # Message too long
    "14": AUTH,  # Invalid signature
    "15": PERMANENT,  # Invalid sender address (for this destination's country)
    "22": PERMANENT,  # Invalid network code
    "23": AUTH,  # Invalid callback URL: SMSBRIDGE_PUBLIC_URL, the same for every SMS
    "29": PERMANENT,  # Non-whitelisted destination (a trial account)
    "32": AUTH,  # Signature and API secret disallowed
    "33": PERMANENT,  # Number de-activated
}

# A throttle's `error-text`, e.g. "Throughput Rate Exceeded - please wait [ 1000 ] and retry":
# the wait, in milliseconds.
THROTTLE_TEXT = re.compile(r"please wait \[\s*(\d{1,9})\s*\]", re.IGNORECASE)
MIN_THROTTLE_WAIT = 0.1  # seconds: a "wait [ 0 ]" must not make a busy loop of sends


def throttle_wait(text: str) -> float | None:
    """The seconds a throttle's `error-text` asks us to wait (None when it names none: the
    shared default, carriers/sending.py THROTTLE_WAIT)."""
    found = THROTTLE_TEXT.search(text)
    return max(MIN_THROTTLE_WAIT, int(found.group(1)) / 1000) if found else None


SEND_NEEDS: Needs = ("api_key", "api_secret", "sender")


async def send(http: httpx.AsyncClient, config: CarrierConfig, sms: OutboundSms) -> SendResult:
    """POST /sms/json (form), one message per request, `client-ref` = our ref."""
    require_settings(config, SEND_NEEDS)
    form = {
        "api_key": config.get("api_key"),
        "api_secret": config.get("api_secret"),
        "from": config.get("sender"),
        "to": sms.to.lstrip("+"),
        "text": sms.content,
        "type": "unicode" if encoding_of(sms.content) is Encoding.UCS2 else "text",
        "client-ref": sms.cht_id[:100],
        "status-report-req": "1",
    }
    callback = status_url(config)
    if callback:
        form["callback"] = callback
    response = await request(
        http,
        NAME,
        "POST",
        config.get("api_url").rstrip("/") + "/sms/json",
        data=form,
        headers={"Accept": "application/json"},
    )
    body = json_body(response)
    if response.status_code >= 300 or not isinstance(body, dict):
        raise rejected(NAME, response, body, ERRORS)
    messages = [m if isinstance(m, dict) else {} for m in body.get("messages") or [{}]]
    # a long text is sent as several parts, each with its own id; the first names the SMS
    taken = [part for part in messages if str(part.get("status", "")) == "0"]
    refused = [part for part in messages if str(part.get("status", "")) != "0"]
    if not refused:
        return SendResult(NAME, str(messages[0].get("message-id")), DeliveryState.SENT, "0")
    if taken:
        return taken_in_part(messages)
    code, text = str(refused[0].get("status", "")), str(refused[0].get("error-text", ""))
    wait = throttle_wait(text) if ERRORS.get(code) == THROTTLE else None
    raise failure(NAME, code=code, detail=text, errors=ERRORS, after=wait)


def taken_in_part(messages: Sequence[Mapping[str, object]]) -> SendResult:
    """A long SMS Vonage took in part: some of its parts accepted (status 0), another refused,
    even with a transient error. Vonage's API cannot send one part again (each part is an SMS
    of its own, joined on the handset by a reference Vonage picks per request), and sending the
    whole text again would give the patient the accepted parts twice: never the same SMS twice
    over delivering at any cost. So the SMS ends here, failed, never retried nor failed over,
    with a reason naming what Vonage took (its first accepted part's id) and what it refused."""
    n = len(messages)
    taken = [k for k, part in enumerate(messages, start=1) if str(part.get("status", "")) == "0"]
    k, part = next((k, p) for k, p in enumerate(messages, start=1) if k not in taken)
    code = str(part.get("status", ""))
    first = str(messages[taken[0] - 1].get("message-id"))
    reason = (
        f"vonage took {len(taken)} of {n} parts; part {k}/{n} refused: {code} "
        f"{part.get('error-text', '')}".rstrip()
        + " (not sent again: the parts Vonage took would reach the phone twice)"
    )
    return SendResult(NAME, first, DeliveryState.FAILED, code, reason=reason)


def parse_status(req: WebhookRequest, config: CarrierConfig) -> list[StatusUpdate]:
    params = req.params()
    external_id, status = require(params, "messageId", "status")
    state = STATUS_MAP.get(status.strip().lower())
    failure = f"{status} (err-code {params.get('err-code', '0')})"
    ref = params.get("client-ref")
    return status_update(NAME, req, external_id, status, state, failure_reason=failure, ref=ref)


class Vonage(BaseCarrier):
    """Vonage's SMS API (this module's functions, as a `Carrier`)."""

    name = NAME
    settings = SETTINGS
    inbound_methods = INBOUND_METHODS
    takes_status = True
    sends = True
    asks_status_url = True
    status_map = STATUS_MAP
    send_needs = SEND_NEEDS
    url_settings = ("api_url",)
    verify = staticmethod(verify)
    parse_inbound = staticmethod(parse_inbound)
    inbound_reply = staticmethod(inbound_reply)
    parse_status = staticmethod(parse_status)
    send = staticmethod(send)

    def check(self, config: CarrierConfig) -> Findings:
        problems, warnings = super().check(config)
        method = config.get("signature_method", "md5hash")
        if method.lower() not in METHODS:
            problems.append(
                f"{config.env('signature_method')}: expected one of {', '.join(METHODS)}, "
                f"got {method!r}"
            )
        return problems, warnings


CARRIER = Vonage()
